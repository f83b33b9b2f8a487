"""The named predicates on small diffs of the shapes real patches have
(tests/diffs/, written for these tests)."""

from __future__ import annotations

from pathlib import Path

from reviewer import analysis, rules
from reviewer.ruletest import example_series

RULES = rules.load()
DIFFS = Path(__file__).with_name("diffs")


def diff(name: str) -> str:
    return (DIFFS / name).read_text(encoding="utf-8")


def found(text: str) -> list[tuple[str, int | None, str | None]]:
    return [(f.rule, f.line, f.function) for f in analysis.analyze(example_series(text), RULES) if f.file]


def test_a_check_moved_into_the_ioctl_is_not_a_new_rejection():
    moved = diff("moved-check.diff")
    assert found(moved) == []
    # the same addition without the removal is a new rejection
    head, rest = moved.split("@@ -4660", 1)
    alone = head + "@@ -5029" + rest.split("@@ -5029", 1)[1]
    assert found(alone) == [("userspace-reject-added", 5029, "kvm_arch_vm_ioctl")]


def test_not_host_initiated_on_one_side_of_an_or_still_fails_userspace():
    either = diff("host-or.diff")
    assert found(either) == [("userspace-reject-msr", 3807, "kvm_set_msr_common")]
    assert found(either.replace(" ||\n", " &&\n")) == []  # guest-only: a #GP, not a userspace error


def test_a_widened_msr_write_condition():
    assert found(diff("hv-widened.diff")) == [("userspace-reject-condition", 671, "stimer_set_config")]


def test_a_blanket_rejection_narrowed_to_a_new_helper():
    narrowed = diff("narrowed-to-helper.diff")
    assert found(narrowed) == [("userspace-reject-relaxed", 5233, "kvm_arch_vcpu_ioctl")]
    # the validator returns the helper under a condition that failed nothing before: a new way to fail
    other_guard = narrowed.replace("+\tif (vcpu->arch.last_vmentry_cpu != -1)\n", "+\tif (vcpu->arch.cpuid_nent)\n")
    # (the -EINVAL taken out of the ioctl now reads as moved into the new
    # helper, which returns one: no relaxation is claimed)
    assert found(other_guard) == [("userspace-reject-callee", 322, "kvm_set_cpuid")]
    # the same condition taken out where it guarded a success is no move either
    no_error = narrowed.replace("-\t\tr = -EINVAL;\n", "-\t\tr = 0;\n")
    assert ("userspace-reject-callee", 322, "kvm_set_cpuid") in found(no_error)


def test_within_finds_the_definition_a_line_sits_in():
    """The hunk header names the first array; a line after it in another
    array is judged by the array it is in, read from the hunk."""
    assert found(diff("feature-msr.diff")) == [("userspace-reject-feature-msr", 452, None)]
    first_only = diff("feature-msr.diff").replace("+\tMSR_PLATFORM_INFO, /* frozen after KVM_RUN */\n", "").replace(
        "+440,16", "+440,15")
    assert found(first_only) == []
    # the header alone says where a hunk starting inside the array is (one
    # finding: lines outside any function are grouped by hunk)
    inside = diff("feature-msr.diff").replace("emulated_msrs_all[] = {", "msr_based_features_all_except_vmx[] = {")
    assert found(inside) == [("userspace-reject-feature-msr", 442, None)]


def test_a_guard_renamed_to_a_helper_that_tests_one_thing_more():
    """``kvm_vcpu_has_run()`` becomes ``!kvm_vcpu_model_is_open()``, whose
    new body adds ``&& !nested_state_set``: under the ``!`` the write fails
    in one more case (real: "Disallow setting CPUID and/or feature MSRs if
    L2 is active")."""
    widened = diff("helper-widened.diff")
    assert found(widened) == [("userspace-reject-condition", 2313, "do_set_msr")]
    # a helper only renamed, or tested one thing more where that narrows the guard: a change, not a widening
    renamed = widened.replace(" && !vcpu->arch.nested_state_set;", ";").replace("== -1;", "!= -1;").replace(
        "!kvm_vcpu_model_is_open(vcpu) &&", "kvm_vcpu_model_is_open(vcpu) &&")
    assert found(renamed) == [("userspace-reject-condition-changed", 2313, "do_set_msr")]
    narrowed = widened.replace("!kvm_vcpu_model_is_open(vcpu) &&", "kvm_vcpu_model_is_open(vcpu) &&")
    assert found(narrowed) == [("userspace-reject-condition-changed", 2313, "do_set_msr")]
