"""Function context on real code, against universal-ctags as the oracle.

Every .c file under arch/x86/kvm/ gets deterministic edits (kedits.plan) in a
throwaway git repo; git format-patch exports them with the kernel's
``*.c diff=cpp`` attribute and without it; our series model gives every
changed line a function, which must be ctags' answer on the whole file, or
"unknown" - never a wrong name. ``pytest -s`` prints the agreement; it is
also written to a JSON file under the pytest temporary directory.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from reviewer import pipeline, sources
from reviewer.kvm import context as ccontext
from reviewer.kvm import tree as kerneltree
from reviewer.series import Series
from tests.realkernel import kedits

pytestmark = pytest.mark.realkernel

MAX_UNKNOWN = 0.02  # of changed lines, per driver
SKIPPED = (kedits.AMBIGUOUS, kedits.EXCLUDED)


def load(built: kedits.Built, series: str, driver: str) -> Series:
    return pipeline.load_series(sources.from_path(str(built.patches[series, driver])))


def judge(built: kedits.Built, series: str, model: Series):
    """Per file Counter of ok / unknown / wrong / excluded (plus "(positions)":
    where the judged lines sit relative to their hunk header), and the wrong lines."""
    chain = kedits.SERIES[series]
    assert [p.index for p in model.patches] == list(range(1, len(chain)))
    per_file: dict[str, Counter] = defaultdict(Counter)
    wrong = []
    for patch in model.patches:
        old_version, new_version = chain[patch.index - 1], chain[patch.index]
        for fdiff in patch.files:
            old, new = built.answer(old_version, fdiff.path), built.answer(new_version, fdiff.path)
            for hunk in fdiff.hunks:
                for line in hunk.lines:
                    if line.kind == " ":
                        continue
                    expected = old[line.old_lineno - 1] if line.removed else new[line.new_lineno - 1]
                    if expected in SKIPPED:
                        verdict = "excluded"
                    elif line.scope == ccontext.UNKNOWN:
                        verdict = "unknown"
                    elif line.scope == (ccontext.FUNCTION if expected else ccontext.TOPLEVEL) \
                            and line.function == expected:
                        verdict = "ok"
                    else:
                        verdict = "wrong"
                        wrong.append(f"patch {patch.index} {fdiff.path}:{line.old_lineno or line.new_lineno}"
                                     f" {line.kind}{line.text.strip()[:50]!r}: ours {line.scope}"
                                     f" {line.function}, ctags {expected} ({hunk.header})")
                    per_file[fdiff.path][verdict] += 1
                    if expected not in SKIPPED:  # where the edits landed
                        named = ccontext.definition_name(hunk.section)
                        where = "toplevel" if expected is None else (
                            "in the header's function" if expected == named else "in another function")
                        per_file["(positions)"][where] += 1
    per_file["(positions)"] += Counter()  # always present: callers pop it
    return per_file, wrong


def _rate(counts: Counter) -> dict:
    judged = counts["ok"] + counts["unknown"] + counts["wrong"]
    return {"lines": judged, "ok": counts["ok"], "unknown": counts["unknown"], "wrong": counts["wrong"],
            "excluded": counts["excluded"],
            "agreement": round(counts["ok"] / judged, 5) if judged else 1.0,
            "unknown_rate": round(counts["unknown"] / judged, 5) if judged else 0.0}


@pytest.fixture(scope="session")
def hunk_only(built, tmp_path_factory):
    """The hunk-only answers for the edits series, with both diff drivers."""
    results = {}
    for driver in kedits.DRIVERS:
        per_file, wrong = judge(built, "edits", load(built, "edits", driver))
        positions = per_file.pop("(positions)")
        total = sum(per_file.values(), Counter())
        results[driver] = {"overall": _rate(total), "wrong": wrong, "positions": dict(positions),
                           "files": {f: _rate(c) for f, c in sorted(per_file.items())}}
    overall = sum((Counter({k: v for k, v in r["overall"].items() if isinstance(v, int)})
                   for r in results.values()), Counter())
    report = {"kernel": "linux-source-6.12", "series": "edits", "overall": _rate(overall), "drivers": results}
    path = tmp_path_factory.getbasetemp() / "realkernel-agreement.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nfunction context vs ctags, hunk-only: {path}")
    print(f"{'file':34} " + "  ".join(f"{d + ' ok/lines (unknown)':>28}" for d in kedits.DRIVERS))
    for name in sorted(results[kedits.DRIVERS[0]]["files"]):
        cells = []
        for driver in kedits.DRIVERS:
            r = results[driver]["files"][name]
            cells.append(f"{r['ok']:>6}/{r['lines']:<6} {100 * r['agreement']:6.2f}% ({r['unknown']:>3})")
        print(f"{name.removeprefix('arch/x86/kvm/'):34} " + "  ".join(f"{c:>28}" for c in cells))
    for driver in kedits.DRIVERS:
        r = results[driver]["overall"]
        print(f"overall {driver:8} {r['ok']}/{r['lines']} = {100 * r['agreement']:.2f}% agree,"
              f" {r['unknown']} unknown ({100 * r['unknown_rate']:.2f}%), {r['wrong']} wrong,"
              f" {r['excluded']} excluded (ctags quirks)")
    print(f"changed lines by position (cpp): {results['cpp']['positions']}")
    r = report["overall"]
    print(f"overall both     {r['ok']}/{r['lines']} = {100 * r['agreement']:.2f}% agree,"
          f" unknown {100 * r['unknown_rate']:.2f}%")
    return report


def test_ctags_quirks_are_real(built):
    """Every excluded ctags quirk still shows in the real file (no stale exclusions)."""
    for path, name in kedits.CTAGS_QUIRKS:
        assert name in {t.name for t in built.tags["v0"][path]}, (path, name)


def test_whole_files_match_ctags(built):
    """scan_file (the --kernel-tree machine) on every version of every file."""
    wrong = []
    lines = 0
    for version, files in built.versions.items():
        for path, text in files.items():
            answer = built.answer(version, path)
            for number, (where, expected) in enumerate(zip(ccontext.scan_file(text), answer), 1):
                if expected in SKIPPED:
                    continue
                lines += 1
                if where.function != expected:
                    wrong.append(f"{version} {path}:{number} ours {where}, ctags {expected}")
    assert lines > 300_000
    assert not wrong, "\n".join(wrong[:20])


@pytest.mark.parametrize("driver", kedits.DRIVERS)
def test_hunk_only_context_never_wrong(hunk_only, driver):
    result = hunk_only["drivers"][driver]
    assert result["overall"]["lines"] > 10_000
    assert not result["wrong"], "\n".join(result["wrong"][:20])
    assert result["overall"]["unknown_rate"] < MAX_UNKNOWN


def test_edits_cover_every_file(hunk_only, built):
    positions = hunk_only["drivers"]["cpp"]["positions"]
    assert min(positions.get(k, 0) for k in ("toplevel", "in the header's function", "in another function")) > 500
    files = hunk_only["drivers"]["cpp"]["files"]
    assert set(files) == set(built.files)
    assert all(r["lines"] >= 2 for r in files.values()), files


def test_kernel_tree_context_is_exact(built, kernel_tree):
    """--kernel-tree: every changed line gets exactly ctags' answer."""
    for series in kedits.SERIES:
        model = load(built, series, "default")
        kerneltree.apply(model, str(kernel_tree))
        per_file, wrong = judge(built, series, model)
        per_file.pop("(positions)")
        total = sum(per_file.values(), Counter())
        assert not wrong, "\n".join(wrong[:20])
        assert total["unknown"] == 0 and total["ok"] > 1000, total


@pytest.mark.parametrize("driver", kedits.DRIVERS)
def test_renamed_functions(built, driver):
    """A function renamed in one hunk keeps its new name in the later hunks
    of the same file, though git prints the old name in their headers."""
    per_file, wrong = judge(built, "renames", load(built, "renames", driver))
    per_file.pop("(positions)")
    total = sum(per_file.values(), Counter())
    assert not wrong, "\n".join(wrong[:20])
    assert total["unknown"] < MAX_UNKNOWN * total["ok"]
