"""``--kernel-tree``: exact function context from whole files.

For every C file a patch touches, find the file's content before the patch
(the tree's copy if the patch's old side matches it, the result of an
earlier patch of the series, or the tree's copy un-applied if the tree
already holds the patch), rebuild the content after it, and scan both whole.
Files that match neither side keep the hunk-only context.
"""

from __future__ import annotations

from pathlib import Path

from reviewer.errors import InputError
from reviewer.kvm import context
from reviewer.series import FileDiff, Series


def _read(root: Path, path: str | None) -> list[str] | None:
    if path is None:
        return []
    try:
        return (root / path).read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError:
        return None


def _side_matches(lines: list[str], fdiff: FileDiff, old: bool) -> bool:
    for hunk in fdiff.hunks:
        for ln in hunk.lines:
            if ln.kind == ("+" if old else "-"):
                continue
            number = ln.old_lineno if old else ln.new_lineno
            if number is None or number > len(lines) or lines[number - 1] != ln.text:
                return False
    return True


def _rebuild(lines: list[str], fdiff: FileDiff, forward: bool) -> list[str]:
    """Apply (or un-apply) ``fdiff`` to ``lines``."""
    keep, drop = (" +", "-") if forward else (" -", "+")
    out: list[str] = []
    pos = 0
    for hunk in fdiff.hunks:
        start = (hunk.old_start if forward else hunk.new_start) - 1
        if not any(ln.kind in (" ", drop) for ln in hunk.lines):
            start += 1  # a pure insertion's header names the line before it
        out += lines[pos:start]
        pos = start
        for ln in hunk.lines:
            if ln.kind in keep:
                out.append(ln.text)
            if ln.kind in (" ", drop):
                pos += 1
    return out + lines[pos:]


def _before_after(root: Path, overlay: dict, fdiff: FileDiff):
    old_path = fdiff.old_path
    candidate = overlay.get(old_path) if old_path in overlay else _read(root, old_path)
    if candidate is None:
        return None
    if _side_matches(candidate, fdiff, old=True):
        return candidate, _rebuild(candidate, fdiff, forward=True)
    current = _read(root, fdiff.new_path)
    if current is not None and _side_matches(current, fdiff, old=False):
        return _rebuild(current, fdiff, forward=False), current
    return None


def apply(model: Series, tree: str) -> None:
    """Re-derive every C line's function from the whole files in ``tree``."""
    root = Path(tree)
    if not root.is_dir():
        raise InputError(f"{tree}: --kernel-tree needs a directory")
    overlay: dict[str, list[str]] = {}
    for patch in model.patches:
        for fdiff in patch.files:
            if not fdiff.path.endswith((".c", ".h")) or fdiff.binary:
                continue
            sides = _before_after(root, overlay, fdiff)
            if sides is None:
                continue
            before, after = sides
            old_where, new_where = context.scan_file(before), context.scan_file(after)
            for hunk in fdiff.hunks:
                for ln in hunk.lines:
                    where = old_where[ln.old_lineno - 1] if ln.removed else new_where[ln.new_lineno - 1]
                    ln.function, ln.scope = where.function, where.kind
            if fdiff.new_path:
                overlay[fdiff.new_path] = after
