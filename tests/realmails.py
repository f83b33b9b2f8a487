"""Measure the rule pack on real kvm-list mails: recall and false alarms,
reported per set so that the mails the rules were tuned on never flatter
the figures of the mails kept apart.

The mails themselves are never committed: ``tests/realmails.tsv`` keeps their
Message-IDs, subjects, expected verdicts and the set each belongs to. Fetch
them (``b4 mbox MSGID`` or lore's ``/raw``) into a directory (searched
recursively), then:

    .venv/bin/python -m tests.realmails DIR [SET] [--blind]

(``--blind``: the figures alone, for a set kept apart.)

Sets: ``old`` (the first 60, which earlier rules were tuned on), ``tune``
and ``holdout`` (the second set, split before any of it was read by the
Message-ID's SHA-256: ``tune`` for tuning, ``holdout`` reported untouched
once, then used for tuning too), and ``fresh-tune``/``fresh-holdout`` (a
third set, collected and labelled by people who did not write rules,
measured once as a whole with the rules as they stood, then split the same
way: ``fresh-holdout``'s figure before and after tuning on ``fresh-tune``
is an honest one), ``next`` (a fourth set, collected the same way,
measured blind, then read and tuned on), ``later`` (a fifth, measured
blind before and after the round that read ``next``, then read), and
``final`` (a sixth, collected during that round, never read, measured
blind after it and after the round that read ``later``).

Verdicts: cpuid-adjust, userspace-reject, userspace-warn are caught by an
ABI finding (cpuid-adjust, userspace-reject or uapi category) at warning or
above (an acknowledged finding counts at its original severity);
relaxation and runtime-bits by one at info or above; a benign mail is a
false alarm when it gets a warning. ``skip`` lines record mails read and
set aside.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from reviewer import pipeline, rules, sources
from reviewer.errors import InputError
from reviewer.findings import ABI_CATEGORIES, severity_rank

MANIFEST = Path(__file__).with_name("realmails.tsv")
AT_WARNING = ("cpuid-adjust", "userspace-reject", "userspace-warn")
AT_INFO = ("relaxation", "runtime-bits")
SETS = ("old", "tune", "holdout", "fresh-tune", "fresh-holdout", "next", "later", "final")


@dataclass(frozen=True)
class Mail:
    msgid: str
    subject: str
    verdict: str
    half: str


def manifest() -> list[Mail]:
    out = []
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            msgid, subject, verdict, half = line.split("\t")[:4]
            out.append(Mail(msgid, subject, verdict, half))
    return out


def level(review) -> str:
    abi = [f for f in review.findings if f.category in ABI_CATEGORIES]
    top = max((severity_rank(f.original_severity or f.severity) for f in abi), default=-1)
    return {-1: "none", 0: "info"}.get(top, "warning")


def judge(verdict: str, got: str) -> str:
    """ok, MISSED or FALSE-ALARM."""
    if verdict == "benign":
        return "FALSE-ALARM" if got == "warning" else "ok"
    wanted = ("warning",) if verdict in AT_WARNING else ("info", "warning")
    return "ok" if got in wanted else "MISSED"


def main(directory: str, only: str | None = None, blind: bool = False) -> int:
    """``blind``: the figures only, no mail's subject or verdict: how a set
    kept apart is measured without anyone reading what it misses."""
    mails = [m for m in manifest() if m.verdict != "skip" and (only is None or m.half == only)]
    wanted = {m.msgid for m in mails}
    ruleset = rules.load()
    seen = {}
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        try:
            msgs = sources.from_path(str(path))
        except InputError:
            continue
        for msg in msgs:
            msgid = str(msg.get("Message-ID", "")).strip().strip("<>")
            if msgid in wanted and msgid not in seen:
                try:
                    seen[msgid] = level(pipeline.review(pipeline.load_series([msg]), ruleset))
                except InputError as exc:
                    seen[msgid] = f"error: {exc}"
    for half in SETS:
        rows = [m for m in mails if m.half == half]
        if not rows:
            continue
        caught = positives = alarms = benign = absent = 0
        print(f"== {half}")
        for m in rows:
            if m.msgid not in seen:
                absent += 1
                if not blind:
                    print(f"absent      {m.msgid}")
                continue
            tag = judge(m.verdict, seen[m.msgid])
            if m.verdict == "benign":
                benign, alarms = benign + 1, alarms + (tag != "ok")
            else:
                positives, caught = positives + 1, caught + (tag == "ok")
            if not blind:
                print(f"{tag:11} {m.verdict:16} {seen[m.msgid][:7]:7} {m.subject[:70]}")
        for verdict in AT_WARNING + AT_INFO:
            of = [m for m in rows if m.verdict == verdict and m.msgid in seen]
            if of:
                ok = sum(judge(m.verdict, seen[m.msgid]) == "ok" for m in of)
                print(f"  {verdict:16} {ok} of {len(of)}")
        recall = f"{caught / positives:.2f}" if positives else "n/a"
        rate = f"{alarms / benign:.0%}" if benign else "n/a"
        print(f"{half}: recall {caught}/{positives} ({recall}); false alarms {alarms}/{benign} benign ({rate})"
              + (f"; {absent} absent" if absent else ""))
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--blind"]
    raise SystemExit(main(args[0], args[1] if len(args) > 1 else None, blind="--blind" in sys.argv[1:]))
