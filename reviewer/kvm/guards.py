"""Which conditions each line of a piece of C sits under.

Kernel style indents a statement one level deeper than the ``if``, ``else``
or ``case`` that governs it, with or without braces, so the indentation
tells what governs a line: every open ``if``/``else``/``case`` shallower
than it. One side of a hunk is enough to compare: the conditions above the
hunk are the same on both sides.

A guard is the condition's text with its spaces normalised; an ``else``
arm is the :func:`negated` condition of the ``if`` it follows (``!x``,
``!(a && b)``; an ``else if`` adds its own condition beside that), a
``case`` arm is its label.
"""

from __future__ import annotations

import re

_IF = re.compile(r"^(\}\s*)?(else\s+)?if\s*\(")
_ELSE = re.compile(r"^(\}\s*)?else\b(?!\s*if\b)")
_CASE = re.compile(r"^(case\b.*?|default\s*):(?!:)")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/")
_LINE_COMMENT = re.compile(r"//.*$")


def _columns(text: str) -> int:
    """How deep ``text`` is indented, tabs counting eight columns."""
    width = 0
    for char in text:
        if char == "\t":
            width += 8 - width % 8
        elif char == " ":
            width += 1
        else:
            break
    return width


def _condition(text: str) -> tuple[str, int, str]:
    """The text after the first ``(`` up to its match (or the line's end),
    how many parentheses are still open after the line, and what follows
    the condition on the line (``return -EINVAL;`` of a one-line if)."""
    start = text.index("(") + 1
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i], 0, text[i + 1:].strip()
    return text[start:], depth, ""


def _closing(text: str, depth: int) -> tuple[str, int]:
    """A continuation line of an open condition: its part and what stays open."""
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return text[:i], 0
    return text, depth


def _norm(text: str) -> str:
    return " ".join(text.split())


def negated(cond: str) -> str:
    """``x`` of ``!x``/``!(x)``, ``!x`` of ``x``, ``!(a && b)`` of ``a && b``:
    how kernel code spells the other side of one condition."""
    if cond.startswith("!") and not cond.startswith("!="):
        rest = cond[1:].strip()
        if _primary(rest):
            return _unwrapped(rest)
    return f"!{cond}" if _primary(cond) else f"!({cond})"


def depths(text: str) -> list[int]:
    """The parenthesis depth at each character of ``text``."""
    out, depth = [], 0
    for char in text:
        depth -= char in ")]"
        out.append(depth)
        depth += char in "(["
    return out


def _primary(text: str) -> bool:
    """One operand (``a->b``, ``f(x, y)``, ``(a && b)``): no space outside
    parentheses, which kernel style puts around every binary operator."""
    return bool(text) and not any(char.isspace() and depth == 0 for char, depth in zip(text, depths(text)))


def _unwrapped(text: str) -> str:
    """``a && b`` of ``(a && b)``; anything else as it is."""
    while text.startswith("(") and text.endswith(")") and min(depths(text)[1:-1] or [1]) >= 1:
        text = text[1:-1].strip()
    return text


def guards(texts: list[str]) -> list[tuple[str, ...]]:
    """The conditions each of ``texts`` sits under, outermost first."""
    out: list[tuple[str, ...]] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, guard, an else's) of what is open
    open_if: tuple[int, list[str], int] | None = None  # an if whose condition goes on: (indent, parts, depth)
    for raw in texts:
        code = _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub("", raw)).strip()
        here = tuple(g for _, g, _ in stack)
        if open_if is not None:
            indent, parts, depth = open_if
            part, depth = _closing(code, depth)
            parts.append(part)
            out.append(here)
            if depth == 0:
                stack.append((indent, _norm(" ".join(parts)), False))
                open_if = None
            else:
                open_if = (indent, parts, depth)
            continue
        if not code or code.startswith("#"):
            out.append(here)
            continue
        indent = _columns(raw)
        chained = _ELSE.match(code) or (_IF.match(code) and _IF.match(code).group(2))
        # an else closes the arm before it at the same depth, and negates it
        while stack and (stack[-1][0] > indent or (stack[-1][0] == indent and not chained)):
            stack.pop()
        if chained and stack and stack[-1][0] == indent and not stack[-1][2] and not stack[-1][1].startswith("case "):
            stack[-1] = (indent, negated(stack[-1][1]), True)
        out.append(tuple(g for _, g, _ in stack))
        if _IF.match(code):
            cond, depth, rest = _condition(code)
            if depth:
                open_if = (indent, [cond], depth)
            elif rest not in ("", "{"):  # if (x) return -EINVAL;
                out[-1] += (_norm(cond),)
            else:
                stack.append((indent, _norm(cond), False))
        elif _CASE.match(code):
            stack.append((indent, _norm(_CASE.match(code).group(1)), False))
    return out
