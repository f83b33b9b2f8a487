"""What a series does to the call graph: the calls its added lines make.

A new helper is reached because the patch calls it from code userspace
reaches; calls inside a ``case`` arm the patch adds (a new ioctl or
capability) reach nothing that worked before, so they do not count.
"""

from __future__ import annotations

import re

from reviewer.series import Hunk, Series

# a call (a cheap look, no C parsing); its result used unless it starts the statement
_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_KEYWORDS = frozenset("if while for switch return sizeof typeof do else case defined".split())
# what only the C scanner names right: calls through ops members and their macros
_INDIRECT = re.compile(r"(->|\.)\s*\w+\s*\(|\bstatic_call\b|_call\s*\(")


def called(text: str) -> list[str]:
    """The names a line calls."""
    return _CALL.findall(text)


def in_new_case(hunk: Hunk, index: int) -> bool:
    """Is line ``index`` inside a ``case`` arm whose label this patch adds
    (not one it rewrites: ``case X:`` becoming ``case X: {``)?"""
    if not hunk.new_arms:
        return False  # the common case, without reading the hunk's arms
    return hunk.case_labels[index] in hunk.new_arms


def new_labels(patch) -> set[str]:
    """The ``case`` labels whose arms the patch adds (``KVM_SET_SREGS2``,
    ``KVM_CAP_X``), read from every hunk."""
    return {label for f in patch.files for h in f.hunks for i in h.new_arms
            for label in _LABELS.findall(h.lines[i].text)}


_LABELS = re.compile(r"\bcase\s+([A-Z_][A-Z0-9_]*)\s*:")


def _plain_calls(text: str) -> list[tuple[str, bool]]:
    start = len(text) - len(text.lstrip())
    return [(m.group(1), m.start() != start) for m in _CALL.finditer(text) if m.group(1) not in _KEYWORDS]


def added_calls(series: Series, calls_in) -> list[tuple[str, str, bool]]:
    """(caller, callee, result used) for every call an added line makes,
    outside new case arms. ``calls_in(text)``, the C scanner, names the
    calls of lines that call through an ops member; plain calls are read
    with a regular expression (a call that does not start its statement
    counts as used)."""
    edges = []
    for patch in series.patches:
        for fdiff in patch.files:
            if not fdiff.path.endswith((".c", ".h")):
                continue
            for hunk in fdiff.hunks:
                for i in hunk.changed:
                    line = hunk.lines[i]
                    if not line.added or line.function is None or "(" not in line.text or in_new_case(hunk, i):
                        continue
                    scan = calls_in if _INDIRECT.search(line.text) else _plain_calls
                    edges += [(line.function, callee, used) for callee, used in scan(line.text)]
    return edges
