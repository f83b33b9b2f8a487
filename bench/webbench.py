"""Status pages at scale: ``python bench/webbench.py`` (part of ``make bench``).

Fills a bot state with ``--series`` series (default 10,000) through the bot's
own ``reviewer.state.State`` (the same rows a bot writes: findings, replies,
checklists, deliveries, some waiting, failed, needing a human; first seen
over two years), then times the pages as ``kvm-review bot web`` makes them:
each figure is the median of ``--runs`` renders of one page (query +
template), plus the list page fetched over HTTP from the running server.
Target: the list page (paged) under 0.2 s. Figures go to stdout and
``--json`` (default bench/results/web.json).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reviewer import rules, state, web  # noqa: E402
from reviewer.findings import SEVERITIES  # noqa: E402

TARGET_S = 0.2
WEEK = 7 * 24 * 3600


def fill(path: Path, n: int, seed: int = 16) -> None:
    """``n`` series as the bot records them (deterministic)."""
    rnd = random.Random(seed)
    ruleset = [r for r in rules.load().rules]
    st = state.State(path)
    st.db.execute("PRAGMA synchronous=OFF")  # filling only: the figures are about reading
    now = time.time()
    reply = "From: KVM Review Bot <bot@example.org>\nSubject: Re: [PATCH] ...\n\n" + "> + quoted line\n" * 40 + \
        "This adds a write to the guest CPUID table.\n" * 20
    try:
        for i in range(n):
            patches = rnd.randint(1, 12)
            author = f"dev{i % 700}@example.org"
            info = {"root": f"2025{i:06d}.{seed}-1-{author}", "revision": 1 + (i % 7 == 0), "key": f"k{i}",
                    "list": "kvm", "subject": f"KVM: x86: change number {i} to the CPUID code", "author": author,
                    "name": f"Developer {i % 700}", "change_id": None, "expected": patches,
                    "complete": 1, "first_seen": now - (n - i) * (104 * WEEK / n),
                    "patch_list": json.dumps([{"index": p, "subject": f"KVM: x86: part {p}",
                                               "msgid": f"2025{i:06d}.{seed}-{p}-{author}"}
                                              for p in range(1, patches + 1)])}
            roll = rnd.random()
            if roll < 0.03:
                st.wait(info)
                continue
            if roll < 0.05:
                st.finish(info, "failed", [], [], None, [], error="patch 1: malformed diff: ...")
                continue
            findings = []
            for _ in range(rnd.randint(0, 6)):
                r = rnd.choice(ruleset)
                findings.append({"rule": r.id, "category": r.category, "severity": rnd.choice(SEVERITIES),
                                 "patch": rnd.randint(0, patches), "message_id": info["root"],
                                 "file": "arch/x86/kvm/cpuid.c", "line": rnd.randint(1, 2000),
                                 "function": "kvm_vcpu_after_set_cpuid", "message": r.title,
                                 "excerpt": ["+\tbest->ecx &= ~X86_FEATURE_X;"] * 4, "acknowledged": False,
                                 "patches": []})
            warned = any(f["severity"] != "info" for f in findings)
            replies = [reply.encode()] if warned else []
            deliveries = [{"channel": c, "msgid": f"reply-{i}@example.org", "payload": replies[0]}
                          for c in ("outbox", "smtp")] if warned else []
            comparison = ({"resolved": ["a"], "remaining": [], "new": [], "revision": 1,
                           "msgid": f"<2025{i - 1:06d}.{seed}-1-{author}>"} if info["revision"] == 2 else None)
            sid = st.finish(info, "reviewed", [], findings, comparison, deliveries, replies=replies,
                            checklist=[{"text": "Add a selftest", "patches": "patch 1/2"}] if warned else [])
            if warned:
                status = "sending" if rnd.random() < 0.01 else "sent"
                st.db.execute("UPDATE deliveries SET status = ? WHERE series_id = ?", (status, sid))
    finally:
        st.close()


def median_time(fn, runs: int) -> dict:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", default=str(HERE / "results" / "web.json"), metavar="OUT")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kvm-review-webbench-") as tmp:
        db = Path(tmp) / "bot.sqlite"
        t0 = time.perf_counter()
        fill(db, args.series)
        filled = time.perf_counter() - t0
        site = web.Site(state=db, lore_url="https://lore.kernel.org",
                        rules={r.id: r for r in rules.load().rules})
        mid = max(1, args.series // 2 // 50)
        pages = {"list page 1": ("/", {}), f"list page {mid}": (f"/index-{mid}.html", {}),
                 "list: needs a human": ("/needs-human.html", {}), "list: search 'dev42'": ("/", {"q": ["dev42"]}),
                 "series page": (f"/series-{args.series // 2}.html", {}),
                 "rule page": ("/rule-cpuid-adjust-added.html", {}), "rules page": ("/rules.html", {})}
        figures = {}
        for name, (path, query) in pages.items():
            assert web.respond(site, path, query).status == 200, path
            figures[name] = median_time(lambda p=path, q=query: web.respond(site, p, q), args.runs)
        stop = threading.Event()
        ready = threading.Event()
        found: list[str] = []
        thread = threading.Thread(target=web.serve, args=(site, "127.0.0.1:0", stop),
                                  kwargs={"log": io.StringIO(),
                                          "ready": lambda url: (found.append(url), ready.set())}, daemon=True)
        thread.start()
        ready.wait(10)
        figures["list page 1 over HTTP"] = median_time(lambda: urllib.request.urlopen(found[0]).read(), args.runs)
        stop.set()
        thread.join(10)
    print(f"kvm-review bot web - {args.series:,} series in the state (filled in {filled:.1f} s), "
          f"median of {args.runs} runs")
    print(f"{'page':<28} {'median':>9} {'min':>9} {'max':>9}")
    for name, f in figures.items():
        print(f"{name:<28} {f['median_s']:>8.3f}s {f['min_s']:>8.3f}s {f['max_s']:>8.3f}s")
    verdict = "ok" if figures["list page 1"]["median_s"] < TARGET_S else "MISS"
    print(f"target: list page under {TARGET_S} s with {args.series:,} series: "
          f"{figures['list page 1']['median_s']:.3f} s, {verdict}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"series": args.series, "runs": args.runs, "target_s": TARGET_S,
                               "pages": figures, "verdict": verdict}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
