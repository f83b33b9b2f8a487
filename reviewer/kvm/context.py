"""C function context: which function each line of a diff sits in.

Two entry points, one state machine:

* :func:`scan_file` walks a whole C file from its first line (exact, used with
  ``--kernel-tree``);
* :func:`scan_hunk_side` walks one side (old or new) of a hunk, starting from
  what the ``@@`` header line tells (the last column-0 identifier line before
  the hunk, as git's default and ``diff=cpp`` drivers both print it).

The answer for a line is a :class:`Where`: a function name, top level (no
function), or unknown (inside some function whose name the hunk does not show).
The machine relies on kernel coding style: function definitions start at
column 0, their braces sit alone at column 0, statements are indented.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

TOPLEVEL = "toplevel"
FUNCTION = "function"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Where:
    kind: str  # TOPLEVEL | FUNCTION | UNKNOWN
    name: str | None = None  # function name when kind == FUNCTION

    @property
    def function(self) -> str | None:
        return self.name if self.kind == FUNCTION else None


AT_TOP = Where(TOPLEVEL)
NOWHERE = Where(UNKNOWN)

_INLINE_COMMENT = re.compile(r"/\*.*?\*/")
_ATTR_RE = re.compile(r"__attribute__\s*\(\(.*?\)\)")
_IDENT_BEFORE_PAREN = re.compile(r"([A-Za-z_]\w*)\s*$")
_LABEL_RE = re.compile(r"^[A-Za-z_]\w*:(?!:)\s*(/[/*].*)?$")
_NOT_A_DEF = re.compile(r"^(if|for|while|switch|return|do|else|case|typedef|goto)\b")
# a parameter declaration: a type and a name (``struct kvm *kvm,``, ``u32 msr)``)
_PARAM_RE = re.compile(r"^\s+(?:[A-Za-z_]\w*[\s*]+)+[A-Za-z_]\w*(\[\w*\])?\s*(,|\)\s*;?)\s*(/\*.*\*/)?$")
HEADER_CUT = 79
GNU_CUT = 40  # GNU diff -p (quilt, the stable queue) cuts the header here, often mid-name
_CUT_NAME = re.compile(r"\b([A-Za-z_]\w{5,})$")
_TYPE_WORDS = frozenset(
    "int void char short long unsigned signed bool float double sizeof typeof __typeof__"
    " u8 u16 u32 u64 s8 s16 s32 s64".split())


def _strip_comment(text: str) -> str:
    if "/" not in text:
        return text.rstrip()
    text = _INLINE_COMMENT.sub("", text)
    return text.split("//", 1)[0].rstrip()


def definition_name(line: str) -> str | None:
    """Name of the function a column-0 line starts to define, else None.

    ``static int foo(struct kvm *kvm,`` -> ``foo``; prototypes that end on
    the same line (``int foo(void);``), variables (``x = f(y)``, arrays,
    function pointers ``int (*op)(...)``) and statements give None.
    """
    if not line[:1].isalpha() and line[:1] != "_":
        return None
    code = _strip_comment(line)
    if code.endswith(";") or _NOT_A_DEF.match(code):
        return None
    code = _ATTR_RE.sub("", code)
    head, paren, rest = code.partition("(")
    if not paren or "=" in head or "[" in head or rest.lstrip().startswith("*"):
        return None
    if "=" in code and "=" in _outside_parens(code):  # (no "=" at all: the common case, cheaply)
        return None
    match = _IDENT_BEFORE_PAREN.search(head)
    if not match or match.group(1) in _TYPE_WORDS:
        return None
    return match.group(1)


def _outside_parens(code: str) -> str:
    """``code`` without what its parentheses enclose."""
    depth, out = 0, []
    for char in code:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _body_on_line(code: str) -> str | None:
    """After a signature's closing parenthesis on this line: "open" for a
    body that starts (``) {``), "closed" for a whole one (``) { }``)."""
    tail = code[code.rfind(")") + 1:] if ")" in code else ""
    if "{" not in tail:
        return None
    return "open" if tail.count("{") > tail.count("}") else "closed"


def _paren_balance(text: str) -> int:
    code = _strip_comment(text)
    return code.count("(") - code.count(")")


def is_label(line: str) -> bool:
    return bool(_LABEL_RE.match(line)) and not line.startswith("default")


class _Machine:
    """Tracks the enclosing function line by line.

    A column-0 line that looks like a definition (``foo(...``) is only a
    candidate until its body opens: the lines from it to that point are
    held, and settled once the candidate turns out to be a function (``{``)
    or not (a prototype or a macro invocation: ``;``, or more column-0
    code).
    """

    def __init__(self, where: Where = AT_TOP, pending: str | None = None, paren: int = 0):
        self.where = where
        self.pending = pending  # a definition seen, its '{' not yet
        self.paren = paren
        self.in_comment = False
        self.in_macro = False
        self.out: list[Where] = []
        self.held: list[int] = []  # indexes in out that wait on pending

    def run(self, lines: list[str], at_end: Where) -> list[Where]:
        """Where every line is; lines still held at the end get ``at_end``."""
        for line in lines:
            self.out.append(self.feed(line))
            if self.pending:
                self.held.append(len(self.out) - 1)
        self._settle(at_end)
        return self.out

    def _settle(self, where: Where) -> None:
        for index in self.held:
            self.out[index] = where
        self.held = []

    def _confirm(self) -> Where:
        """The pending definition opens its body."""
        here = Where(FUNCTION, self.pending)
        self._settle(here)
        self.where, self.pending = here, None
        return here

    def _drop(self) -> None:
        """The pending candidate was no definition."""
        self._settle(self.where)
        self.pending = None

    def _pending_where(self) -> Where:
        return Where(FUNCTION, self.pending) if self.pending else self.where

    def feed(self, line: str) -> Where:  # noqa: C901 - one branch per line shape
        """Return where ``line`` is, and advance past it."""
        if self.in_macro:
            self.in_macro = line.rstrip().endswith("\\")
            return self._pending_where()
        if self.in_comment:
            if "*/" in line:
                self.in_comment = False
            return self._pending_where()
        if line.startswith("#"):
            self.in_macro = line.rstrip().endswith("\\")
            return self._pending_where()
        stripped = line.lstrip()
        if stripped.startswith("/*") and "*/" not in stripped:
            self.in_comment = True
        if not line[:1] or line[:1] in " \t":
            if self.pending and stripped:
                self.paren += _paren_balance(line)
                code = _strip_comment(line)
                if self.paren <= 0 and code.endswith(";"):
                    self._drop()  # a prototype or a macro call, not a definition
                    return self.where
                if self.paren <= 0:
                    body = _body_on_line(code)
                    if body == "open":
                        return self._confirm()
                    if body == "closed":
                        here = Where(FUNCTION, self.pending)
                        self._settle(here)
                        self.pending = None
                        return here
            return self._pending_where()
        # column 0
        if line.startswith("{"):
            if self.pending:
                return self._confirm()
            return self.where
        if line.startswith("}"):
            if self.pending:
                self._drop()
            here = self.where
            self.where = AT_TOP
            return here
        if self.where.kind != TOPLEVEL and is_label(line):
            return self._pending_where()
        if line.startswith("/*") or line.startswith("*"):
            return self._pending_where()
        if self.pending:
            self._drop()
        name = definition_name(line)
        if name:
            self.where = AT_TOP
            self.paren = _paren_balance(line)
            code = _strip_comment(_ATTR_RE.sub("", line))
            body = _body_on_line(code) if self.paren <= 0 else None
            if body == "open" or (self.paren <= 0 and code.endswith("{")):
                self.where = Where(FUNCTION, name)
            elif body is None:
                self.pending = name
            return Where(FUNCTION, name)
        # any other column-0 code: a declaration at top level
        self.where = AT_TOP
        return AT_TOP


def scan_file(lines: list[str]) -> list[Where]:
    """Where every line of a whole file is (index 0 = line 1)."""
    return _Machine().run(lines, AT_TOP)


def _initial(header: str, lines: list[str], renames: dict[str, str] | None) -> _Machine:
    """The machine's state at a hunk's first line, from its ``@@`` header."""
    header = header.strip("\n")
    if not header.strip():
        return _Machine(AT_TOP)
    if is_label(header):
        return _Machine(NOWHERE)
    name = definition_name(header) or _completed(header)
    if not name:
        return _Machine(AT_TOP)
    name = (renames or {}).get(name, name)
    if len(header) < HEADER_CUT and _body_on_line(_strip_comment(header)) == "closed":
        return _Machine(AT_TOP)  # a one-line function: { } ended on its line
    # git cuts the header at 80 columns: a cut signature's parens say nothing
    paren = 0 if len(header) >= HEADER_CUT else _paren_balance(header)
    if paren > 0:
        closing = _signature_close(paren, lines)
        if closing is not None:
            if _strip_comment(closing).endswith(";"):
                return _Machine(AT_TOP)  # a multi-line prototype
            return _Machine(AT_TOP, pending=name, paren=paren)
    for line in lines:
        decided = _decides(line)
        if decided is None:
            continue
        if decided == UNKNOWN:
            return _Machine(NOWHERE)
        if decided == FUNCTION:
            return _Machine(Where(FUNCTION, name))
        return _Machine(AT_TOP)
    return _Machine(NOWHERE)


def _completed(header: str) -> str | None:
    """The function a header cut by GNU diff (``static int kvm_vcpu_ioctl_x86_set_vcpu_e``)
    names: the one function of the shipped index whose name starts with the cut word."""
    match = _CUT_NAME.search(header) if len(header) == GNU_CUT and "(" not in header else None
    if not match:
        return None
    from reviewer.kvm import reach  # the index only for such a header

    names = reach.load().index.names
    found = [n for n in names[bisect.bisect_left(names, match.group(1)):][:2] if n.startswith(match.group(1))]
    return found[0] if len(found) == 1 else None


def _signature_close(paren: int, lines: list[str]) -> str | None:
    """The line that closes a header's open parameter list, if the hunk's
    first lines are the rest of that list (parameter declarations only)."""
    for line in lines:
        if not _PARAM_RE.match(line):
            return None
        paren += _paren_balance(line)
        if paren <= 0:
            return line
    return None


def _decides(line: str) -> str | None:
    """What a hunk's leading line says about the header's function.

    FUNCTION: we are inside it; TOPLEVEL: it ended before this line;
    UNKNOWN: a macro body; None: cannot tell (blank, preprocessor).
    """
    if not line.strip() or line.startswith("#"):
        return None
    if line[:1] != "\t" and line.lstrip().startswith(("/*", "*")):
        return None  # a comment not indented by tabs says nothing
    if line[:1] in " \t":
        return UNKNOWN if line.rstrip().endswith("\\") else FUNCTION
    if line[:1] in "}{" or is_label(line):
        return FUNCTION
    return TOPLEVEL


def scan_hunk_side(header: str, lines: list[str], renames: dict[str, str] | None = None) -> list[Where]:
    """Where each line of one side of a hunk is.

    ``lines`` are the hunk's lines as that side sees them (context and
    removed lines for the old side; context and added lines for the new).
    git takes the header from the old file: for the new side pass
    ``renames`` (see :func:`definition_renames`) so that a function renamed
    by an earlier hunk of the same file gets its new name.
    """
    return _initial(header, lines, renames).run(lines, NOWHERE)


def definition_renames(lines: list[tuple[str, str]]) -> dict[str, str]:
    """Functions a hunk renames: ``{old name: new name}``.

    ``lines`` are the hunk's ``(kind, text)`` pairs, kind in ``" +-"``. A
    run of removed lines followed by a run of added lines that define as
    many functions, in the same order, renames them pairwise.
    """
    renames: dict[str, str] = {}
    removed: list[str] = []
    added: list[str] = []
    for kind, text in [*lines, (" ", "")]:
        if kind == "-" and added:
            removed, added = [], []
        if kind == "-":
            removed += [n for n in [definition_name(text)] if n]
        elif kind == "+":
            added += [n for n in [definition_name(text)] if n]
        else:
            if len(removed) == len(added):
                renames.update((old, new) for old, new in zip(removed, added) if old != new)
            removed, added = [], []
    return renames
