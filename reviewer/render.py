"""Findings -> text for people and machines (text, json, checkpatch, b4-check,
markdown). The mail formats live in :mod:`reviewer.mail`."""

from __future__ import annotations

import json

from reviewer import __version__
from reviewer.analysis import worst
from reviewer.findings import Finding, severity_rank
from reviewer.pipeline import Review

COLOURS = {"error": "\033[1;31m", "warning": "\033[1;33m", "info": "\033[36m"}
RESET = "\033[0m"
TOOL = "kvm-review"


def _where(f: Finding) -> str:
    if f.file is None:
        return "series" if f.patch == 0 else f"patch {f.patch}"
    place = f"{f.file}:{f.line}" if f.line else f.file
    return f"{place} ({f.function}())" if f.function else place


def _label(f: Finding) -> str:
    return f"{f.severity} (acknowledged)" if f.acknowledged else f.severity


def text(review: Review, colour: bool = False) -> str:
    """For a terminal: one heading line per finding, its message wrapped under it."""
    import textwrap

    s = review.series
    count = len(s.patches)
    missing = "" if s.complete else f", incomplete: {count} of {s.expected}"
    out = [f"{s.subject} (v{s.revision}, {count} patch{'es' if count != 1 else ''}{missing})"]
    if not review.findings:
        out.append("no CPUID/ABI concerns found")
    for f in review.findings:
        sev = _label(f)
        if colour:
            sev = COLOURS[f.severity] + sev + RESET
        out.append(f"{f.patch}/{s.expected} {_where(f)}: {sev} [{f.rule}]")
        out += textwrap.wrap(" ".join(f.message.split()), 76, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(out) + "\n"


def as_dict(review: Review) -> dict:
    s = review.series
    return {
        "tool": TOOL,
        "version": __version__,
        "series": {"subject": s.subject, "revision": s.revision, "message_id": s.message_id,
                   "patches": len(s.patches), "expected": s.expected, "complete": s.complete},
        "findings": [f.as_dict() for f in review.findings],
    }


def as_json(review: Review) -> str:
    return json.dumps(as_dict(review), indent=2, ensure_ascii=False) + "\n"


def checkpatch(review: Review, min_severity: str = "warning") -> str:
    """``FILE:LINE: WARNING: message`` lines, as editors and b4 prep read them.

    Terse like checkpatch.pl: info findings (CHECK) only when asked for.
    """
    out = []
    for f in review.findings:
        if severity_rank(f.severity) < severity_rank(min_severity):
            continue
        tag = {"error": "ERROR", "warning": "WARNING", "info": "CHECK"}[f.severity]
        place = f"{f.file}:{f.line}" if f.file and f.line else (f.file or (f"patch {f.patch}" if f.patch else "series"))
        out.append(f"{place}: {tag}: {f.rule}: {' '.join(f.message.split())}")
    return "\n".join(out) + ("\n" if out else "")


def b4_check(review: Review, fail_on: str = "warning") -> str:
    """The JSON b4 0.16's review check commands expect."""
    top = worst(review.findings)
    if top is None:
        status = "pass"
    elif severity_rank(top) >= severity_rank(fail_on):
        status = "fail"
    else:
        status = "warn"
    counts = {sev: sum(1 for f in review.findings if f.severity == sev)
              for sev in ("error", "warning", "info")}
    summary = ", ".join(f"{n} {sev}{'s' if n != 1 else ''}" for sev, n in counts.items() if n)
    summary = summary or "no CPUID/ABI concerns"
    details = "\n".join(f"{_where(f)}: {f.severity}: {f.rule}: {' '.join(f.message.split())}"
                        for f in review.findings)
    return json.dumps({"tool": TOOL, "status": status, "summary": summary,
                       "url": "https://docs.kernel.org/virt/kvm/api.html", "details": details}) + "\n"


def markdown(review: Review) -> str:
    s = review.series
    out = [f"## {s.subject} (v{s.revision})", ""]
    if not review.findings:
        out.append("No CPUID/ABI concerns found.")
    for f in review.findings:
        out.append(f"- **{_label(f)}** `{f.rule}` — {_where(f)}: {' '.join(f.message.split())}")
        if f.excerpt:
            out += ["", "  ```diff"] + [f"  {line}" for line in f.excerpt] + ["  ```"]
    return "\n".join(out) + "\n"
