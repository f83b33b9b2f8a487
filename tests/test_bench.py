"""The benchmark's arithmetic, and that it runs (its figures are not asserted: speed is measured, not tested)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import SAMPLES

sys.path.insert(0, str(SAMPLES.parent / "bench"))
import run  # noqa: E402


def row(patches: int, ours: float, checkpatch: float | None = None, kind: str = "real") -> dict:
    r = {"name": f"{kind}-{patches}", "kind": kind, "patches": patches, "changed_lines": 100 * patches,
         "review": {"median_s": ours, "min_s": ours}}
    if checkpatch is not None:
        r["checkpatch"] = {"median_s": checkpatch}
    return r


def test_per_patch_fits_fixed_plus_slope_for_both_tools():
    rows = [row(10, 0.15, 0.8), row(50, 0.25, 3.6), row(100, 0.375, 7.1), row(500, 1.375, 35.1),
            row(4, 9.9, kind="sample")]  # samples are not part of the fit
    fit = run.per_patch(rows)
    assert fit["kvm_review"]["ms_per_patch"] == pytest.approx(2.5)
    assert fit["kvm_review"]["fixed_s"] == pytest.approx(0.125)
    assert fit["checkpatch"]["ms_per_patch"] == pytest.approx(70.0)
    assert fit["checkpatch"]["fixed_s"] == pytest.approx(0.1)
    assert fit["ratio"] == pytest.approx(28.0)


def test_per_patch_needs_two_sizes_and_checkpatch_on_two():
    assert run.per_patch([row(10, 0.15, 0.8)]) is None
    fit = run.per_patch([row(10, 0.15, 0.8), row(100, 0.375)])
    assert fit["kvm_review"]["ms_per_patch"] == pytest.approx(2.5)
    assert "ratio" not in fit and "checkpatch" not in fit


def test_linearity_is_a_straight_line_in_changed_lines():
    lin = run.linearity([row(10, 0.15), row(100, 0.375), row(500, 1.375), row(4, 9.9, kind="sample")])
    assert lin["us_per_line"] == pytest.approx(25.0) and lin["fixed_s"] == pytest.approx(0.125)
    assert lin["worst_residual"] == pytest.approx(0.0, abs=1e-9) and lin["linear"] is True
    assert [round(s["us_per_line"], 3) for s in lin["steps"]] == [25.0, 25.0]
    # a cost growing with the square of the series is off the line
    curved = run.linearity([row(n, 0.1 + 5e-6 * n * n) for n in (10, 50, 100, 500)])
    assert curved["linear"] is False and curved["worst_residual"] > run.MAX_RESIDUAL
    # noise between two close sizes is not curvature
    noisy = run.linearity([row(10, 0.154), row(50, 0.223), row(100, 0.337), row(500, 1.374)])
    assert noisy["linear"] is True
    # two sizes always make a line: nothing to judge
    assert run.linearity([row(10, 0.15), row(100, 0.375)])["linear"] is None


def test_one_patch_beside_the_bare_interpreter():
    fig = run.one_patch({"median_s": 0.16}, {"median_s": 0.02})
    assert fig == {"review_s": 0.16, "bare_s": 0.02, "ratio": pytest.approx(8.0),
                   "over_bare_s": pytest.approx(0.14)}


def test_compare_says_how_each_figure_moved():
    old = {"commit": "abc1234", "when": "2026-11-25T21:30:31+0000", "startup": {"median_s": 0.035},
           "inputs": [row(10, 0.28), row(500, 1.70)], "per_patch": {"kvm_review": {"ms_per_patch": 2.9}}}
    new = {"startup": {"median_s": 0.030}, "inputs": [row(10, 0.154), row(50, 0.241), row(500, 1.368)],
           "per_patch": {"kvm_review": {"ms_per_patch": 2.49}}}
    assert run.compare(old, new) == [
        "compared with abc1234 of 2026-11-25T21:30:31+0000:",
        "  start-up                     0.035 ->     0.030 s (-14%)",
        "  real-10                      0.280 ->     0.154 s (-45%)",
        "  real-50                          - ->     0.241 s",
        "  real-500                     1.700 ->     1.368 s (-20%)",
        "  per patch                     2.90 ->      2.49 ms (-14%)",
    ]


def test_compare_with_an_unreadable_file_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SAMPLES.parent / "bench" / "run.py"), "--compare",
                           str(tmp_path / "nope.json")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == (f"--compare {tmp_path / 'nope.json'}: cannot read it: [Errno 2] No such file or "
                           f"directory: '{tmp_path / 'nope.json'}'\n")


def test_quick_run_writes_its_figures(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(SAMPLES.parent / "bench" / "run.py"), "--quick", "--generated",
                           "--no-samples", "--runs", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert [(r["name"], r["patches"]) for r in doc["inputs"]] == [("generated-10", 10), ("generated-100", 100)]
    assert set(doc["floor"]) == {"python", "python + b4", "python + b4 + kvm index"}
    assert doc["per_patch"]["kvm_review"]["ms_per_patch"] > 0
    assert doc["checks"][">= 10x faster than checkpatch per patch"] is None  # --quick: no checkpatch
    assert set(doc["one_patch"]) == set(doc["one_patch_served"]) == {"review_s", "bare_s", "ratio", "over_bare_s"}
    assert "one patch (02-add-adjustment.mbox), bare interpreter (python -c pass) " in proc.stdout
    assert "  pre-send check, `kvm-review server` running: " in proc.stdout
    assert doc["checks"]["one patch, pre-send check with a server <= bare interpreter + 0.05 s"] in (True, False)
    assert doc["checks"]["linear in changed lines"] is None  # two sizes: nothing to judge
    assert "per patch (least squares over the sizes)" in proc.stdout
