"""The series model and the exact findings on every bundled sample."""

from __future__ import annotations

import pytest

from reviewer import pipeline, rules, sources
from tests.conftest import SAMPLES


def load(name: str, revision: int | None = None):
    return pipeline.load_series(sources.from_path(str(SAMPLES / name)), revision)


# sample: (revision, expected, cover subject or None, patch count, series Message-ID)
MODEL = {
    "01-sgx-xcr0-abi.mbox": (2, 3, "KVM: x86: SGX vs. XCR0 cleanups", 3,
                             "20230503184217.2961044-1-kgallagher@example.com"),
    "02-add-adjustment.mbox": (1, 1, None, 1, "20241119130352.88213-1-r.lindqvist@example.org"),
    "03-remove-adjustment.mbox": (1, 1, None, 1, "20241202082705.411907-1-t.moreau@example.net"),
    "04-check-cpuid-einval.mbox": (1, 2, "KVM: x86: Reject MAXPHYADDR > 52 in KVM_SET_CPUID2", 2,
                                   "20250114112009.1207335-1-priya.raman@example.com"),
    "05-enable-cap-reject.mbox": (1, 1, None, 1, "20241022011534.553190-1-hwang.jiho@example.com"),
    "06-advertise-feature.mbox": (1, 2, None, 2, "20250206170949.77412-1-m.ferreira@example.com"),
    "07-runtime-refactor.mbox": (1, 1, None, 1, "20240930065503.301174-1-olek.brandt@example.org"),
    "08-not-kvm.mbox": (1, 2, "Add PPIN and RAPL support for Sierra Forest and Clearwater Forest", 2,
                        "20241105052100.642001-1-wen.zhao@example.com"),
    "09-v1-v2-thread.mbox": (2, 2, "KVM: x86: Validate writes to MSR_IA32_POWER_CTL", 2,
                             "20241001074012.1033872-1-a.novak@example.cz"),
}

# sample: [(patch, rule, severity, file, line, function, acknowledged)]
FINDINGS = {
    "01-sgx-xcr0-abi.mbox": [
        (0, "docs-api-rst-untouched", "info", None, None, None, False),
        (0, "selftests-missing", "info", None, None, None, False),
        (2, "cpuid-adjust-removed", "info", "arch/x86/kvm/cpuid.c", 330, "kvm_vcpu_after_set_cpuid", True),
    ],
    "02-add-adjustment.mbox": [
        (0, "docs-api-rst-untouched", "info", None, None, None, False),
        (0, "selftests-missing", "info", None, None, None, False),
        (1, "changelog-abi-unacknowledged", "warning", None, None, None, False),
        (1, "stable-on-abi-change", "warning", None, None, None, False),
        (1, "cpuid-adjust-added", "warning", "arch/x86/kvm/cpuid.c", 389, "kvm_vcpu_after_set_cpuid", False),
    ],
    "03-remove-adjustment.mbox": [
        (0, "docs-api-rst-untouched", "info", None, None, None, False),
        (0, "selftests-missing", "info", None, None, None, False),
        (1, "changelog-abi-unacknowledged", "warning", None, None, None, False),
        (1, "cpuid-adjust-removed", "warning", "arch/x86/kvm/vmx/vmx.c", 7813, "vmx_vcpu_after_set_cpuid", False),
    ],
    "04-check-cpuid-einval.mbox": [
        (0, "docs-api-rst-untouched", "info", None, None, None, False),
        (1, "changelog-abi-unacknowledged", "warning", None, None, None, False),
        (1, "userspace-reject-added", "warning", "arch/x86/kvm/cpuid.c", 167, "kvm_check_cpuid", False),
    ],
    "05-enable-cap-reject.mbox": [
        (0, "selftests-missing", "info", None, None, None, False),
        (1, "changelog-abi-unacknowledged", "warning", None, None, None, False),
        (1, "userspace-reject-added", "warning", "arch/x86/kvm/x86.c", 6738, "kvm_vm_ioctl_enable_cap", False),
    ],
    "06-advertise-feature.mbox": [
        (1, "cpuid-get-supported", "info", "arch/x86/kvm/cpuid.c", 835, "kvm_set_cpu_caps", False),
        (2, "cpuid-get-supported", "info", "arch/x86/kvm/cpuid.c", 1340, "__do_cpuid_func", False),
    ],
    "07-runtime-refactor.mbox": [
        (1, "cpuid-runtime-bits", "info", "arch/x86/kvm/cpuid.c", 299, "kvm_update_cpuid_runtime", False),
    ],
    "08-not-kvm.mbox": [],
    "09-v1-v2-thread.mbox": [
        (0, "selftests-missing", "info", None, None, None, False),
        (1, "changelog-abi-unacknowledged", "warning", None, None, None, False),
        (1, "userspace-reject-msr", "warning", "arch/x86/kvm/x86.c", 4062, "kvm_set_msr_common", False),
    ],
}


@pytest.mark.parametrize("name", sorted(MODEL))
def test_series_model(name):
    revision, expected, cover, count, msgid = MODEL[name]
    s = load(name)
    assert (s.revision, s.expected, len(s.patches), s.complete) == (revision, expected, count, True)
    assert (s.cover.subject if s.cover else None) == cover
    assert s.message_id == msgid
    assert [p.index for p in s.patches] == list(range(1, count + 1))
    assert all(p.trailer_values("Signed-off-by") for p in s.patches)


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_findings_exact(name):
    found = pipeline.review(load(name), rules.load()).findings
    got = [(f.patch, f.rule, f.severity, f.file, f.line, f.function, f.acknowledged) for f in found]
    assert got == FINDINGS[name]


@pytest.mark.parametrize("name", ["06-advertise-feature.mbox", "07-runtime-refactor.mbox", "08-not-kvm.mbox"])
def test_benign_samples_give_no_warning(name):
    found = pipeline.review(load(name), rules.load()).findings
    assert all(f.severity == "info" for f in found)


def test_sgx_patch_fields_and_trailers():
    s = load("01-sgx-xcr0-abi.mbox")
    p2 = s.patches[1]
    assert p2.subject == "KVM: x86: Don't adjust guest's CPUID.0x12.1 (allowed SGX enclave XFRM)"
    assert (p2.author_name, p2.author_email) == ("Kieran Gallagher", "kgallagher@example.com")
    assert p2.message_id == "20230503184219.2961044-3-kgallagher@example.com"
    assert p2.trailer_values("Tested-by") == ["Mina Okafor <mokafor@example.net>"]
    assert p2.date.startswith("2023-05-03T")
    assert "*** WARNING *** ABI breakage." in s.cover.text


def test_diff_in_cover_letter_is_not_part_of_the_series():
    s = load("01-sgx-xcr0-abi.mbox")
    assert "diff --git a/target/i386/cpu.c" in s.cover.text
    paths = [path for p in s.patches for path in p.paths]
    assert paths == ["arch/x86/kvm/vmx/sgx.c", "arch/x86/kvm/cpuid.c", "arch/x86/kvm/cpuid.c"]


def test_stable_and_fixes_trailers():
    p = load("02-add-adjustment.mbox").patches[0]
    assert p.trailer_values("Cc") == ["stable@vger.kernel.org"]
    assert p.trailer_values("Fixes") == ['612263b30c1c ("KVM: x86: expose AVX512 to guest")']


def test_latest_revision_and_followup_trailer():
    v2 = load("09-v1-v2-thread.mbox")
    assert v2.patches[0].trailer_values("Reviewed-by") == ["Some Reviewer <rev@example.com>"]
    v1 = load("09-v1-v2-thread.mbox", revision=1)
    assert v1.revision == 1 and len(v1.patches) == 2
    found = pipeline.review(v1, rules.load()).findings
    assert [(f.rule, f.line, f.function) for f in found if f.file] == [
        ("userspace-reject-msr", 4061, "kvm_set_msr_common")]


def _lines(name: str, patch: int):
    s = load(name)
    return [ln for fd in s.patches[patch - 1].files for h in fd.hunks for ln in h.lines]


def test_hunk_spanning_three_functions():
    """The hunk's header names kvm_cpuid_has_hyperv(); it closes that
    function, defines a new helper, and enters kvm_vcpu_after_set_cpuid()."""
    by_new = {ln.new_lineno: (ln.scope, ln.function) for ln in _lines("02-add-adjustment.mbox", 1)}
    assert by_new[356] == ("function", "kvm_cpuid_has_hyperv")  # its closing brace
    assert by_new[359] == ("toplevel", None)  # the comment before the new helper
    assert by_new[362] == ("function", "cpuid_xcr0_has_avx512")
    assert by_new[374] == ("function", "cpuid_xcr0_has_avx512")
    assert by_new[375] == ("toplevel", None)
    assert by_new[376] == ("function", "kvm_vcpu_after_set_cpuid")
    assert by_new[389] == ("function", "kvm_vcpu_after_set_cpuid")  # cpuid_entry_clear(best, ...)


def test_hunk_starting_inside_switch_of_do_cpuid_func():
    lines = _lines("06-advertise-feature.mbox", 2)
    removed = [ln for ln in lines if ln.removed]
    added = [ln for ln in lines if ln.added]
    assert [(ln.old_lineno, ln.function) for ln in removed] == [(1334, "__do_cpuid_func")]
    assert {ln.function for ln in added} == {"__do_cpuid_func"}
    assert lines[0].text == "\t\t\tpa_bits = entry->eax & 0xff;"


def test_same_line_is_abi_change_only_in_the_set_path():
    """entry->ecx &= ... in __do_cpuid_func is what KVM offers; in
    kvm_vcpu_after_set_cpuid it rewrites userspace's table."""
    get_supported = pipeline.review(load("06-advertise-feature.mbox"), rules.load()).findings
    assert not [f for f in get_supported if f.rule.startswith("cpuid-adjust")]
    set_path = pipeline.review(load("02-add-adjustment.mbox"), rules.load()).findings
    assert [f.rule for f in set_path if f.rule.startswith("cpuid-adjust")] == ["cpuid-adjust-added"]
