"""The few things a TOML rule cannot say, as named predicates.

Line predicates: ``(matcher, patch, hunk, index) -> bool`` about
``hunk.lines[index]`` (the rule's matcher, for its function list).
Series predicates: ``(series, findings, params) -> [(patch, related patches)]``
(patch 0 = the whole series).
Rules name them; the engine knows nothing of what they test.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Protocol

from reviewer.findings import ABI_CATEGORIES, Finding, severity_rank
from reviewer.kvm.exits import ERR_RETURN, ERRNOS, FAIL_ASSIGN, fails
from reviewer.kvm.guards import depths as _depths
from reviewer.kvm.guards import guards, negated
from reviewer.kvm.patchgraph import in_new_case, new_labels
from reviewer.series import Hunk, Patch, Series


class Matcher(Protocol):
    """What a line predicate may ask of the rule that names it (the rule's
    matcher, :class:`reviewer.rules.Matcher`, has this and more)."""

    def function_matches(self, name: str | None) -> bool: ...

    def dispatches(self, name: str | None) -> bool:
        """Is ``name`` an ioctl dispatcher (its arms preset an error, then
        ``break``)?"""

    def shares_entry(self, one: str | None, other: str | None) -> bool:
        """Can one entry point the rule watches reach both functions (true
        when either is unknown)? A check moved from KVM_SET_VCPU_EVENTS to
        KVM_RUN is no move for the VMM that now fails KVM_RUN."""

    def may_reject(self, func: str) -> bool | None:
        """Can ``func`` (or ops member ``T.m``) fail its caller on bad input
        after the series (None: unknown)?"""

    def entries(self, name: str | None) -> list[str]:
        """The entry points the rule watches that reach ``name``."""


LOOKBACK = 10
_HOST = r"(?:\w+(?:->|\.))?host(?:_initiated)?"  # msr_info->host_initiated, host
_HOST_ONLY = re.compile(r"\bif\s*\(\s*" + _HOST + r"\s*\)")
_HOST_OR = re.compile(r"(?<!!)\b" + _HOST + r"\s*\|\||\|\|\s*" + _HOST + r"\b\s*(?:\)|\|\|)")  # host || x, x || host
_SUCCESS = re.compile(r"^\s*return\s+(true|0)\s*;")
_NOT_HOST = re.compile(r"!\s*" + _HOST + r"\b")
_FALSE_RETURN = re.compile(r"\breturn\s+false\s*;")  # a validator saying no
_ERR_ASSIGN = re.compile(r"\b(r|ret|err|rc)\s*=\s*" + ERRNOS)
_PRESET = re.compile(r"^\s*(?:int\s+)?(?:r|ret|err|rc)\s*=\s*(-E\w+|\w+)\s*;")
_RETURN_CALL = re.compile(r"^\s*return\s+[a-z_]\w*\s*\(")
_CONDITION = re.compile(r"^\s*(if|else if)\b|^\s*(&&|\|\|)|(&&|\|\|)\s*$")
_JUMP = re.compile(r"(break|goto \w+);")
_AND_OR = re.compile(r"&&|\|\|")
# ``x = kzalloc(...)``: what the condition ``!x`` tests is KVM's memory, not userspace's input
_ALLOCATED = re.compile(r"^\s*([\w.>\[\]-]+)\s*=\s*\(?\s*\w*(?:alloc|get_free_page|get_zeroed_page)\w*\s*\(")
_TESTED = re.compile(r"^!\s*([\w.>\[\]-]+)$|^([\w.>\[\]-]+)\s*==\s*NULL$")
_ERRNO = re.compile(r"-E[A-Z0-9]+\b")
_COMMENT_TAIL = re.compile(r"\s*(/\*.*?\*/|//.*)\s*$")
_WIDER = re.compile(r"\bif\b|\|\|")  # another way to fail
_NARROWER = re.compile(r"&&")  # one more thing that must hold to fail
_AGGREGATE_OPEN = re.compile(r"^(?:struct|union)\s+\w+\s*\{")
_PADDING = re.compile(r"\b\w*(?:pad|reserved|rsvd|unused)\w*\s*\[")


_memo: tuple = (None, {})  # (the patch last asked about, what predicates learnt of it): rules ask patch by patch


def _code(text: str) -> str:
    """A line's code: its trailing comment off, its spaces normalised."""
    return " ".join(_COMMENT_TAIL.sub("", text).split())


def _patch_memo(patch: Patch) -> dict:
    """A dict that lives as long as ``patch`` is the one asked about (one
    read of the slot: another thread may replace it meanwhile)."""
    global _memo
    last = _memo
    if last[0] is not patch:
        last = _memo = (patch, {})
    return last[1]


def _block_texts(hunk: Hunk, index: int) -> tuple[list[str], list[str]]:
    """(removed, added) texts of the run of changed lines around ``index``."""
    block = [hunk.lines[i] for i in _block(hunk, index)]
    return [ln.text for ln in block if ln.removed], [ln.text for ln in block if ln.added]


def _side_lines(hunk: Hunk, index: int) -> list[int]:
    """Indexes of the lines before ``index`` that its side of the hunk sees."""
    kind = hunk.lines[index].kind
    return [i for i in range(index) if hunk.lines[i].kind in (" ", kind)]


def _guard(hunk: Hunk, index: int) -> str:
    """The condition text guarding the statement at ``index`` (its side)."""
    parts = []
    for i in _side_lines(hunk, index)[::-1][:LOOKBACK]:
        text = _COMMENT_TAIL.sub("", hunk.lines[i].text).strip()
        if not text or text.endswith((";", "{", "}")) or text.startswith("case ") or text.endswith(":"):
            break
        parts.append(text)
    return " ".join(reversed(parts))


def reaches_host_writes(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """A new failure of an MSR write that host-initiated writes reach too.

    ``if (!msr_info->host_initiated && ...) return 1;`` fails only the guest's
    WRMSR (a #GP); a condition without ``!host_initiated``, or one where it is
    only one side of an ``||``, also fails userspace's KVM_SET_MSRS.
    """
    return not _guest_only(_guard(hunk, index) + " " + _statement(hunk, index, hunk.lines[index].kind))


def _block(hunk: Hunk, index: int) -> list[int]:
    """The run of changed lines around ``index``."""
    lo = hi = index
    while lo > 0 and hunk.lines[lo - 1].kind != " ":
        lo -= 1
    while hi + 1 < len(hunk.lines) and hunk.lines[hi + 1].kind != " ":
        hi += 1
    return list(range(lo, hi + 1))


def _error_exit(hunk: Hunk, start: int, kind: str = "+", bare_jump_fails: bool = True) -> int | None:
    """Does the statement the condition at ``start`` guards fail the call?

    ``return -EINVAL;`` does; so does ``goto out;``/``break;`` unless the
    return value was last set to something that is not an error (ioctl
    dispatch presets ``r = -EFAULT`` and jumps out). With no preset in
    sight, a ``goto`` fails (the preset sits above the hunk), and a
    ``break`` only when ``bare_jump_fails`` (an ioctl dispatcher's arm): a
    ``break`` out of kvm_set_msr_common's switch returns 0. In a braced
    block the exit may come after other statements (``*code = X; return
    -EINVAL;``). Returns the index of the exiting line, or None. ``kind``: the side
    read, new ("+") or old ("-").
    """
    side = [i for i in range(len(hunk.lines)) if hunk.lines[i].kind in (" ", kind)]
    braced = False  # in a { } block the exit may follow other statements
    for i in [i for i in side if i >= start][:LOOKBACK]:
        text = _COMMENT_TAIL.sub("", hunk.lines[i].text).strip()
        if not text.endswith(";"):
            braced = braced or text.endswith("{")
            if braced and text.startswith("}"):
                return None
            continue  # the rest of the condition
        if fails(text):
            return i
        if _JUMP.match(text):
            for j in [j for j in side if j < i][::-1]:  # the block's own preset first
                preset = _PRESET.search(hunk.lines[j].text)
                if preset:
                    return i if preset.group(1).startswith("-E") else None
            return i if bare_jump_fails or text.startswith("goto") else None
        if not braced:
            return None
    return None


_CALL = re.compile(r"(!\s*)?\b([a-z_]\w*)\s*\(")


def _helper_widening(patch: Patch, added: list[str], removed: list[str]) -> int:
    """Clauses by which helpers the new condition newly calls, and whose
    bodies this same patch changes, widen it: a guard renamed to a helper
    that tests one thing more. Under ``!helper()`` an added ``&&`` widens
    the guard (``!(a && b)`` is ``!a || !b``); without it an added ``||``;
    under ``~`` (``args & ~allowed()``) each ``&= ~`` the helper gains
    clears an allowed bit."""
    before = {m.group(2) for text in removed for m in _CALL.finditer(text)}
    calls = {m.group(2): bool(m.group(1)) for text in added for m in _CALL.finditer(text)
             if m.group(2) not in before}
    complemented = {m.group(1) for text in added for m in re.finditer(r"~\s*([a-z_]\w*)\s*\(", text)}
    widening = 0
    for name, under_not in calls.items():
        op = "&&" if under_not else "||"
        for f in patch.files:
            for h in f.hunks:
                body = [i for i in h.changed if h.lines[i].added and h.lines[i].function == name]
                for j in {j for i in body for j in _block(h, i)}:
                    if _NOT_HOST.search(h.lines[j].text):
                        continue  # a guest-only clause fails no userspace write
                    count = h.lines[j].text.count(op)
                    if name in complemented:  # x & ~allowed(): each bit the helper clears is refused
                        count = len(_CLEARS.findall(h.lines[j].text))
                    widening += count if h.lines[j].added else -count
    return max(0, widening)


_CLEARS = re.compile(r"&=\s*~")


def _breadth(texts: list[str]) -> tuple[int, int]:
    """How much a condition lets fail, comparable between the lines a patch
    removes and adds: first the ways to fail (each ``if``, each ``||``),
    then, fewer being wider, the things that must all hold (``&&``)."""
    text = " ".join(texts)
    return len(_WIDER.findall(text)), -len(_NARROWER.findall(text))


def _guarded_old_exit(matcher: Matcher, hunk: Hunk, index: int, patch: Patch) \
        -> tuple[tuple[int, int], tuple[int, int]] | None:
    """For an added condition line leading to an error exit that the patch
    did not add itself (neither the error return nor a jump's error preset):
    (breadth added, breadth removed) in its run of changed lines (:func:`_breadth`), counting
    what a changed helper it now calls adds (:func:`_helper_widening`). A
    new error exit is userspace-reject-added's to report, not a condition's.
    Several rules ask about the same line: answered once a patch."""
    memo = _patch_memo(patch)
    key = ("old exit", id(hunk), index)
    if key not in memo:
        memo[key] = _old_exit_breadths(matcher, hunk, index, patch)
    return memo[key]


def _old_exit_breadths(matcher: Matcher, hunk: Hunk, index: int, patch: Patch) \
        -> tuple[tuple[int, int], tuple[int, int]] | None:
    line = hunk.lines[index]
    if not line.added or not _CONDITION.search(line.text):
        return None
    exit_at = _error_exit(hunk, index, bare_jump_fails=matcher.dispatches(line.function))
    if exit_at is None:
        return None
    exit_line = hunk.lines[exit_at]
    if exit_line.added and fails(exit_line.text):
        return None
    if _JUMP.match(exit_line.text.strip()):
        preset = next((j for j in _side_lines(hunk, exit_at)[::-1] if _PRESET.search(hunk.lines[j].text)), None)
        if preset is not None and hunk.lines[preset].added:
            return None
    if _tests_allocation(hunk, index):
        return None
    old, new = _block_texts(hunk, index)
    ways, musts = _breadth(new)
    return (ways + _helper_widening(patch, new, old) + _to_guest_supported(old, new), musts), _breadth(old)


_HOST_SUPPORTED = re.compile(r"~\s*\(?\s*kvm_caps\.supported_(\w+)")


def _to_guest_supported(old: list[str], new: list[str]) -> int:
    """``data & ~kvm_caps.supported_X`` becoming ``data & ~...guest_supported_X``:
    what the guest's CPUID allows is a part of what KVM supports, so the
    check refuses more (1), else 0."""
    now = " ".join(new)
    return int(any(re.search(r"~\s*\(?\s*[\w.>-]*guest_supported_" + m.group(1) + r"\b", now)
                   for text in old for m in _HOST_SUPPORTED.finditer(text)))


def _tests_allocation(hunk: Hunk, index: int) -> bool:
    """Does the ``if`` at ``index`` only test whether memory KVM just
    allocated is there (``x = kcalloc(...); if (!x) goto fail;``)? That
    fails on the host's memory, never on what userspace passed."""
    match = _IF.search(hunk.lines[index].text)
    condition = hunk.lines[index].text[match.end():].strip() if match else ""
    if not condition.endswith(")"):
        return False
    allocated = {m.group(1) for j in _side_lines(hunk, index) if (m := _ALLOCATED.match(hunk.lines[j].text))}
    clauses = [c.strip().strip("()").strip() for c in condition[:-1].split("||")]
    tested = [m.group(1) or m.group(2) for c in clauses if (m := _TESTED.match(c))]
    return bool(allocated) and len(tested) == len(clauses) and set(tested) <= allocated


def widens_error_condition(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """An added condition (or clause) leading to an existing error exit, with
    more clauses than the lines it replaces, or one that fails host
    accesses where the one it replaces failed the guest's alone: input
    accepted before now fails."""
    clauses = _guarded_old_exit(matcher, hunk, index, patch)
    return clauses is not None and (clauses[0] > clauses[1] or _host_nowfails(hunk, index))


def not_a_kept_condition(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The condition is not one the function had before, moved: the same
    ``if (r)`` (spaces, comments and an opening brace aside) taken out elsewhere in the same function by
    the patch, as when ``r = kvm_update_cpuid(vcpu); if (r)`` becomes
    ``r = kvm_check_cpuid(vcpu); if (r)`` above it."""
    line = hunk.lines[index]

    def condition(text: str) -> str:
        return _code(text).removesuffix("{").strip()

    text = condition(line.text)
    return not any(ln.function == line.function and condition(ln.text) == text for ln in patch.removed_lines)


_QUIRK = re.compile(r"\bkvm_check_has_quirk\s*\(")


_ARGUMENTS = re.compile(r"\(([^()]*)\)")


def not_args_only(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The changed condition is not the same test with other arguments to its
    helpers (``kvm_hlt_in_guest(vcpu->kvm)`` becoming ``kvm_hlt_in_guest(vcpu)``
    when the helper moves to vCPU scope): the same helpers, operators and
    operands around the calls decide as before."""
    old, new = _block_texts(hunk, index)

    def shape(texts: list[str]) -> str:
        text = " ".join(_code(t) for t in texts)
        for _ in range(5):  # nested calls, innermost first
            text = _ARGUMENTS.sub(lambda m, whole=text: "()" if re.search(r"\w\s*$", whole[:m.start()])
                                  else m.group(0), text)
        return text

    return not (old and new and shape(old) == shape(new))


def not_quirked(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The change does not sit behind a quirk: ``host_initiated &&
    kvm_check_has_quirk(kvm, KVM_X86_QUIRK_X)`` keeps the old behaviour for
    every VMM that does not disable the quirk (KVM_CAP_DISABLE_QUIRKS2),
    which is how KVM makes a stricter ABI opt-in."""
    texts = _block_texts(hunk, index)[1] + [_guard(hunk, index), hunk.lines[index].text]
    return not any(_QUIRK.search(text) for text in texts)


def _guest_only(text: str) -> bool:
    """A condition that holds for the guest's accesses alone: ``!host`` must
    hold for it to hold. ``!host && data``, ``!host && (!has(X) || data)``
    and ``(!host && a) || (!host && b)`` are; ``!active && (!host || data)``
    is not (a host write with data fails too). Read from the last ``if (``
    in ``text`` (the whole text when there is none)."""
    starts = [m.end() for m in _IF.finditer(text)]
    expression = text
    if starts:
        depth, end = 1, starts[-1]
        while end < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        expression = text[starts[-1]:end - 1]
    return _needs_not_host(expression)


def _needs_not_host(expression: str) -> bool:
    term = _unwrapped_term(expression)
    disjuncts = _split_top(term, "||")
    if len(disjuncts) > 1:
        return all(_needs_not_host(d) for d in disjuncts)
    conjuncts = _split_top(term, "&&")
    if len(conjuncts) > 1:
        return any(_needs_not_host(c) for c in conjuncts)
    return bool(re.fullmatch(r"!\s*" + _HOST, term))


def _unwrapped_term(text: str) -> str:
    """``x`` of `` (x) ``, ``unlikely(x)``, ``likely(x)``."""
    text = text.strip()
    while True:
        inner = re.sub(r"^(?:un)?likely\s*(?=\()", "", text)
        if inner.startswith("(") and inner.endswith(")") and min(_depths(inner)[1:-1] or [1]) >= 1:
            text = inner[1:-1].strip()
        else:
            return text


def _split_top(text: str, operator: str) -> list[str]:
    """``text`` cut at each ``operator`` outside parentheses."""
    depth = _depths(text)
    cuts = [i for i in range(len(text) - 1) if text[i:i + 2] == operator and depth[i] == 0]
    return [text[a:b] for a, b in zip([0, *[c + 2 for c in cuts]], [*cuts, len(text)])]


def _host_nowfails(hunk: Hunk, index: int) -> bool:
    """The run of changed lines around ``index`` replaces a guest-only
    condition with one that holds for some host accesses too
    (``!host && !has(X)`` -> ``!has(X) && !(host && data == 0)``)."""
    old, new = _block_texts(hunk, index)
    return _guest_only(" ".join(old)) and not _guest_only(" ".join(new))


def in_existing_struct(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """A member line of a struct/union that existed before the patch."""
    if not hunk.lines[index].text.rstrip().endswith(";"):
        return False
    text, kind = hunk.opener(index)
    return kind == " " and bool(_AGGREGATE_OPEN.match(text))


def no_padding_reuse(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """Not the blessed way to extend a struct: carving a field out of padding."""
    return not any(ln.removed and _PADDING.search(ln.text) for ln in hunk.lines)


_UNION_OPEN = re.compile(r"^\s*union\b[^;]*\{\s*$")


def not_in_padded_union(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """Not a member added to a union that a padding array sizes
    (``union { __u8 long_mode; __u64 pad[8]; } u;``): the union keeps its
    size, and the struct its layout, while the new member fits the pad."""
    line = hunk.lines[index]
    if not line.added:
        return True
    depth = len(line.text.expandtabs(8)) - len(line.text.expandtabs(8).lstrip())
    side = [i for i, ln in enumerate(hunk.lines) if ln.kind in (" ", "+")]
    above = [i for i in side if i < index]
    opener = next((i for i in reversed(above)
                   if len(hunk.lines[i].text.expandtabs(8)) - len(hunk.lines[i].text.expandtabs(8).lstrip()) < depth
                   and hunk.lines[i].text.strip()), None)
    if opener is None or not _UNION_OPEN.match(hunk.lines[opener].text):
        return True
    members = [hunk.lines[i].text for i in side if i > opener]
    inside = []
    for text in members:
        if text.strip().startswith("}"):
            break
        inside.append(text)
    removed = any(ln.removed for ln in hunk.lines)
    return removed or not any(_PADDING.search(text) for text in inside)


def changes_error_condition(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """An added condition replacing one that leads to an existing error exit,
    with no more clauses (the widening case is :func:`widens_error_condition`)."""
    clauses = _guarded_old_exit(matcher, hunk, index, patch)
    block = _block(hunk, index)
    return clauses is not None and clauses[0] <= clauses[1] and not _host_nowfails(hunk, index) and \
        any(hunk.lines[i].removed and _CONDITION.search(hunk.lines[i].text) for i in block)


def _statement(hunk: Hunk, index: int, kind: str) -> str:
    """The text of the statement starting at ``index``, on one side, to its ``;``."""
    parts = []
    for line in hunk.lines[index:]:
        if line.kind not in (" ", kind):
            continue
        parts.append(line.text.strip())
        if line.text.rstrip().endswith(";"):
            break
    return " ".join(parts)


def widens_return(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """An added ``return <call>(...)`` that the lines it replaces did not
    have, or that chains more conditions (``&&``/``||``) than they did; not
    a call the patch takes out of this function, or of another one an entry
    point it watches reaches along with it (code moved into a helper)."""
    line = hunk.lines[index]
    if not line.added:
        return False
    added = _statement(hunk, index, "+")
    called = _CALL.search(added.partition("=")[2] if not added.startswith("return") else added)
    if called and any(ln.removed and re.search(r"\b" + re.escape(called.group(2)) + r"\s*\(", ln.text)
                      and (ln.function == line.function or matcher.shares_entry(ln.function, line.function))
                      for ln in patch.removed_lines):
        return False  # the same call, kept (moved within the function, or into a helper the ioctl calls)
    replaced = [_statement(hunk, i, "-") for i in _block(hunk, index)
                if hunk.lines[i].removed and _RETURN_CALL.match(hunk.lines[i].text)]
    if not replaced:
        return True
    clauses = len(_AND_OR.findall(added))
    return clauses > max(len(_AND_OR.findall(r)) for r in replaced)


def callee_may_reject(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The call whose result the line returns or stores can fail on bad
    input (or nobody knows): ``r = kvm_hv_vcpu_init(vcpu);``, which can
    only run out of memory, rejects nothing; nor does a new ops hook that
    no vendor implements yet."""
    from reviewer.kvm import reach

    calls = reach.calls_in(_statement(hunk, index, "+"))
    return not calls or matcher.may_reject(calls[0][0]) is not False


def _errors(text: str) -> set[str]:
    return set(_ERRNO.findall(text))


_IF = re.compile(r"\bif\s*\(")


def _from_last_if(guard: str) -> str | None:
    """A guard's text from its last ``if (`` on (the condition itself), if any."""
    starts = [m.start() for m in _IF.finditer(guard)]
    return guard[starts[-1]:] if starts else None


def _same_guard_failed(patch: Patch, guard: str) -> bool:
    """The patch takes out an ``if`` with this very condition that failed the call."""
    for f in patch.files:
        for h in f.hunks:
            for i, ln in enumerate(h.lines):
                if ln.removed and " ".join(ln.text.split()) == guard and _error_exit(h, i, "-") is not None:
                    return True
    return False


def not_a_move(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The patch does not take out an error exit of the same kind in a
    function the rule watches and an entry point reaches along with this
    one: a check moved from a helper into the ioctl, or a blanket rejection
    narrowed to a new helper, is not a new rejection; a check moved to
    another ioctl is.

    Same kind: the same error code as the line's own (or its guarded
    exit's); for a line without one (a call), any error exit. Nor does it
    take out, anywhere, an error exit under the very condition that now
    guards the line: ``if (ran) return -EINVAL;`` in the ioctl becoming
    ``if (ran) return check_equal(...);`` in the validator rejects less.
    """
    line = hunk.lines[index]
    condition = _from_last_if(" ".join(_guard(hunk, index).split()))
    if condition and _same_guard_failed(patch, condition):
        return False
    wanted = _errors(line.text)
    exit_at = _error_exit(hunk, index) if _CONDITION.search(line.text) else None
    if exit_at is not None:
        wanted |= _errors(hunk.lines[exit_at].text)
        if _JUMP.match(hunk.lines[exit_at].text.strip()):  # goto out: the preset says which error
            preset = next((j for j in _side_lines(hunk, index)[::-1] if _PRESET.search(hunk.lines[j].text)), None)
            if preset is not None:
                wanted |= _errors(hunk.lines[preset].text)
    for ln in patch.removed_lines:
        if not (ERR_RETURN.search(ln.text) or _ERR_ASSIGN.search(ln.text) or _FALSE_RETURN.search(ln.text)):
            continue
        watched = ln is not line and (matcher.function_matches(ln.function) or wanted & _errors(ln.text)
                                      or any(ln is other for other in hunk.lines))  # replaced in place
        if watched and (not wanted or wanted & _errors(ln.text)) and matcher.shares_entry(ln.function, line.function):
            return False
    return True


def _side_guards(patch: Patch, hunk: Hunk, kind: str) -> dict[int, tuple[str, ...]]:
    """The conditions each line of one side of the hunk sits under, by index."""
    memo = _patch_memo(patch)
    key = ("guards", id(hunk), kind)
    if key not in memo:
        side = [i for i, ln in enumerate(hunk.lines) if ln.kind in (" ", kind)]
        memo[key] = dict(zip(side, guards([hunk.lines[i].text for i in side])))
    return memo[key]


def _guard_change(patch: Patch, hunk: Hunk, index: int, near: bool = True) -> list[tuple[set[str], set[str]]]:
    """For an exit the patch re-adds (the same text taken out in the same
    run of changes; ``near=False``: anywhere in the hunk): (lost, gained)
    conditions against each old copy, read
    with :mod:`reviewer.kvm.guards`. A guard turned into an early exit above
    (``if (!x) return 0;`` then the old body one level out), or the other
    way round, is no change: the same check, indented otherwise.
    ``r = -EINVAL;`` is an exit only where a jump follows it, not where it
    is preset above its check."""
    line = hunk.lines[index]
    text = " ".join(line.text.split())
    where = _block(hunk, index) if near else range(len(hunk.lines))
    same = [i for i in where if hunk.lines[i].removed and " ".join(hunk.lines[i].text.split()) == text]
    if not line.added or not same:
        return []
    if FAIL_ASSIGN.search(line.text) and not ERR_RETURN.search(line.text):
        after = [i for i in range(index + 1, len(hunk.lines)) if hunk.lines[i].kind in (" ", "+")][:1]
        if not any(_JUMP.match(hunk.lines[i].text.strip()) for i in after):
            return []
    new, old = _side_guards(patch, hunk, "+"), _side_guards(patch, hunk, "-")
    now = set(new[index])
    changes = []
    for i in same:
        before = set(old[i])
        lost = before - now - _early(hunk, new, index)
        gained = now - before - _early(hunk, old, i)
        changes.append((lost, gained))
    return changes


def _early(hunk: Hunk, side: dict[int, tuple[str, ...]], index: int) -> set[str]:
    """What the early exits above line ``index`` leave to hold there: ``x``
    below ``if (!x) return 0;``."""
    here = set(side[index])
    held = set()
    for j in (j for j in side if j < index):
        extra = set(side[j]) - here
        if len(extra) == 1 and _exits_at(hunk, j):
            held.add(negated(extra.pop()))
    return held


def loses_a_guard(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """An exit the patch keeps but takes conditions away from, adding none:
    the same ``return -EINVAL;`` now under fewer of the ``if``s it was under
    (``if (x2apic_format) { if (id != vcpu_id) return -EINVAL; }`` becoming
    ``if (id != vcpu_id) return -EINVAL;``) fails more input than before; the
    same ``return 0;`` under fewer accepts more. (The rule's patterns say
    which exits.)"""
    return any(lost and not gained for lost, gained in _guard_change(patch, hunk, index))


def gains_a_guard(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """An exit the patch keeps but puts under more conditions, taking none
    away: ``if (x) return 1;`` moved inside ``if (guest_cpuid_has(...)) {``
    fails less input than before. (A ``!host_initiated`` guard is
    ``adds_host_exemption``'s to report.)"""
    return any(gained and not lost and not all(_NOT_HOST.search(g) for g in gained)
               for lost, gained in _guard_change(patch, hunk, index))


def not_kept(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The failure is not one the function had before, written otherwise:
    not the same exit re-added under no fewer conditions (a ``return 1;``
    moved from the function's end into the ``default:`` arm), and not a
    success path turned around (taking out ``if (!(data & mask)) { ...;
    return 0; }``, which failed below when the condition held, and adding
    ``if (data & mask) return 1;``; only the exact negation of a condition
    that guarded a removed ``return 0;``/``return true;`` counts)."""
    if any(not lost for lost, _gained in _guard_change(patch, hunk, index, near=False)):
        return False
    new = _side_guards(patch, hunk, "+")
    conditions = set(new.get(index, ())[-1:])
    after = [i for i in range(index + 1, len(hunk.lines)) if hunk.lines[i].kind in (" ", "+")][:1]
    conditions |= {new[i][-1] for i in after if len(new[i]) > len(new.get(index, ()))}  # the if line itself
    if not conditions:
        return True
    old = _side_guards(patch, hunk, "-")
    turned = {negated(c) for c in conditions}
    return not any(ln.removed and _SUCCESS.match(ln.text) and turned & set(old[i])
                   for i, ln in enumerate(hunk.lines))


_LEAVES = re.compile(r"\b(return|goto|break|continue)\b")


def _exits_at(hunk: Hunk, index: int) -> bool:
    """The line returns or jumps out."""
    return bool(_LEAVES.search(hunk.lines[index].text))


def not_a_guard_moved(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The patch does not take out, anywhere, an error exit under the very
    condition that guards the line: a function moved to another file (its
    ``return 1`` under the same ``if``) rejects nothing new. Unlike
    :func:`not_a_move`, an unrelated removed exit does not excuse it."""
    condition = _from_last_if(" ".join(_guard(hunk, index).split()))
    return not (condition and _same_guard_failed(patch, condition))


def not_rewritten(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The failure is not one the patch rewrites in place under the same
    condition: ``return 1;`` becoming ``return KVM_MSR_RET_ERR;``, or
    ``goto out;`` (``ret = -EINVAL`` preset) becoming ``return -EINVAL;``,
    fails what it failed before (a changed condition around it still counts)."""
    old, new = _block_texts(hunk, index)
    jumped = any(hunk.lines[i].removed and _jump_fails(hunk, i) for i in _block(hunk, index))
    return not (jumped or any(fails(text) for text in old)) or any(_CONDITION.search(text) for text in old + new)


def _jump_fails(hunk: Hunk, index: int) -> bool:
    """A ``goto``/``break`` whose return value, as last set above it on its
    side of the hunk, is an error (``int ret = -EINVAL;`` ... ``goto out;``)."""
    if not _JUMP.match(hunk.lines[index].text.strip()):
        return False
    preset = next((j for j in _side_lines(hunk, index)[::-1] if _PRESET.search(hunk.lines[j].text)), None)
    return preset is not None and bool(ERR_RETURN.search("return " + _PRESET.search(hunk.lines[preset].text).group(1)
                                                         + ";"))


def not_moved_out(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """A removed error exit that the patch does not add back elsewhere
    (the same error code; for ``return 1``/``false``, the same condition):
    a check moved from a helper into its caller relaxes nothing. The same
    condition re-added in front of something other than an error exit
    (``if (ran) return check_equal(...)``) is a narrowing, not a move."""
    line = hunk.lines[index]
    wanted = _errors(line.text)
    guard = " ".join(_guard(hunk, index).split())
    if not guard and _PRESET.search(line.text):  # r = -EINVAL; if (ran) goto out;
        after = [ln for ln in hunk.lines[index + 1:index + 4] if ln.kind in (" ", line.kind)]
        guard = next((" ".join(ln.text.split()) for ln in after if _IF.search(ln.text)), "")
    guard = _from_last_if(guard) or guard
    moved = False
    for f in patch.files:
        for h in f.hunks:
            for i, ln in enumerate(h.lines):
                if not ln.added:
                    continue
                if guard and " ".join(ln.text.split()) == guard:
                    if _error_exit(h, i) is None:
                        return True
                    moved = True
                elif wanted & _errors(ln.text) and (ERR_RETURN.search(ln.text) or _ERR_ASSIGN.search(ln.text)):
                    moved = True
    return not moved


def not_readded(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The patch does not add the same line back elsewhere (a moved line)."""
    text = " ".join(hunk.lines[index].text.split())
    return not any(" ".join(ln.text.split()) == text for ln in patch.added_lines)


def not_inverted(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """A removed ``if (x) { ... }`` whose path the patch does not keep
    inverted: ``if (host_initiated) { set; return 0; }`` becoming
    ``if (!host_initiated) return 1; set;`` still lets ``x`` through."""
    old = _side_guards(patch, hunk, "-")
    below = [i for i in range(index + 1, len(hunk.lines)) if hunk.lines[i].kind in (" ", "-")][:1]
    opened = {old[i][-1] for i in below if len(old[i]) > len(old[index])}
    if not opened:
        return True
    new = _side_guards(patch, hunk, "+")
    turned = {negated(c) for c in opened}
    return not any(ln.added and _exits_at(hunk, i) and turned & set(new[i]) for i, ln in enumerate(hunk.lines))


def _entry_label(entry: str) -> str:
    """The case label of an entry point: KVM_CAP_X of KVM_ENABLE_CAP(KVM_CAP_X)."""
    return entry.removeprefix("KVM_ENABLE_CAP(").removesuffix(")")


def not_a_new_interface(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """Not in a ``case`` arm this patch adds, nor in a helper only such arms
    reach, nor under a condition on state only such an arm sets (a field the
    patch declares and its new arm assigns: ``if (id >= kvm->arch.max_vcpu_ids)``
    with a new KVM_CAP_MAX_VCPU_ID) or that needs a new flag set (a field
    the patch declares, as a bare ``&&`` term): the argument checks of a new
    ioctl, capability, attribute or VM type reject nothing that worked before."""
    if in_new_case(hunk, index):
        return False
    entries = matcher.entries(hunk.lines[index].function)
    labels = new_labels(patch)
    if entries and labels and all(_entry_label(entry) in labels for entry in entries):
        return False  # a function only the patch's new arms reach (__set_sregs2 of a new KVM_SET_SREGS2)
    condition = _guard(hunk, index) + " " + _statement(hunk, index, hunk.lines[index].kind)
    if _new_flag_required(patch, condition):
        return False
    fields = _new_interface_state(patch)
    if not fields:
        return True
    return not any(m.group(1) in fields for m in _MEMBER.finditer(condition))


_FLAG_TERM = re.compile(r"(?:^|&&|\(|\bif\s*\()\s*[\w>.-]*(?:->|\.)(\w+)\s*(?=&&)")


def _new_flag_required(patch: Patch, condition: str) -> bool:
    """The condition needs a field the patch declares to be set, as a bare
    ``&&`` term (``if (vcpu->kvm->arch.has_protected_state && ...)``): no VM
    a VMM creates today has it, so nothing that worked fails."""
    declared = _declared_fields(patch)
    return bool(declared) and any(m.group(1) in declared for m in _FLAG_TERM.finditer(condition))


def _declared_fields(patch: Patch) -> frozenset[str]:
    """Members the patch adds to a struct in a header."""
    memo = _patch_memo(patch)
    if "declared" not in memo:
        memo["declared"] = frozenset(
            m.group(1) for f in patch.files if f.path.endswith(".h") for h in f.hunks for i in h.changed
            if h.lines[i].added and (m := _DECLARED.match(h.lines[i].text)))
    return memo["declared"]


_MEMBER = re.compile(r"(?:->|\.)\s*(\w+)")
_DECLARED = re.compile(r"^\s+[A-Za-z_][\w\s*]*?\b(\w+)\s*(?:\[[^\]]*\])?\s*;")
_ASSIGNED = re.compile(r"(?:->|\.)\s*(\w+)\s*=[^=]")
def _new_interface_state(patch: Patch) -> frozenset[str]:
    """Fields the patch declares (an added member line in a header) and
    assigns inside a ``case`` arm it adds."""
    memo = _patch_memo(patch)
    if "fields" not in memo:
        declared, assigned = set(), set()
        for f in patch.files:
            for h in f.hunks:
                for i in h.changed:
                    line = h.lines[i]
                    if not line.added:
                        continue
                    if f.path.endswith(".h") and (m := _DECLARED.match(line.text)):
                        declared.add(m.group(1))
                    elif in_new_case(h, i):
                        assigned.update(_ASSIGNED.findall(line.text))
        memo["fields"] = frozenset(declared & assigned)
    return memo["fields"]


def adds_host_exemption(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """Lines the patch rewrites now spare host-initiated accesses
    (``!msr_info->host_initiated &&`` in front of a failure or of the
    reserved bits it checks), where the lines they replace did not, or a
    new early success for them alone (``if (host_initiated) return true;``
    in a validator, ``return 0;`` in a setter), or a test that now holds for
    them whatever else (``host_initiated || guest_cpuid_has(...)``):
    KVM_SET_MSRS accepts more."""
    old = " ".join(_block_texts(hunk, index)[0])
    if old and _HOST_OR.search(hunk.lines[index].text) and "host" not in old:
        return True  # (host_initiated || guest_cpuid_has(...)): true for the host whatever the guest has
    if _HOST_ONLY.search(hunk.lines[index].text):  # if (host_initiated) return true;
        after = [i for i in range(index + 1, len(hunk.lines)) if hunk.lines[i].kind in (" ", "+")][:1]
        return any(_SUCCESS.match(hunk.lines[i].text) for i in after)
    return bool(old) and bool(_NOT_HOST.search(hunk.lines[index].text)) and not _NOT_HOST.search(old)


_MASK_TERM = re.compile(r"\|(?!\|)")
_MASK_NAME = re.compile(r"&\s*~|valid|allowed|permitted|feature_bits", re.I)


def _statement_head(hunk: Hunk, index: int) -> str:
    """The text of the statement line ``index`` belongs to, up to it (its side)."""
    parts = [hunk.lines[index].text]
    for i in _side_lines(hunk, index)[::-1][:LOOKBACK]:
        text = _COMMENT_TAIL.sub("", hunk.lines[i].text).strip()
        if not text or text.endswith((";", "{", "}")):
            break
        parts.append(text)
    return " ".join(reversed(parts))


def widens_mask(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """A mask of allowed values gains a term: ``~(A | B)`` becoming
    ``~(A | B | C)``, or a ``permitted_flags = A |`` statement (or a
    ``#define ..._VALID_...``) with one more ``|`` than the lines it replaces."""
    line = hunk.lines[index]
    if not line.added or not _MASK_NAME.search(_statement_head(hunk, index)):
        return False
    old, new = _block_texts(hunk, index)

    def terms(texts: list[str]) -> int:
        return sum(len(_MASK_TERM.findall(text.replace("||", ""))) for text in texts)

    return bool(old) and terms(new) > terms(old)


_RESERVED_OR = re.compile(r"\b\w*(?:reserved|rsvd)\w*\s*\|=\s*\(?([A-Z_][A-Z0-9_]*)")


def not_moved_here(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The patch does not take the same code out elsewhere (a moved line;
    spaces and a trailing comment aside)."""
    mine = _code(hunk.lines[index].text)
    return not any(_code(ln.text) == mine for ln in patch.removed_lines)


_CASE_MSR = re.compile(r"^\s*case\s+(\w+)")


def not_relabelled(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """A removed ``case MSR_X:`` that the patch does not handle again: not
    rewritten in the same run of changes (``case A: {`` becoming ``case A:``,
    a range becoming ``case KVM_FIRST_X ... KVM_LAST_X:``), nor its MSR
    named by a ``case`` the patch adds anywhere (an arm moved)."""
    if any(hunk.lines[i].added and _CASE_MSR.match(hunk.lines[i].text) for i in _block(hunk, index)):
        return False
    found = _CASE_MSR.match(hunk.lines[index].text)
    if not found:
        return True
    name = re.compile(r"\bcase\b.*\b" + found.group(1) + r"\b")
    return not any(name.search(ln.text) for ln in patch.added_lines)


def not_newly_allowed(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The bit ``__reserved_bits |= X86_CR4_FRED`` reserves is not one the
    patch also adds to what is allowed (``CR4_RESERVED_BITS`` gaining
    ``| X86_CR4_FRED``): a bit that was reserved for every guest stays
    reserved only for guests without the feature; that rejects nothing new."""
    found = _RESERVED_OR.search(hunk.lines[index].text)
    if not found:
        return True
    bit = re.compile(r"\b" + found.group(1) + r"\b")
    return not any(bit.search(ln.text) and not _RESERVED_OR.search(ln.text) for ln in patch.added_lines)


def newly_allowed(matcher: Matcher, patch: Patch, hunk: Hunk, index: int) -> bool:
    """The other side of :func:`not_newly_allowed`: the bit is reserved only
    for guests without its feature because the patch allows it for the
    others (a new CR4 bit KVM lets guests with the feature set)."""
    return bool(_RESERVED_OR.search(hunk.lines[index].text)) and not not_newly_allowed(matcher, patch, hunk, index)


LINE_PREDICATES: dict[str, Callable[[Matcher, Patch, Hunk, int], bool]] = {
    "not_a_move": not_a_move,
    "not_a_guard_moved": not_a_guard_moved,
    "not_rewritten": not_rewritten,
    "reaches_host_writes": reaches_host_writes,
    "widens_error_condition": widens_error_condition,
    "changes_error_condition": changes_error_condition,
    "widens_return": widens_return,
    "in_existing_struct": in_existing_struct,
    "no_padding_reuse": no_padding_reuse,
    "not_a_new_interface": not_a_new_interface,
    "not_moved_out": not_moved_out,
    "not_readded": not_readded,
    "adds_host_exemption": adds_host_exemption,
    "widens_mask": widens_mask,
    "loses_a_guard": loses_a_guard,
    "gains_a_guard": gains_a_guard,
    "not_kept": not_kept,
    "callee_may_reject": callee_may_reject,
    "not_a_kept_condition": not_a_kept_condition,
    "not_quirked": not_quirked,
    "not_args_only": not_args_only,
    "not_in_padded_union": not_in_padded_union,
    "not_moved_here": not_moved_here,
    "not_relabelled": not_relabelled,
    "not_newly_allowed": not_newly_allowed,
    "newly_allowed": newly_allowed,
    "not_inverted": not_inverted,
}


def _abi_findings(findings: list[Finding], params: dict) -> list[Finding]:
    """ABI findings at warning or above before any acknowledgement."""
    categories = params.get("categories", ABI_CATEGORIES)
    return [f for f in findings if f.category in categories
            and severity_rank(f.original_severity or f.severity) >= severity_rank("warning")]


def unacknowledged_abi_change(series: Series, findings: list[Finding], params: dict):
    """A patch with an ABI finding whose changelog and cover letter are silent."""
    by_patch = sorted({f.patch for f in _abi_findings(findings, params) if not f.acknowledged})
    return [(p, [p]) for p in by_patch]


def _touches(series: Series, globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, g) for p in series.patches for path in p.paths for g in globs)


def untouched_files(series: Series, findings: list[Finding], params: dict):
    """ABI findings exist but no patch touches ``params.files`` (docs, selftests)."""
    abi = _abi_findings(findings, params)
    if not abi or _touches(series, params["files"]):
        return []
    return [(0, sorted({f.patch for f in abi}))]


def stable_on_abi_change(series: Series, findings: list[Finding], params: dict):
    """``Cc: stable`` on a patch that changes the ABI."""
    abi = {f.patch for f in _abi_findings(findings, params)}
    stable = re.compile(params.get("stable", r"stable@(vger\.)?kernel\.org"))
    hits = []
    for patch in series.patches:
        tagged = any(stable.search(v) for v in patch.trailer_values("Cc"))
        if patch.index in abi and tagged:
            hits.append((patch.index, [patch.index]))
    return hits


SERIES_PREDICATES = {
    "unacknowledged_abi_change": unacknowledged_abi_change,
    "untouched_files": untouched_files,
    "stable_on_abi_change": stable_on_abi_change,
}
