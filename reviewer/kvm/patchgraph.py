"""What a series does to the call graph: the calls its added lines make.

A new helper is reached because the patch calls it from code userspace
reaches; calls inside a ``case`` arm the patch adds (a new ioctl or
capability) reach nothing that worked before, so they do not count.
"""

from __future__ import annotations

import re

from reviewer.series import Hunk, Series

_CASE = re.compile(r"^\s*(case\b[^:]*|default)\s*:")
_FUNC_END = re.compile(r"^}")


def in_new_case(hunk: Hunk, index: int) -> bool:
    """Is line ``index`` inside a ``case`` arm whose label this patch adds?"""
    kind = hunk.lines[index].kind
    for line in reversed(hunk.lines[:index + 1]):
        if line.kind not in (" ", kind):
            continue
        if _FUNC_END.match(line.text):
            return False
        if _CASE.match(line.text):
            return line.added
    return False


def added_calls(series: Series, calls_in) -> list[tuple[str, str, bool]]:
    """(caller, callee, result used) for every call an added line makes,
    outside new case arms. ``calls_in(text)`` names a line's calls."""
    edges = []
    for patch in series.patches:
        for fdiff in patch.files:
            if not fdiff.path.endswith((".c", ".h")):
                continue
            for hunk in fdiff.hunks:
                for i in hunk.changed:
                    line = hunk.lines[i]
                    if not line.added or line.function is None or in_new_case(hunk, i):
                        continue
                    edges += [(line.function, callee, used) for callee, used in calls_in(line.text)]
    return edges
