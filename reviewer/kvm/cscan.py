"""A C scanner for kernel files: function definitions, their call sites,
the functions they name without calling, and the top-level tables of
function pointers.

Kernel C is scanned as tokens, after comments, strings and preprocessor
lines are blanked (line numbers kept). Conditional blocks: the first branch
of an ``#if`` always counts (except ``#if 0``); a later ``#elif``/``#else``
branch counts whole when its braces and parentheses balance on their own
(a stub definition, say), and otherwise only for its calls, its braces
blanked, so that the structure stays the first branch's.

For every call the scanner tells whether the caller uses its result
(``r = f()``, ``return f()``, ``if (f())``, ``!f()``, an argument of another
call...) or throws it away (a bare statement ``f();``, ``(void)f();``).
Calls through a member are named ``T.m`` when the macro says the ops table
(``kvm_x86_call(m)``, ``static_call(kvm_x86_m)``, ``kvm_pmu_call(m)``,
``kvm_x86_ops.m(``) and ``.m`` otherwise, with the identifier before the
member as a hint for its type.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_LEXEMES = re.compile(r"""//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'""", re.S)
_TOKEN = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|->|\+\+|--|&&|\|\||<<=?|>>=?|[<>=!+\-*/%&|^]=|\.\.\.|\S")
_DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*(\w+)(.*)$")
_NAME_MACRO = re.compile(r"(\w+)\((\w+)\)\s+(.+)$")

NOT_CALLS = frozenset(
    "if for while switch return sizeof typeof __typeof__ __typeof _Generic alignof _Alignof __alignof__"
    " asm __asm__ __asm volatile __volatile__ do else case default goto defined _Static_assert static_assert"
    " __attribute__ __attribute".split())
_STATEMENT_HEADS = frozenset(("if", "for", "while", "switch"))
_DECL_BREAKERS = frozenset(("return", "case", "goto", "sizeof", "else", "do", "typeof", "__typeof__"))
_KEYWORDS = NOT_CALLS | frozenset(
    "struct union enum const static inline extern void int char long short unsigned signed bool u8 u16 u32 u64"
    " s8 s16 s32 s64 break continue true false NULL register auto".split())

# how a static call names the ops table and member (``kvm_x86_`` after ``kvm_x86_pmu_``)
_STATIC_CALL_PREFIXES = (("kvm_x86_pmu_", "kvm_pmu_ops"), ("kvm_x86_", "kvm_x86_ops"))
_CALL_MACROS = {"kvm_x86_call": "kvm_x86_ops", "kvm_pmu_call": "kvm_pmu_ops"}
_STATIC_CALLS = frozenset(("static_call", "static_call_cond", "static_call_ret0"))


@dataclass(frozen=True)
class Call:
    """One call site: ``name`` is the callee (``f``, ``T.m`` or ``.m``)."""

    name: str
    line: int
    used: bool
    base: str | None = None  # for ``.m``: the identifier the member hangs off (``ops`` in ``ops->m(``)


@dataclass(frozen=True)
class Ref:
    """An identifier used as a value (a function passed or stored, a table indexed)."""

    name: str
    line: int
    member_access: bool = False  # followed by ``.`` or ``->``
    assigned_to: str | None = None  # ``x->m = name``: the member m


@dataclass(frozen=True)
class Arm:
    """One arm of a ``switch``: its case labels (empty: ``default``) and what it calls."""

    labels: tuple[str, ...]
    calls: tuple[Call, ...]
    refs: tuple[Ref, ...]


@dataclass(frozen=True)
class Function:
    name: str
    line: int  # the line of the name
    end: int  # the line of the closing brace
    calls: tuple[Call, ...]
    refs: tuple[Ref, ...]
    body: tuple[int, int] = field(repr=False, compare=False, default=(0, 0))  # token range of the body
    macro: str | None = None  # the macro that pasted the name (``FNAME``), ctags' name for it


@dataclass(frozen=True)
class Data:
    """A top-level object with an initializer that names identifiers."""

    name: str
    type: str | None  # ``struct T``'s T
    line: int
    members: tuple[tuple[str, str], ...]  # designated ``.m = ident``
    refs: tuple[str, ...]  # every identifier in the initializer


@dataclass
class FileScan:
    path: str
    functions: list[Function]
    data: list[Data]
    decls: dict[str, set[str]]  # identifier -> struct types it is declared with
    tokens: list[tuple[str, int]] = field(repr=False)
    lines: list[int] = field(repr=False)

    def line_of(self, index: int) -> int:
        return bisect.bisect_right(self.lines, self.tokens[index][1]) + 1


# -- text preparation --------------------------------------------------------------

def _blank(match: re.Match) -> str:
    text = match.group(0)
    if text[0] in "\"'":
        return "0" + " " * (len(text) - 1)
    return re.sub(r"[^\n]", " ", text)


def _balance(text: str) -> tuple[int, int]:
    return text.count("{") - text.count("}"), text.count("(") - text.count(")")


@dataclass
class _Branch:
    start: int  # first line (after the directive)
    dead: bool = False  # ``#if 0``
    end: int = 0


def _directive_lines(lines: list[str]) -> Iterator[tuple[int, str, str]]:
    """(index, directive, rest) of every preprocessor line; continuation lines are blanked in place."""
    index = 0
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index])
        if not match:
            index += 1
            continue
        first = index
        while lines[index].rstrip().endswith("\\") and index + 1 < len(lines):
            lines[index] = ""
            index += 1
        lines[index] = ""
        yield first, match.group(1), match.group(2).strip()
        index += 1


@dataclass(frozen=True)
class Prepared:
    structure: str  # for braces: the branches that would unbalance them blanked
    calls: str  # for calls: only ``#if 0`` code and unbalanced parentheses blanked
    name_macros: dict[str, tuple[str, ...]]  # FNAME -> ("paging64_{}", ...): macros that paste a name


def _name_macro(rest: str) -> tuple[str, str] | None:
    """``FNAME(name) paging##64_##name`` -> ("FNAME", "paging64_{}")."""
    match = _NAME_MACRO.match(rest)
    if not match or "##" not in match.group(3):
        return None
    name, param, body = match.groups()
    parts = [part.strip() for part in body.split("##")]
    if parts.count(param) != 1 or not all(re.fullmatch(r"\w+", part) for part in parts):
        return None
    return name, "".join("{}" if part == param else part for part in parts)


def prepare(text: str) -> Prepared:
    """The text for structure and the text for calls: comments, strings and
    directives blanked (line numbers kept), conditional branches handled."""
    lines = _LEXEMES.sub(_blank, text).split("\n")
    calls = list(lines)
    stack: list[list[_Branch]] = []  # the open conditionals' branches
    masks: list[tuple[int, int, bool]] = []  # (start, end, drop-for-calls-too)
    name_macros: dict[str, tuple[str, ...]] = {}
    for index, directive, rest in list(_directive_lines(calls)):
        pasted = _name_macro(rest) if directive == "define" else None
        if pasted:
            name_macros[pasted[0]] = (*name_macros.get(pasted[0], ()), pasted[1])
        if directive in ("if", "ifdef", "ifndef"):
            stack.append([_Branch(index + 1, dead=directive == "if" and rest == "0")])
        elif directive in ("elif", "else") and stack:
            stack[-1][-1].end = index
            stack[-1].append(_Branch(index + 1))
        elif directive == "endif" and stack:
            branches = stack.pop()
            branches[-1].end = index
            for number, branch in enumerate(branches):
                if branch.dead:
                    masks.append((branch.start, branch.end, True))
                elif number:
                    braces, parens = _balance("\n".join(calls[branch.start:branch.end]))
                    if braces or parens:
                        masks.append((branch.start, branch.end, bool(parens)))
    structure = list(calls)
    for start, end, drop in masks:
        for index in range(start, end):
            structure[index] = re.sub(r"[^\n]", " ", structure[index])
            if drop:
                calls[index] = structure[index]
            else:
                calls[index] = calls[index].replace("{", " ").replace("}", " ")
    return Prepared("\n".join(structure), "\n".join(calls), name_macros)


def tokenize(text: str) -> list[tuple[str, int]]:
    return [(m.group(0), m.start()) for m in _TOKEN.finditer(text)]


def _matches(tokens: list[tuple[str, int]]) -> dict[int, int]:
    """Index of the matching closer for every (, [ and { (unbalanced ones: none)."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[int] = []
    out: dict[int, int] = {}
    for index, (tok, _) in enumerate(tokens):
        if tok in "([{" and len(tok) == 1:
            stack.append(index)
        elif tok in pairs and len(tok) == 1:
            while stack and tokens[stack[-1]][0] != pairs[tok]:
                stack.pop()
            if stack:
                out[stack.pop()] = index
    return out


# -- calls and whether their result is used ------------------------------------------------

class _Body:
    """Call sites and references in a token range."""

    def __init__(self, tokens: list[tuple[str, int]], match: dict[int, int], line_of,
                 name_macros: dict[str, tuple[str, ...]] | None = None):
        self.name_macros = name_macros or {}
        self.tokens = tokens
        self.match = match
        self.opener = {close: open_ for open_, close in match.items()}
        self.line_of = line_of

    def tok(self, index: int) -> str:
        return self.tokens[index][0] if 0 <= index < len(self.tokens) else ""

    def scan(self, start: int, end: int) -> tuple[list[Call], list[Ref]]:
        calls: list[Call] = []
        refs: list[Ref] = []
        pointers = self._pointers(start, end)
        index = start
        while index < end:
            tok = self.tok(index)
            if not (tok[0].isalpha() or tok[0] == "_") or tok in _KEYWORDS:
                index += 1
                continue
            prev, nxt = self.tok(index - 1), self.tok(index + 1)
            if tok in self.name_macros and nxt == "(" and self.tok(index + 3) == ")":
                pasted = f"{tok}({self.tok(index + 2)})"  # FNAME(walk_addr): expanded per definition
                if self.tok(index + 4) == "(":
                    calls.append(Call(pasted, self.line_of(index), self._used(index, self.match.get(index + 4, index))))
                else:
                    refs.append(Ref(pasted, self.line_of(index)))
                index += 4
                continue
            if nxt == "(" and tok in pointers:
                member, base = pointers[tok]
                used = self._used(index, self.match.get(index + 1, index))
                calls.append(Call(f".{member}", self.line_of(index), used, base))
            elif nxt == "(" and prev not in (".", "->"):
                call = self._call(index)
                if call:
                    calls.append(call)
            elif nxt == "(":
                calls.append(self._member_call(index))
            elif prev not in (".", "->") and nxt != ":" and not self._declared(index):
                refs.append(Ref(tok, self.line_of(index), nxt in (".", "->"), self._assigned_member(index)))
            index += 1
        return calls, refs

    def _pointers(self, start: int, end: int) -> dict[str, tuple[str, str | None]]:
        """Local function pointers loaded from a member: ``int (*cui)(...) = a->b.m;`` or
        ``fn = a->m;`` -> {"cui": ("m", "b")}: a call through them is a call through the member."""
        found: dict[str, tuple[str, str | None]] = {}
        for index in range(start, end):
            if self.tok(index) != "=":
                continue
            stop = index + 1
            while self.tok(stop) not in (";", ",", ")", "") and stop < end:
                stop += 1
            member, dot, base = self.tok(stop - 1), self.tok(stop - 2), self.tok(stop - 3)
            if self.tok(stop) != ";" or dot not in (".", "->") or stop - index < 4:
                continue
            name = self.tok(index - 1)
            if name == ")" and index - 1 in self.opener and self.tok(self.opener[index - 1] - 1) == ")":
                group = self.opener.get(self.opener[index - 1] - 1, -1)
                name = self.tok(group + 2) if self.tok(group + 1) == "*" else ""
            if name[:1].isalpha() or name[:1] == "_":
                found[name] = (member, base if base[:1].isalpha() or base[:1] == "_" else None)
        return found

    def locals(self, start: int, end: int) -> set[str]:
        """Names declared in a token range (parameters and locals): ``type name`` followed by
        ``;``, ``=``, ``,``, ``[`` or ``)``."""
        found = set()
        for index in range(start, end):
            tok = self.tok(index)
            if not (tok[:1].isalpha() or tok[:1] == "_") or self.tok(index + 1) not in (";", "=", ",", "[", ")"):
                continue
            prev = index - 1
            while self.tok(prev) in ("*", "const"):
                prev -= 1
            before = self.tok(prev)
            if (before[:1].isalpha() or before[:1] == "_") and before not in _DECL_BREAKERS:
                found.add(tok)
        return found

    def _declared(self, index: int) -> bool:
        """``struct foo *name`` / ``int name``: the identifier is declared here (a type or a name)."""
        prev = self.tok(index - 1)
        if prev in ("struct", "union", "enum", "goto"):
            return True
        return self.tok(index + 1) == "*" and prev in (";", "{", "}", "(", ",")  # a type: ``foo_t *x``

    def _assigned_member(self, index: int) -> str | None:
        back = index - 1
        if self.tok(back) == "&":
            back -= 1
        if self.tok(back) != "=" or self.tok(index + 1) not in (";", ","):
            return None
        member = self.tok(back - 1)
        return member if self.tok(back - 2) in (".", "->") else None

    def _call(self, index: int) -> Call | None:
        name = self.tok(index)
        if name in NOT_CALLS:
            return None
        close = self.match.get(index + 1)
        if close is None:
            return None
        if (name in _CALL_MACROS or name in _STATIC_CALLS) and self.tok(index + 3) == ")" \
                and self.tok(close + 1) == "(" and close == index + 3:
            inner = self.tok(index + 2)
            target = _macro_target(name, inner)
            end = self.match.get(close + 1, close + 1)
            return Call(target, self.line_of(index), self._used(index, end))
        return Call(name, self.line_of(index), self._used(index, close))

    def _member_call(self, index: int) -> Call:
        """``a->b.m(...)``: named ``.m``, or ``T.m`` for the ops tables the kernel names."""
        member = self.tok(index)
        start = index - 1
        while self.tok(start) in (".", "->"):
            before = start - 1
            if self.tok(before) in ("]", ")") and before in self.opener:
                before = self.opener[before] - 1
            if not (self.tok(before)[:1].isalpha() or self.tok(before)[:1] == "_"):
                break
            start = before - 1
        start += 1
        base = self.tok(index - 2)
        base = base if base[:1].isalpha() or base[:1] == "_" else None
        name = f"{base}.{member}" if base in ("kvm_x86_ops", "kvm_pmu_ops") else f".{member}"
        close = self.match.get(index + 1, index + 1)
        return Call(name, self.line_of(index), self._used(start, close), None if "." in name[1:] else base)

    def _used(self, start: int, close: int) -> bool:
        """Whether the expression from token ``start`` to ``close`` (its last ``)``) is used."""
        if self.tok(close + 1) != ";":
            return True
        prev = start - 1
        if self.tok(prev) == ")" and self.tok(prev - 1) == "void" and self.tok(prev - 2) == "(":
            return False  # (void)f();
        return not self._statement_start(prev)

    def _statement_start(self, prev: int) -> bool:
        tok = self.tok(prev)
        if tok in ("{", "}", ";", "else", "do", ""):
            return True
        if tok == ")" and prev in self.opener:
            return self.tok(self.opener[prev] - 1) in _STATEMENT_HEADS
        if tok == ":":
            back = prev - 1
            while self.tok(back) not in ("{", "}", ";", ":", "?", ""):
                back -= 1
            if self.tok(back) == "?":
                return False
            segment = [t for t, _ in self.tokens[back + 1:prev]]
            return segment[:1] in (["case"], ["default"]) or len(segment) == 1
        return False


def _macro_target(macro: str, inner: str) -> str:
    if macro in _CALL_MACROS:
        return f"{_CALL_MACROS[macro]}.{inner}"
    for prefix, table in _STATIC_CALL_PREFIXES:
        if inner.startswith(prefix):
            return f"{table}.{inner[len(prefix):]}"
    return inner


# -- top level --------------------------------------------------------------------------------

def _definition_name(tokens: list[tuple[str, int]], opener: dict[int, int], brace: int,
                     name_macros: dict[str, tuple[str, ...]]) -> tuple[int, tuple[str, ...]] | None:
    """(token index of the name, the names) of the function a ``{`` at top
    level opens the body of; ``FNAME(x)(...) {`` defines one per FNAME."""
    index = brace - 1
    while index > 0 and tokens[index][0] == ")" and index in opener:
        name = opener[index] - 1
        tok = tokens[name][0] if name >= 0 else ""
        if tok == ")" and name in opener and tokens[opener[name] - 1][0] in name_macros:
            macro = opener[name] - 1
            inner = tokens[macro + 2][0]
            return macro, tuple(template.format(inner) for template in name_macros[tokens[macro][0]])
        if not (tok[:1].isalpha() or tok[:1] == "_") or tok in _KEYWORDS:
            return None
        if tok.startswith("__") and name > 0 and tokens[name - 1][0] == ")":
            index = name - 1  # an attribute after the parameters: __must_hold(x)
            continue
        return name, (tok,)
    return None


def _declaration_name(tokens: list[tuple[str, int]], start: int, equals: int) -> tuple[str | None, str | None]:
    """(name, struct type) of the object a top-level ``... = {`` initializes."""
    decl = [t for t, _ in tokens[start:equals]]
    struct = decl[decl.index("struct") + 1] if "struct" in decl[:-1] else None
    for pos in range(len(decl) - 2):
        if decl[pos] == "(" and decl[pos + 1] == "*":
            names = [t for t in decl[pos + 2:] if t[:1].isalpha() or t[:1] == "_"]
            names = [t for t in names if t != "const"]
            return (names[0] if names else None), struct
    depth = 0
    for tok in reversed(decl):
        if tok in ")]":
            depth += 1
        elif tok in "([":
            depth -= 1
        elif depth == 0 and (tok[:1].isalpha() or tok[:1] == "_") and not tok.startswith("__"):
            return tok, struct
    return None, struct


def _decls(tokens: list[tuple[str, int]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for index, (tok, _) in enumerate(tokens[:-3]):
        if tok != "struct":
            continue
        struct = tokens[index + 1][0]
        pos = index + 2
        while pos < len(tokens) and tokens[pos][0] in ("*", "const", "__rcu", "__percpu"):
            pos += 1
        if pos + 1 < len(tokens) and tokens[pos + 1][0] in (";", ",", ")", "=", "["):
            name = tokens[pos][0]
            if name[:1].isalpha() or name[:1] == "_":
                out.setdefault(name, set()).add(struct)
    return out


def _initializer(tokens, body: _Body, start: int, end: int) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    members = []
    refs = []
    for index in range(start, end):
        tok = tokens[index][0]
        if not (tok[:1].isalpha() or tok[:1] == "_") or tok in _KEYWORDS:
            continue
        if body.tok(index - 1) == "." and body.tok(index + 1) == "=":
            continue
        refs.append(tok)
        back = index - 1 if body.tok(index - 1) != "&" else index - 2
        if body.tok(back) == "=" and body.tok(back - 2) == "." and body.tok(index + 1) in (",", "}"):
            members.append((body.tok(back - 1), tok))
    return tuple(members), tuple(dict.fromkeys(refs))


def _expand(items, names: dict[str, tuple[str, ...]], template: str | None):
    """Calls or refs with ``FNAME(x)`` named as the definition's own expansion (all of them outside one)."""
    out = []
    for item in items:
        macro, paren, inner = item.name.partition("(")
        if not paren or macro not in names:
            out.append(item)
            continue
        for each in (template,) if template else names[macro]:
            out.append(dataclasses.replace(item, name=each.format(inner[:-1])))
    return tuple(out)


def scan(text: str, path: str = "") -> FileScan:
    prepared = prepare(text)
    structure, calls_text, name_macros = prepared.structure, prepared.calls, prepared.name_macros
    tokens = tokenize(structure)
    match = _matches(tokens)
    opener = {close: open_ for open_, close in match.items()}
    newlines = [m.start() for m in re.finditer("\n", structure)]
    call_tokens = tokenize(calls_text)
    call_match = _matches(call_tokens)
    call_scan = FileScan(path, [], [], {}, call_tokens, newlines)
    body = _Body(call_tokens, call_match, call_scan.line_of, name_macros)
    shape = FileScan(path, [], [], {}, tokens, newlines)
    functions: list[Function] = []
    data: list[Data] = []
    starts = [pos for _, pos in call_tokens]
    index, decl_start = 0, 0
    while index < len(tokens):
        tok = tokens[index][0]
        if tok in ("(", "[") and index in match:
            index = match[index] + 1
            continue
        if tok == ";":
            decl_start = index + 1
        elif tok == "{":
            close = match.get(index, len(tokens) - 1)
            defined = _definition_name(tokens, opener, index, name_macros)
            first = bisect.bisect_left(starts, tokens[index][1])
            last = bisect.bisect_left(starts, tokens[close][1])
            if defined is not None:
                name, names = defined
                found_calls, refs = body.scan(first + 1, last)
                shadowed = body.locals(bisect.bisect_left(starts, tokens[name][1]), last)
                refs = [ref for ref in refs if ref.name not in shadowed]
                macro = tokens[name][0] if tokens[name][0] in name_macros else None
                for each in names:
                    template = name_macros[macro][names.index(each)] if macro else None
                    functions.append(Function(
                        each, shape.line_of(name), shape.line_of(close), _expand(found_calls, name_macros, template),
                        _expand(refs, name_macros, template), (first + 1, last), macro))
                decl_start = close + 1
            elif "=" in [t for t, _ in tokens[decl_start:index]]:
                equals = next(i for i in range(decl_start, index) if tokens[i][0] == "=")
                var, struct = _declaration_name(tokens, decl_start, equals)
                if var:
                    members, refs = _initializer(call_tokens, body, first + 1, last)
                    data.append(Data(var, struct, shape.line_of(equals), members, refs))
            index = close + 1
            continue
        index += 1
    return FileScan(path, functions, data, _decls(call_tokens), call_tokens, newlines)


def arms(scan: FileScan, function: Function) -> list[Arm]:
    """The arms of the first ``switch`` directly in ``function``'s body (none: no switch)."""
    tokens = scan.tokens
    match = _matches(tokens)
    body = _Body(tokens, match, scan.line_of)
    start, end = function.body
    index = start
    while index < end:
        tok = tokens[index][0]
        if tok == "{" and index in match:
            index = match[index] + 1
            continue
        if tok == "switch" and body.tok(index + 1) == "(":
            open_ = match.get(index + 1, index + 1) + 1
            if body.tok(open_) == "{" and open_ in match:
                return _arms(body, open_ + 1, match[open_])
        index += 1
    return []


def _arms(body: _Body, start: int, end: int) -> list[Arm]:
    """Split a switch body at its own case labels."""
    cuts: list[tuple[int, int, tuple[str, ...]]] = []  # (label start, code start, labels)
    index = start
    while index < end:
        tok = body.tok(index)
        if tok in ("{", "(", "[") and index in body.match:
            index = body.match[index] + 1
            continue
        if tok in ("case", "default"):
            colon = index + 1
            while colon < end and body.tok(colon) != ":":
                colon += 1
            label = "default" if tok == "default" else " ".join(body.tok(i) for i in range(index + 1, colon))
            if cuts and cuts[-1][1] == index:  # a label right after a label: the same arm
                cuts[-1] = (cuts[-1][0], colon + 1, (*cuts[-1][2], label))
            else:
                cuts.append((index, colon + 1, (label,)))
            index = colon + 1
            continue
        index += 1
    out = []
    for number, (_, code, names) in enumerate(cuts):
        stop = cuts[number + 1][0] if number + 1 < len(cuts) else end
        found_calls, refs = body.scan(code, stop)
        out.append(Arm(tuple(n for n in names if n != "default"), tuple(found_calls), tuple(refs)))
    return out


def calls_in(text: str) -> list[Call]:
    """Every call in a C snippet (a function body, a few diff lines), with whether its result is used."""
    calls_text = prepare(text).calls
    tokens = tokenize(calls_text)
    newlines = [m.start() for m in re.finditer("\n", calls_text)]
    holder = FileScan("", [], [], {}, tokens, newlines)
    found, _ = _Body(tokens, _matches(tokens), holder.line_of).scan(0, len(tokens))
    return found
