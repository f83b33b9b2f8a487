"""Measure the rule pack on real kvm-list mails: recall and false alarms.

The mails themselves are never committed: ``tests/realmails.tsv`` keeps their
Message-IDs, subjects and our expected verdicts. Fetch them (``b4 mbox MSGID``
or lore's ``/raw``) into a directory, then:

    .venv/bin/python -m tests.realmails DIR

A verdict of cpuid-adjust or userspace-reject is caught when the review has an
ABI finding (cpuid-adjust, userspace-reject or uapi category) at warning or
above (an acknowledged finding counts at its original severity); a benign
mail is a false alarm when it gets one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from reviewer import pipeline, rules, sources
from reviewer.errors import InputError
from reviewer.findings import ABI_CATEGORIES, severity_rank

MANIFEST = Path(__file__).with_name("realmails.tsv")


def verdicts() -> dict[str, tuple[str, str]]:
    out = {}
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            msgid, subject, verdict = line.split("\t")[:3]
            out[msgid] = (subject, verdict)
    return out


def level(review) -> str:
    abi = [f for f in review.findings if f.category in ABI_CATEGORIES]
    top = max((severity_rank(f.original_severity or f.severity) for f in abi), default=-1)
    return {-1: "none", 0: "info"}.get(top, "warning")


def main(directory: str) -> int:
    wanted = verdicts()
    ruleset = rules.load()
    seen = {}
    for path in sorted(Path(directory).iterdir()):
        try:
            msgs = sources.from_path(str(path))
        except InputError:
            continue
        for msg in msgs:
            msgid = str(msg.get("Message-ID", "")).strip().strip("<>")
            if msgid in wanted:
                seen[msgid] = pipeline.review(pipeline.load_series([msg]), ruleset)
    caught = missed = warned = quiet = 0
    for msgid, (subject, verdict) in wanted.items():
        if msgid not in seen:
            print(f"absent  {msgid}")
            continue
        got = level(seen[msgid])
        flagged = got == "warning"
        if verdict == "benign":
            warned, quiet = warned + flagged, quiet + (not flagged)
            tag = "FALSE-ALARM" if flagged else "ok"
        else:
            caught, missed = caught + flagged, missed + (not flagged)
            tag = "ok" if flagged else "MISSED"
        print(f"{tag:11} {verdict:16} {got:7} {subject[:70]}")
    if caught + missed:
        print(f"recall: {caught}/{caught + missed}")
    if warned + quiet:
        print(f"false alarms: {warned}/{warned + quiet} benign mails")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
