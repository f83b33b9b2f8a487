"""The CPUID policy on the real cpuid.c: the function a line sits in decides.

Each case is one real edit to 6.12's arch/x86/kvm/cpuid.c, committed in a
throwaway repo (with the kernel's ``*.c diff=cpp`` attribute) and exported
with git format-patch; the review's findings are asserted exactly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reviewer import pipeline, rules, sources
from tests.realkernel import kedits

pytestmark = pytest.mark.realkernel

CPUID_C = "arch/x86/kvm/cpuid.c"
CLEAR = ["\tif (best)", "\t\tcpuid_entry_clear(best, X86_FEATURE_RDPID);"]
# (case, function, anchor: the line after which the edit goes, lines added)
CASES = {
    "adjust-after-set-cpuid": ("kvm_vcpu_after_set_cpuid", "\tbest = kvm_find_cpuid_entry(vcpu, 1);", CLEAR),
    # the same statement, in the GET_SUPPORTED path (one more tab: inside the switch)
    "adjust-do-cpuid-func": ("__do_cpuid_func", "\t\tentry->ebx &= ~GENMASK(27, 16);",
                             ["\t" + line for line in CLEAR]),
    "reject-check-cpuid": ("kvm_check_cpuid", "\tu64 xfeatures;",
                           ["", "\tif (nent > KVM_MAX_CPUID_ENTRIES / 2)", "\t\treturn -EINVAL;"]),
    "nomem-get-supported": ("kvm_dev_ioctl_get_cpuid", "\tarray.maxnent = cpuid->nent;",
                            ["\tif (!zalloc_cpumask_var(&array.cpus, GFP_KERNEL)) {",
                             "\t\tkvfree(array.entries);", "\t\treturn -ENOMEM;", "\t}"]),
}


@pytest.fixture(scope="module")
def reviews(kernel_tree, tmp_path_factory):
    """case -> (review, line number of the first added line)."""
    work = tmp_path_factory.mktemp("cpuid-policy")
    env = kedits.git_env(work)
    original = (kernel_tree / CPUID_C).read_text(encoding="utf-8").split("\n")
    out = {}
    for case, (_, anchor, added) in CASES.items():
        repo = work / case

        def git(*args: str, repo: Path = repo) -> None:
            subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)

        (repo / "arch/x86/kvm").mkdir(parents=True)
        (repo / ".gitattributes").write_text("*.c diff=cpp\n*.h diff=cpp\n")
        (repo / CPUID_C).write_text("\n".join(original))
        git("init", "-q")
        git("add", "-A")
        git("commit", "-q", "-m", "base: 6.12 cpuid.c")
        assert original.count(anchor) == 1, anchor
        at = original.index(anchor) + 1
        (repo / CPUID_C).write_text("\n".join(original[:at] + added + original[at:]))
        git("commit", "-q", "-am", f"KVM: x86: {case}", "-m", "Signed-off-by: Dev Eloper <dev@example.com>")
        git("format-patch", "-q", "-1", "-o", "out")
        model = pipeline.load_series(sources.from_path(str(repo / "out")))
        out[case] = (pipeline.review(model, rules.load()), at + 1)
    return out


def findings(review) -> set[tuple]:
    return {(f.rule, f.file, f.line, f.function) for f in review.findings}


def test_context_comes_from_the_real_hunk_headers(reviews):
    for case, (function, _, _) in CASES.items():
        review, _ = reviews[case]
        added = [ln for fd in review.series.patches[0].files for h in fd.hunks for ln in h.lines if ln.added]
        assert added and {(ln.scope, ln.function) for ln in added} == {("function", function)}, case


SERIES_ABI = {  # what any unacknowledged ABI change without docs or selftest draws
    ("changelog-abi-unacknowledged", None, None, None),
    ("docs-api-rst-untouched", None, None, None),
    ("selftests-missing", None, None, None),
}


def test_added_adjustment_in_after_set_cpuid_fires(reviews):
    review, first = reviews["adjust-after-set-cpuid"]
    assert findings(review) == {
        ("cpuid-adjust-added", CPUID_C, first + 1, "kvm_vcpu_after_set_cpuid"), *SERIES_ABI}


def test_same_line_in_do_cpuid_func_is_only_get_supported(reviews):
    review, first = reviews["adjust-do-cpuid-func"]
    assert findings(review) == {("cpuid-get-supported", CPUID_C, first, "__do_cpuid_func")}
    assert [f.severity for f in review.findings] == ["info"]


def test_new_einval_in_check_cpuid_fires(reviews):
    review, first = reviews["reject-check-cpuid"]
    assert findings(review) == {("userspace-reject-added", CPUID_C, first + 2, "kvm_check_cpuid"), *SERIES_ABI}


def test_enomem_in_get_supported_does_not_reject(reviews):
    review, first = reviews["nomem-get-supported"]
    assert findings(review) == {("cpuid-get-supported", CPUID_C, first, "kvm_dev_ioctl_get_cpuid")}
    assert [f.severity for f in review.findings] == ["info"]
