"""kvm-review benchmark: end-to-end wall time, peak RSS, start-up, checkpatch.pl side by side.

Run with ``make bench`` or ``python bench/run.py [--quick] [--checkpatch PATH] ...``.
Every figure is a fresh ``kvm-review`` process, timed from spawn to exit; peak RSS
is that child's own ``ru_maxrss`` (``os.wait4``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402

TARGETS = {
    "startup_s": 0.15,
    "series_10_s": 0.4,
    "series_500_s": 3.0,
    "rss_500_mb": 120,
    "checkpatch_ratio": 10.0,
    "one_patch_over_bare_s": 0.05,
}
# the pre-send case (b4 prep --check, the sendemail-validate hook): one patch a process
ONE_PATCH = ROOT / "samples" / "02-add-adjustment.mbox"
# what every run pays before reading its input: the interpreter, then b4 (which
# the brief requires for threading) as kvm-review imports it
FLOOR = {"python": "pass", "python + b4": "import reviewer.b4glue",
         # what a rule that asks about reachability adds: the shipped call-graph index, read once
         "python + b4 + kvm index": "import reviewer.b4glue; from reviewer.kvm import reach; reach.load()"}
_SPLIT = re.compile(r"^From \S+ (?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [^\n]*\n", re.M)
_CHANGED = re.compile(r"^[+-](?![+-]{2} )", re.M)


def kvm_review_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "kvm-review"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("kvm-review")
    return [found] if found else [sys.executable, "-m", "reviewer"]


def timed(cmd: list[str], ok=(0, 1)) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh child, output discarded."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}: {err.decode(errors='replace').strip()[-500:]}")
    return wall, usage.ru_maxrss / 1024


def measure(cmd: list[str], runs: int, ok=(0, 1)) -> dict:
    samples = [timed(cmd, ok) for _ in range(runs)]
    walls = [w for w, _ in samples]
    return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "runs": runs, "rss_mb": max(r for _, r in samples)}


def split_messages(mbox: str) -> list[str]:
    return [m for m in _SPLIT.split(mbox) if m.strip()]


def count(mbox: str) -> tuple[int, int]:
    """(patches, changed lines) of an mbox: messages with a diff, +/- lines of the diffs."""
    patches = changed = 0
    for msg in split_messages(mbox):
        at = msg.find("\ndiff --git ")
        if at < 0:
            continue
        patches += 1
        diff = msg[at:].split("\n-- \n", 1)[0]
        changed += len(_CHANGED.findall(diff))
    return patches, changed


def patch_files(mbox: Path, out: Path) -> list[Path]:
    """One file per patch (cover letter left out), as checkpatch.pl is run on format-patch output."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, msg in enumerate(split_messages(mbox.read_text(encoding="utf-8", errors="replace"))):
        if "\ndiff --git " not in msg:
            continue
        path = out / f"{i:04d}.patch"
        path.write_text(msg, encoding="utf-8")
        files.append(path)
    return files


def build_inputs(args, work: Path, log) -> tuple[list[dict], object]:
    tree = None
    if not args.generated:
        import realtree
        tree = realtree.find_tree(args.kernel_tree, args.install, log)
    inputs = []
    for n in args.sizes:
        if tree is not None:
            import realtree
            t0 = time.perf_counter()
            path = realtree.build_series(tree, n, work)
            log(f"built real-tree series of {n} patches in {time.perf_counter() - t0:.1f} s")
            kind = "real"
        else:
            path = work / f"gen-{n}.mbox"
            path.write_text(generate.series(n).mbox, encoding="utf-8")
            kind = "generated"
        inputs.append({"name": f"{kind}-{n}", "path": path, "kind": kind, "size": n})
    if not args.no_samples:
        for path in sorted((ROOT / "samples").glob("*.mbox")):
            inputs.append({"name": path.stem, "path": path, "kind": "sample", "size": None})
    for item in inputs:
        item["patches"], item["changed_lines"] = count(item["path"].read_text(encoding="utf-8", errors="replace"))
    return inputs, tree


# "linear": no size is further from the straight line than this share of the
# largest series' time (a share of each size's own time would judge the small
# sizes, all start-up and noise, and not the cost that grows)
MAX_RESIDUAL = 0.05


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares straight line through (x, y) points: (intercept, slope)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - slope * mx, slope


def linearity(rows: list[dict]) -> dict | None:
    """Is wall time a straight line in changed lines? One least-squares line
    through the sized series (medians); linear if no size lies further from
    it than MAX_RESIDUAL of the largest series' time. A cost that grows
    faster (a quadratic step, a cache that stops fitting) bends the sizes off
    the line by much more. The steps between successive sizes are kept for
    reading, not judged: between close sizes a step is mostly noise."""
    sized = sorted((r for r in rows if r["kind"] != "sample" and r["changed_lines"]),
                   key=lambda r: r["changed_lines"])
    if len(sized) < 2:
        return None
    fixed, per_line = _fit([(r["changed_lines"], r["review"]["median_s"]) for r in sized])
    largest = sized[-1]["review"]["median_s"]
    residuals = {r["name"]: (r["review"]["median_s"] - fixed - per_line * r["changed_lines"]) / largest
                 for r in sized}
    steps = [{"from": a["name"], "to": b["name"],
              "us_per_line": 1e6 * (b["review"]["median_s"] - a["review"]["median_s"])
              / (b["changed_lines"] - a["changed_lines"])}
             for a, b in zip(sized, sized[1:]) if b["changed_lines"] > a["changed_lines"]]
    worst = max(abs(v) for v in residuals.values())
    return {"us_per_line": 1e6 * per_line, "fixed_s": fixed, "residuals": residuals, "worst_residual": worst,
            "steps": steps, "linear": worst <= MAX_RESIDUAL if len(sized) > 2 else None}  # 2 points: a line


def per_patch(rows: list[dict]) -> dict | None:
    """Least-squares line t = fixed + per_patch * patches through the sized series, for both tools.

    The issue's checkpatch target is "per patch": the slope is each tool's
    cost of one more patch, the intercept its fixed cost (interpreter,
    imports, rules), which a series of any size pays once.
    """
    sized = [r for r in rows if r["kind"] != "sample" and r["patches"]]
    if len(sized) < 2:
        return None

    def fit(points: list[tuple[int, float]]) -> dict:
        fixed, slope = _fit(points)
        return {"ms_per_patch": 1e3 * slope, "fixed_s": fixed}

    out = {"kvm_review": fit([(r["patches"], r["review"]["median_s"]) for r in sized])}
    with_cp = [r for r in sized if "checkpatch" in r]
    if len(with_cp) >= 2:
        out["checkpatch"] = fit([(r["patches"], r["checkpatch"]["median_s"]) for r in with_cp])
        out["ratio"] = out["checkpatch"]["ms_per_patch"] / out["kvm_review"]["ms_per_patch"]
    return out


def byte_compile(log) -> None:
    """Compile reviewer/ to bytecode first, as pip does for an installed package.

    An editable install leaves that to the first import, and a machine with
    PYTHONDONTWRITEBYTECODE set (this one) would compile every module from
    source in every measured run.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "reviewer")], check=True)
    log(f"byte-compiled {ROOT / 'reviewer'} ({sys.executable} -m compileall)")


def run_checkpatch(script: str, files: list[Path], runs: int) -> dict:
    cmd = ["perl", script, "--no-tree", "-q", *map(str, files)]
    return measure(cmd, runs, ok=range(0, 256))


def one_patch(review: dict, bare: dict) -> dict:
    """A one-patch review beside a bare interpreter's start (medians)."""
    ours, floor = review["median_s"], bare["median_s"]
    return {"review_s": ours, "bare_s": floor, "ratio": ours / floor, "over_bare_s": ours - floor}


def one_patch_served(cmd: list[str], runs: int, bare: dict, work: Path) -> dict:
    """The pre-send hooks' check of one patch with ``kvm-review server``
    running (a server of the benchmark's own, in a runtime directory of its own)."""
    run = work / "run"
    run.mkdir(mode=0o700)
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "KVM_REVIEW_SERVER")}
    os.environ["XDG_RUNTIME_DIR"] = str(run)
    os.environ.pop("KVM_REVIEW_SERVER", None)
    try:
        subprocess.run(cmd + ["server", "start"], check=True, capture_output=True)
        check = cmd + ["check", str(ONE_PATCH)]
        measure(check, 1)  # warm: the server's first check
        return one_patch(measure(check, runs), bare)
    finally:
        subprocess.run(cmd + ["server", "stop"], capture_output=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fmt(x, spec=".3f", none="-"):
    return none if x is None else format(x, spec)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def print_targets(checks: dict) -> None:
    print("\ntargets (2-core machine):")
    for name, ok in checks.items():
        print(f"  {verdict(ok):4}  {name}")


def provenance() -> dict:
    """When, where and at which commit the figures were taken."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "commit": commit or None,
    }


def bot_bench(args, log) -> int:
    import botbench

    f = botbench.run(kvm_review_cmd(), log, keep=args.keep, total=args.bot_messages, profile=args.bot_profile)
    checks = {f"triage of {f['messages']} messages <= {f['target_s']:g} s": f["time_ok"],
              "requests <= one per series fetched + the polls": f["requests_ok"]}
    print(f"\nkvm-review bot triage - {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"local public-inbox (public-inbox-httpd -W0), rate limit {f['rate_limit']}")
    head = (f"{'messages':>8} {'KVM':>5} {'results':>7} {'series':>6} {'reviewed':>8} {'replies':>7} "
            f"{'wall s':>7} {'requests':>8} {'polls':>5} {'fetches':>7}")
    print(head)
    print("-" * len(head))
    print(f"{f['messages']:>8} {f['kvm_messages']:>5} {f['search_results']:>7} {f['series_looked_at']:>6} "
          f"{f['series'].get('reviewed', 0):>8} {f['replies']:>7} {f['wall_s']:>7.2f} {f['requests']:>8} "
          f"{f['polls']:>5} {f['fetches']:>7}")
    print(f"at the bot's default rate limit (1 request/s, lore.kernel.org) the same triage needs at least "
          f"{f['requests']} s of waiting")
    print("series by status: " + (", ".join(f"{k} {v}" for k, v in sorted(f["series"].items())) or "none"))
    if f["non_200"]:
        print(f"answers other than 200: {f['non_200']}")
    if f["profile"]:
        print(f"profile (pyinstrument, text): {f['profile']}")
    print_targets(checks)
    result = {
        **provenance(),
        "bot": f,
        "checks": checks,
    }
    out = Path(args.json if args.json != str(HERE / "results" / "latest.json") else HERE / "results" / "bot.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nfigures written to {out}")
    return 0 if all(checks.values()) else 1


def compare(old: dict, new: dict) -> list[str]:
    """Lines saying how each figure moved from an earlier run's JSON to this one."""
    def moved(label: str, before: float | None, after: float | None, unit: str = "s", spec: str = ".3f") -> str:
        if before is None or after is None:
            return f"  {label:24} {'-':>9} -> {fmt(after, spec):>9} {unit}"
        change = 100 * (after - before) / before if before else 0.0
        return f"  {label:24} {before:>9{spec}} -> {after:>9{spec}} {unit} ({change:+.0f}%)"

    lines = [f"compared with {old.get('commit') or '?'} of {old.get('when', '?')}:",
             moved("start-up", old.get("startup", {}).get("median_s"), new["startup"]["median_s"])]
    before = {r["name"]: r for r in old.get("inputs", [])}
    for row in new["inputs"]:
        earlier = before.get(row["name"], {}).get("review", {}).get("median_s")
        lines.append(moved(row["name"], earlier, row["review"]["median_s"]))
    ours = (old.get("per_patch") or {}).get("kvm_review", {}).get("ms_per_patch")
    now = (new.get("per_patch") or {}).get("kvm_review", {}).get("ms_per_patch")
    lines.append(moved("per patch", ours, now, "ms", ".2f"))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpatch", metavar="PATH", help="scripts/checkpatch.pl of a kernel tree "
                    "(default: the one in the kernel tree, when there is one)")
    ap.add_argument("--kernel-tree", metavar="PATH", help="build the series from edits to this tree's arch/x86/kvm")
    ap.add_argument("--install", action="store_true", help="as root, apt-get install linux-source-6.12 if missing")
    ap.add_argument("--generated", action="store_true", help="use the generator even when a kernel tree is there")
    ap.add_argument("--runs", type=int, default=5, help="runs per measurement (median, min, max; default 5)")
    ap.add_argument("--checkpatch-runs", type=int, default=1, help="runs of checkpatch.pl per series (default 1)")
    ap.add_argument("--sizes", default="10,50,100,500",
                    help="series sizes in patches (default 10,50,100,500)")
    ap.add_argument("--no-samples", action="store_true", help="leave out samples/*.mbox")
    ap.add_argument("--json", default=str(HERE / "results" / "latest.json"), metavar="OUT",
                    help="write the figures here (default bench/results/latest.json)")
    ap.add_argument("--compare", metavar="OLD", help="also print how each figure moved since OLD (an earlier "
                    "--json file)")
    ap.add_argument("--quick", action="store_true", help="1 run, sizes 10,100, no checkpatch: a smoke test")
    ap.add_argument("--bot", action="store_true", help="measure bot triage instead: a local public-inbox of "
                    "--bot-messages messages, one cold `kvm-review bot run --once` (bench/README.md)")
    ap.add_argument("--bot-messages", type=int, default=1100, metavar="N", help="messages in the --bot inbox "
                    "(default 1100)")
    ap.add_argument("--bot-profile", metavar="OUT", help="with --bot: run the bot under pyinstrument, text to OUT")
    ap.add_argument("--keep", action="store_true", help="with --bot: keep the inbox and state (path printed)")
    args = ap.parse_args(argv)
    previous = None
    if args.compare:
        try:
            previous = json.loads(Path(args.compare).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--compare {args.compare}: cannot read it: {exc}") from None
    if args.quick:
        args.runs, args.sizes = 1, "10,100"
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.bot:
        return bot_bench(args, log)

    cmd = kvm_review_cmd()
    work = Path(tempfile.mkdtemp(prefix="kvm-bench-"))
    try:
        inputs, tree = build_inputs(args, work, log)
        checkpatch = args.checkpatch
        if checkpatch is None and tree is not None and not args.quick:
            import realtree
            found = realtree.checkpatch_of(tree)
            checkpatch = str(found) if found else None
        if checkpatch and not Path(checkpatch).is_file():
            raise SystemExit(f"--checkpatch {checkpatch}: no such file")

        byte_compile(log)
        log("measuring start-up (kvm-review --version) and the interpreter with b4...")
        measure(cmd + ["--version"], 1, ok=(0,))  # warm the page cache
        startup = measure(cmd + ["--version"], max(args.runs, 5), ok=(0,))
        floor = {label: measure([sys.executable, "-c", code], max(args.runs, 5), ok=(0,))
                 for label, code in FLOOR.items()}
        log(f"measuring a one-patch review ({ONE_PATCH.name}) beside the bare interpreter...")
        single = cmd + ["review", str(ONE_PATCH), "--format", "json"]
        measure(single, 1)  # warm: the page cache, and the rule pack's cache (~/.cache/kvm-review)
        single_patch = one_patch(measure(single, max(args.runs, 10)), floor["python"])
        log("measuring the pre-send check of that patch with `kvm-review server` running...")
        served = one_patch_served(cmd, max(args.runs, 10), floor["python"], work)
        rows = []
        for item in inputs:
            log(f"measuring {item['name']} ({item['patches']} patches, {item['changed_lines']} changed lines)...")
            review = measure(cmd + ["review", str(item["path"]), "--format", "json"], args.runs)
            row = {k: (str(v) if isinstance(v, Path) else v) for k, v in item.items()}
            row["review"] = review
            row["ms_per_patch"] = 1e3 * review["median_s"] / max(1, item["patches"])
            row["us_per_line"] = 1e6 * review["median_s"] / max(1, item["changed_lines"])
            if checkpatch and item["kind"] != "sample":
                files = patch_files(item["path"], work / f"cp-{item['name']}")
                log(f"  checkpatch.pl --no-tree -q on {len(files)} patches...")
                cp = run_checkpatch(checkpatch, files, args.checkpatch_runs)
                row["checkpatch"] = cp
                row["checkpatch_ms_per_patch"] = 1e3 * cp["median_s"] / max(1, len(files))
                row["ratio"] = cp["median_s"] / review["median_s"]
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lin = linearity(rows)
    fit = per_patch(rows)
    by_size = {r["size"]: r for r in rows if r["kind"] != "sample"}
    s10, s500 = by_size.get(10), by_size.get(500)
    checks = {
        "startup <= 0.15 s": startup["median_s"] <= TARGETS["startup_s"],
        "one patch, pre-send check with a server <= bare interpreter + 0.05 s":
            served["over_bare_s"] <= TARGETS["one_patch_over_bare_s"],
        "10 patches <= 0.4 s": None if not s10 else s10["review"]["median_s"] <= TARGETS["series_10_s"],
        "500 patches <= 3 s": None if not s500 else s500["review"]["median_s"] <= TARGETS["series_500_s"],
        "linear in changed lines": None if not lin else lin["linear"],
        "peak RSS <= 120 MB at 500": None if not s500 else s500["review"]["rss_mb"] <= TARGETS["rss_500_mb"],
        ">= 10x faster than checkpatch per patch": None if not fit or "ratio" not in fit
        else fit["ratio"] >= TARGETS["checkpatch_ratio"],
    }

    print(f"\nkvm-review benchmark - {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{len(inputs)} inputs, {args.runs} runs each; series from "
          f"{tree.source if tree else 'the in-process generator'}")
    print(f"start-up (--version): median {startup['median_s']:.3f} s (min {startup['min_s']:.3f}, "
          f"max {startup['max_s']:.3f}), {startup['rss_mb']:.0f} MB")
    print("before any input: " + ", ".join(f"{label} {m['median_s']:.3f} s" for label, m in floor.items()))
    print(f"one patch ({ONE_PATCH.name}), bare interpreter (python -c pass) {single_patch['bare_s']:.3f} s:\n"
          f"  pre-send check, `kvm-review server` running: {served['review_s']:.3f} s, {served['ratio']:.1f}x, "
          f"+{served['over_bare_s']:.3f} s (goal: +{TARGETS['one_patch_over_bare_s']:.3f} s)\n"
          f"  review in a process of its own (no server): {single_patch['review_s']:.3f} s, "
          f"{single_patch['ratio']:.1f}x, +{single_patch['over_bare_s']:.3f} s (read, not judged)\n")
    head = (f"{'input':24} {'patches':>7} {'lines':>6} {'median s':>9} {'min':>6} {'max':>6} {'ms/patch':>8} "
            f"{'us/line':>7} {'RSS MB':>6} {'cp s':>6} {'cp ms/p':>7} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        rv = r["review"]
        print(f"{r['name']:24} {r['patches']:>7} {r['changed_lines']:>6} {rv['median_s']:>9.3f} {rv['min_s']:>6.3f} "
              f"{rv['max_s']:>6.3f} {r['ms_per_patch']:>8.1f} {r['us_per_line']:>7.1f} {rv['rss_mb']:>6.0f} "
              f"{fmt(r.get('checkpatch', {}).get('median_s'), '.2f'):>6} "
              f"{fmt(r.get('checkpatch_ms_per_patch'), '.1f'):>7} {fmt(r.get('ratio'), '.1f'):>6}")
    if lin:
        print(f"\nlinear in changed lines: {lin['us_per_line']:.1f} us a line + {lin['fixed_s']:.3f} s fixed; "
              "off the line by " + ", ".join(f"{name} {100 * v:+.1f}%" for name, v in lin["residuals"].items())
              + f" of the largest run (linear: all within {100 * MAX_RESIDUAL:.0f}%)")
        print("steps between sizes (read, not judged): "
              + ", ".join(f"{s['from']}->{s['to']} {s['us_per_line']:.1f} us/line" for s in lin["steps"]))
    if fit:
        ours = fit["kvm_review"]
        line = (f"\nper patch (least squares over the sizes): kvm-review {ours['ms_per_patch']:.2f} ms a patch "
                f"+ {ours['fixed_s']:.3f} s fixed")
        if "ratio" in fit:
            cp = fit["checkpatch"]
            line += (f"; checkpatch.pl {cp['ms_per_patch']:.1f} ms a patch + {cp['fixed_s']:.3f} s fixed; "
                     f"{fit['ratio']:.1f}x per patch")
        print(line)
    if not checkpatch:
        print("\ncheckpatch.pl: not measured (--quick, or no --checkpatch and no kernel tree; see bench/README.md)")
    print_targets(checks)

    result = {
        **provenance(),
        "series_source": tree.source if tree else "generator",
        "checkpatch": checkpatch,
        "runs": args.runs,
        "startup": startup,
        "floor": floor,
        "one_patch": single_patch,
        "one_patch_served": served,
        "inputs": rows,
        "per_patch": fit,
        "linearity": lin,
        "targets": TARGETS,
        "checks": checks,
    }
    if previous is not None:
        print("\n" + "\n".join(compare(previous, result)))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
