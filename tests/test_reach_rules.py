"""Rules that say where userspace reaches and what a line writes, rather
than naming functions (tests/diffs/, written for these tests; the shipped
reachability index of the 6.12 tree decides what is reached)."""

from __future__ import annotations

from pathlib import Path

from reviewer import analysis, rules
from reviewer.ruletest import example_series

RULES = rules.load()
DIFFS = Path(__file__).with_name("diffs")


def review(name: str, text: str | None = None):
    series = example_series(text or (DIFFS / name).read_text())
    assert [p.problem for p in series.patches] == [None]  # a diff read whole, or the test proves nothing
    return [f for f in analysis.analyze(series, RULES) if f.file]


def found(name: str, text: str | None = None) -> list[tuple[str, int | None, str | None]]:
    return [(f.rule, f.line, f.function) for f in review(name, text)]


def quiet_but(text: str, variant: str, expected: list) -> None:
    """``text`` gets no finding; ``variant`` of it gets exactly ``expected``."""
    assert found("", text) == []
    assert found("", variant) == expected


def test_a_host_msr_write_refused_in_a_vendor_pmu_file():
    [finding] = review("pmu-reject.diff")
    assert (finding.rule, finding.file, finding.line, finding.function) == (
        "userspace-reject-msr", "arch/x86/kvm/vmx/pmu_intel.c", 374, "intel_pmu_set_msr")
    assert finding.evidence[0].startswith("reached from KVM_SET_MSRS via ")
    assert finding.evidence[0].endswith("-> intel_pmu_set_msr")
    assert "Why: reached from KVM_SET_MSRS" in finding.message


def test_the_same_refusal_for_the_guest_only_is_quiet():
    text = (DIFFS / "pmu-reject.diff").read_text().replace(
        "+\t\tif (data & 0xfff)\n", "+\t\tif (!msr_info->host_initiated && (data & 0xfff))\n")
    assert found("", text) == []


def test_a_cpuid_entry_written_in_hyperv_c_is_an_adjustment():
    [finding] = review("hv-cpuid-write.diff")
    assert (finding.rule, finding.file, finding.line, finding.function) == (
        "cpuid-adjust-added", "arch/x86/kvm/hyperv.c", 2347, "kvm_hv_set_cpuid")
    assert finding.evidence == [
        "`entry = kvm_find_cpuid_entry(vcpu, HYPERV_CPUID_FEATURES);` points into the vCPU's CPUID table",
        "reached from KVM_SET_CPUID2 via kvm_vcpu_ioctl_set_cpuid2 -> kvm_set_cpuid -> kvm_vcpu_after_set_cpuid"
        " -> kvm_hv_set_cpuid"]


def test_writes_to_what_kvm_offers_are_quiet():
    assert [r for r, _, _ in found("offer-write.diff") if r.startswith("cpuid-adjust")] == []


def test_argument_checks_of_a_new_capability_reject_nothing_that_worked():
    assert found("new-cap.diff") == []
    # the same checks added to an existing capability's arm reject what worked
    assert found("existing-cap.diff") == [("userspace-reject-condition", 6166, "kvm_vm_ioctl_enable_cap"),
                                          ("userspace-reject-added", 6169, "kvm_vm_ioctl_enable_cap")]


def test_a_warn_userspace_reaches_names_the_path():
    [finding] = review("nested-warn.diff")
    assert (finding.rule, finding.line, finding.function) == ("userspace-reachable-warn", 6703, "vmx_set_nested_state")
    assert finding.evidence[0].startswith("reached from KVM_SET_NESTED_STATE via ")


def test_a_helper_the_patch_adds_is_judged_where_it_is_called():
    [finding] = [f for f in review("accessor.diff") if f.rule.startswith("cpuid")]
    assert (finding.rule, finding.line, finding.function) == ("cpuid-adjust-added", 406, "kvm_vcpu_after_set_cpuid")
    assert finding.evidence[0] == "cpuid_entry_update() writes the vCPU's CPUID table"
    # the same helper setting a runtime bit is the allowed kind of adjustment
    runtime = (DIFFS / "accessor.diff").read_text().replace("X86_FEATURE_RTM, false", "X86_FEATURE_OSXSAVE, true")
    assert [(r, line) for r, line, _ in found("", runtime) if r.startswith("cpuid")] == [("cpuid-runtime-bits", 406)]


def test_a_call_of_a_function_that_writes_the_table_taken_out_is_a_removal():
    [finding] = review("removed-writer-call.diff")
    assert (finding.rule, finding.line, finding.function) == ("cpuid-adjust-removed", 2879, "kvm_guest_time_update")
    assert finding.evidence[0] == "kvm_xen_update_tsc_info() writes the vCPU's CPUID table"


def test_a_break_out_of_an_msr_switch_succeeds():
    # kvm_set_msr_common's `break` returns 0: a new `if (...) break;` skips work, it rejects nothing
    assert found("msr-same-value.diff") == []


def test_a_bare_break_in_a_dispatcher_arm_fails_with_the_preset_above_the_hunk():
    text = (DIFFS / "existing-cap.diff").read_text().replace(
        "@@ -6162,7 +6162,11 @@", "@@ -6163,6 +6163,10 @@").replace(" \t\tr = -EINVAL;\n", "")
    assert found("", text) == [("userspace-reject-condition", 6166, "kvm_vm_ioctl_enable_cap"),
                               ("userspace-reject-added", 6169, "kvm_vm_ioctl_enable_cap")]


def test_checking_memory_kvm_just_allocated_rejects_no_input():
    assert found("alloc-split.diff") == []
    # the same split with a check of what userspace passed is a new rejection
    text = (DIFFS / "alloc-split.diff").read_text().replace(
        "+\tif (!vcpu->arch.mce_banks)\n", "+\tif (!vcpu->arch.mce_banks || vcpu->arch.mcg_cap > 32)\n")
    assert [r for r, _, _ in found("", text)] == ["userspace-reject-condition"]


def test_an_msr_setter_moved_to_another_file_rejects_nothing_new():
    assert found("msr-moved.diff") == []
    # moved with one more way to fail: the new copy's refusal is reported
    text = (DIFFS / "msr-moved.diff").read_text().replace(
        "+\tif ((msr_info->data & reserved_bits) != 0 || new_mode == LAPIC_MODE_INVALID)",
        "+\tif ((msr_info->data & reserved_bits) != 0 || new_mode == LAPIC_MODE_INVALID || !old_mode)")
    assert ("userspace-reject-msr", 3354, "kvm_apic_set_base") in found("", text)


def test_a_failure_stored_for_the_return_is_an_exit():
    # `ret = 1;` under a wider condition fails KVM_SET_MSRS of the x2APIC register
    [finding] = review("msr-ret-widened.diff")
    assert (finding.rule, finding.line, finding.function) == ("userspace-reject-condition", 2426, "kvm_lapic_reg_write")
    assert finding.evidence[0].startswith("reached from KVM_SET_MSRS via ")


def test_an_early_success_for_host_accesses_is_a_relaxation():
    text = (DIFFS / "pmu-reject.diff").read_text().replace(
        "+\t\tif (data & 0xfff)\n+\t\t\treturn 1;\n", "+\t\tif (msr_info->host_initiated)\n+\t\t\treturn 0;\n")
    assert found("", text) == [("userspace-reject-host-exempt", 373, "intel_pmu_set_msr")]
    # the same early exit for the guest alone exempts nothing userspace does
    assert found("", text.replace("if (msr_info->host_initiated)", "if (!msr_info->host_initiated)")) == []


def test_a_warn_on_a_host_fact_alone_is_quiet():
    for condition in ("!enable_unrestricted_guest", "boot_cpu_has(X86_FEATURE_XSAVES)", "!kvm_arch_has_irq_bypass()"):
        text = (DIFFS / "nested-warn.diff").read_text().replace(
            "WARN_ON_ONCE(kvm_state->hdr.vmx.vmxon_pa == -1ull && kvm_state->flags)", f"WARN_ON_ONCE({condition})")
        assert found("", text) == [], condition
    # a field of a vCPU's state, even one named *_enabled, is what userspace set
    text = (DIFFS / "nested-warn.diff").read_text().replace(
        "WARN_ON_ONCE(kvm_state->hdr.vmx.vmxon_pa == -1ull && kvm_state->flags)",
        "WARN_ON_ONCE(!vmx->nested.enlightened_vmcs_enabled)")
    assert found("", text) == [("userspace-reachable-warn", 6703, "vmx_set_nested_state")]


def test_a_header_cut_by_gnu_diff_still_names_its_function():
    # quilt and the stable queue use GNU diff -p: the header stops at 40 columns, mid-name
    text = (DIFFS / "gnu-cut.diff").read_text()
    assert found("", text) == [("userspace-reject-added", 5427, "kvm_vcpu_ioctl_x86_set_vcpu_events")]
    # a cut word that starts two functions' names names neither
    ambiguous = "static int       kvm_vcpu_ioctl_x86_set_"  # 40 columns; six functions start so
    assert found("", text.replace("static int kvm_vcpu_ioctl_x86_set_vcpu_e", ambiguous)) == []


def test_a_test_that_now_holds_for_the_host_is_an_exemption():
    assert found("host-exempt-or.diff") == [("userspace-reject-host-exempt", 2208, "vmx_get_supported_debugctl")]
    # the guest's own test widened the same way is no business of userspace
    text = (DIFFS / "host-exempt-or.diff").read_text().replace("(host_initiated || ", "(is_guest_mode(vcpu) || ")
    assert found("", text) == []


def test_a_guest_only_failure_that_now_fails_host_writes_is_a_rejection():
    # the rewritten label (`case X: {`) is no new MSR: its checks are not a new interface's
    assert found("host-now-fails.diff") == [("userspace-reject-condition", 3529, "kvm_set_msr_common")]
    # rewritten but still guest-only: nothing userspace does fails
    text = (DIFFS / "host-now-fails.diff").read_text().replace(
        "+\t\tif (!guest_cpuid_has(vcpu, X86_FEATURE_XSAVES) &&\n+\t\t    !(msr_info->host_initiated && !data))\n",
        "+\t\tif (!msr_info->host_initiated &&\n+\t\t    !guest_cpu_cap_has(vcpu, X86_FEATURE_XSAVES))\n")
    assert found("", text) == []


def test_a_failure_rewritten_in_place_fails_nothing_new():
    assert found("msr-rewritten.diff") == []
    # a success turned into a failure is one
    text = (DIFFS / "msr-rewritten.diff").read_text().replace("-\t\t\treturn 1;", "-\t\t\treturn 0;")
    assert [r for r, _, _ in found("", text)] == ["userspace-reject-msr"]
    # KVM_MSR_RET_OK is no failure
    assert found("", text.replace("_ERR;", "_OK;")) == []
    # rewritten under a wider condition: the failure is new for the values it adds
    wider = (DIFFS / "msr-rewritten.diff").read_text().replace(
        " \t\tif (is_noncanonical_msr_address(data, vcpu))\n",
        "-\t\tif (is_noncanonical_msr_address(data, vcpu))\n"
        "+\t\tif (is_noncanonical_msr_address(data, vcpu) || (data & 0xfff))\n")
    assert "userspace-reject-msr" in [r for r, _, _ in found("", wider)]


def test_a_check_on_state_only_a_new_capability_sets_rejects_nothing_that_worked():
    assert found("new-cap-state.diff") == []
    # the same check on a field that existed before rejects vCPU ids that worked
    text = (DIFFS / "new-cap-state.diff").read_text().replace("+\tif (id < kvm->arch.lowest_vcpu_id)",
                                                               "+\tif (id < kvm->arch.bsp_vcpu_id)")
    assert found("", text) == [("userspace-reject-added", 11519, "kvm_arch_vcpu_precreate")]


def test_a_check_moved_to_another_ioctl_fails_that_ioctl():
    # from KVM_SET_MP_STATE to KVM_RUN: a VMM whose KVM_RUN worked now fails it
    assert found("moved-to-run.diff") == [("userspace-reject-added", 11196, "kvm_arch_vcpu_ioctl_run")]
    # moved within the function it guarded: nothing new fails
    text = (DIFFS / "moved-to-run.diff").read_text().replace(
        "@@ int kvm_arch_vcpu_ioctl_run(struct kvm_vcpu *vcpu)",
        "@@ int kvm_arch_vcpu_ioctl_set_mpstate(struct kvm_vcpu *vcpu,")
    assert found("", text) == []


def test_the_exit_of_a_braced_block_may_follow_other_statements():
    # `{ *code = X; return -EINVAL; }`: dropping `from_vmentry &&` fails KVM_SET_NESTED_STATE more often
    [finding] = review("braced-exit.diff")
    assert (finding.rule, finding.line, finding.function) == ("userspace-reject-condition", 2759, "prepare_vmcs02")
    assert finding.evidence[0].startswith("reached from KVM_SET_NESTED_STATE via ")
    # the other way round narrows it
    text = (DIFFS / "braced-exit.diff").read_text().replace("-\tif", "+\tIF").replace("+\tif", "-\tif").replace(
        "+\tIF", "+\tif")
    assert found("", text) == [("userspace-reject-condition-changed", 2759, "prepare_vmcs02")]


def test_filling_a_buffer_kvm_just_allocated_adjusts_no_table():
    # KVM_SET_CPUID copies userspace's entries into a fresh array: no adjustment
    assert found("copy-buffer.diff") == []
    # the same writes into the vCPU's table are
    text = (DIFFS / "copy-buffer.diff").read_text().replace(
        "e2 = kvmalloc_array(cpuid->nent, sizeof(*e2), GFP_KERNEL_ACCOUNT);", "e2 = vcpu->arch.cpuid_entries;")
    assert {r for r, _, _ in found("", text)} == {"cpuid-adjust-changed"}


def test_what_kvm_offers_for_hyper_v_is_no_adjustment():
    # KVM_GET_SUPPORTED_HV_CPUID fills a table for userspace to pick from
    assert found("hv-offer.diff") == []


def test_an_error_exit_that_loses_a_condition_fails_more_input():
    assert found("lost-guard.diff") == [("userspace-reject-unguarded", 2954, "kvm_apic_state_fixup")]
    [finding] = review("lost-guard.diff")
    assert finding.evidence == ["reached from KVM_SET_LAPIC via kvm_vcpu_ioctl_set_lapic -> kvm_apic_set_state"
                                " -> kvm_apic_state_fixup"]


def test_the_same_exit_under_the_same_conditions_joined_is_quiet():
    text = (DIFFS / "lost-guard.diff").read_text().replace(
        "+\t\tif (*id != vcpu->vcpu_id)\n", "+\t\tif (vcpu->kvm->arch.x2apic_format && *id != vcpu->vcpu_id)\n")
    assert [r for r, _, _ in found("", text) if r == "userspace-reject-unguarded"] == []


def test_a_preset_error_hoisted_above_its_check_loses_nothing():
    assert [r for r, _, _ in found("hoisted-preset.diff") if r == "userspace-reject-unguarded"] == []


def test_a_success_return_that_loses_a_condition_accepts_more():
    # (the same patch also clears the reserved bits before checking: a second relaxation)
    ignored, finding = review("success-unguarded.diff")
    assert (finding.rule, finding.line, finding.function, finding.severity) == (
        "userspace-reject-relaxed-guard", 268, "amd_pmu_set_msr", "info")
    assert finding.evidence[0].startswith("reached from KVM_SET_MSRS via ")
    assert (ignored.rule, ignored.line, ignored.severity) == ("userspace-msr-bits-ignored", 265, "info")


def test_a_guard_turned_into_an_early_return_still_guards():
    assert found("early-return.diff") == []
    # an early return under some other condition does not stand for the lost one
    text = (DIFFS / "early-return.diff").read_text().replace("if (!vcpu->kvm->arch.x2apic_format)", "if (!set)")
    assert found("", text) == [("userspace-reject-unguarded", 2956, "kvm_apic_state_fixup")]


def test_an_error_exit_put_under_one_more_condition_fails_less():
    assert [(r, ln, fn) for r, ln, fn in found("guarded-exit.diff") if r.startswith("userspace-reject")] == [
        ("userspace-reject-guarded", 3539, "kvm_set_msr_common")]
    # the other way round: the same exit taken out of that if fails more
    text = (DIFFS / "guarded-exit.diff").read_text()
    lines = text.splitlines(keepends=True)
    swapped = "".join({"+": "-", "-": "+"}.get(ln[0], ln[0]) + ln[1:] if not ln.startswith(("+++", "---")) else ln
                      for ln in lines).replace("@@ -3534,8 +3534,10 @@", "@@ -3534,10 +3534,8 @@")
    assert ("userspace-reject-unguarded", 3538, "kvm_set_msr_common") in found("", swapped)


def test_a_new_host_initiated_guard_is_reported_once():
    text = (DIFFS / "guarded-exit.diff").read_text().replace(
        "guest_cpuid_has(vcpu, X86_FEATURE_XSAVES)", "!msr_info->host_initiated")
    assert [r for r, _, _ in found("", text) if r.startswith("userspace-reject")] == ["userspace-reject-host-exempt"]


def test_a_success_path_turned_around_rejects_nothing_new():
    """``if (!(data & mask)) { ...; return 0; }`` (failing below) rewritten
    as ``if (data & mask) return 1;``, and ``if (host) { set; return 0; }``
    as ``if (!host) return 1; set;``: the same MSR writes fail."""
    assert found("inverted-msr.diff") == []
    assert found("inverted-arm.diff") == []
    # a condition that is not the exact negation is a new failure
    text = (DIFFS / "inverted-arm.diff").read_text().replace(
        "+\t\tif (data & pmu->fixed_ctr_ctrl_mask)", "+\t\tif (data & pmu->global_ctrl_mask)")
    assert found("", text) == [("userspace-reject-msr", 369, "intel_pmu_set_msr")]


def test_a_new_call_fails_the_ioctl_only_if_the_callee_can_refuse_input():
    """kvm_hv_vcpu_init() can only run out of memory; kvm_check_cpuid()
    refuses CPUID userspace set; a new ops hook refuses what its
    implementations in the patch refuse, nothing when it has none."""
    alloc = (DIFFS / "callee-alloc.diff").read_text()
    assert found("", alloc) == []
    assert found("", alloc.replace("kvm_hv_vcpu_init(vcpu)", "kvm_check_cpuid(vcpu, e2, nent)")) == [
        ("userspace-reject-callee", 493, "kvm_set_cpuid")]
    hook = alloc.replace("kvm_hv_vcpu_init(vcpu)", "static_call(kvm_x86_vcpu_check_cpuid)(vcpu, e2, nent)")
    assert found("", hook) == []
    assert found("new-op-refuses.diff") == [("userspace-reject-callee", 493, "kvm_set_cpuid")]
    without = (DIFFS / "new-op-refuses.diff").read_text().replace("-E2BIG", "0")
    assert found("", without) == []


def test_a_call_the_function_made_before_is_no_new_failure():
    """The same call moved within the function fails what it failed; a
    refusing callee put in place of another is new."""
    moved = (DIFFS / "kept-call.diff").read_text().replace(
        "kvm_hv_vcpu_init(vcpu)", "kvm_cpuid_check_equal(vcpu, e2, nent)")
    assert found("", moved) == []
    swapped = (DIFFS / "kept-call.diff").read_text().replace(
        "+\t\tr = kvm_hv_vcpu_init(vcpu);", "+\t\tr = kvm_cpuid_check_equal(vcpu, e2, nent);")
    assert found("", swapped) == [("userspace-reject-callee", 490, "kvm_set_cpuid")]


def test_a_condition_the_function_had_before_moved_is_kept():
    """``r = kvm_update_cpuid(vcpu); if (r)`` becoming ``r = kvm_check_cpuid(vcpu);
    if (r) {`` above it: the same condition; another one taken out is no excuse."""
    text = (DIFFS / "kept-condition.diff").read_text()
    quiet_but(text, text.replace("-\tif (r)\n", "-\tif (!r)\n"), [
        ("userspace-reject-condition", 206, "kvm_vcpu_ioctl_set_cpuid")])


def test_a_stricter_abi_behind_a_quirk_breaks_no_vmm():
    """Quirks are on unless userspace disables them: the old behaviour stays
    the default; the same change without a quirk takes the host's pass away."""
    text = (DIFFS / "quirked-host.diff").read_text()
    assert found("", text) == []
    assert found("", text.replace("kvm_check_has_quirk(vcpu->kvm, KVM_X86_QUIRK_TSC_HOST_ACCESS)",
                                  "vcpu->arch.tsc_host_access")) == [
        ("userspace-reject-host-pass-removed", 3121, "kvm_set_msr_common")]


def test_a_member_added_to_a_padded_union_keeps_the_layout():
    text = (DIFFS / "padded-union.diff").read_text()
    quiet_but(text, text.replace("\t\t__u64 pad[8];", "\t\t__u64 gpa;"), [("uapi-struct-layout", 1595, None)])


def test_the_checks_of_a_new_ioctl_arm_reject_nothing_that_worked():
    """A helper that only an arm the patch adds reaches (the 6.12 index
    knows KVM_SET_SREGS2; the patch is what adds it) checks a new ioctl's
    input; without that arm, the same check is a new rejection."""
    text = (DIFFS / "new-ioctl-helper.diff").read_text()
    quiet_but(text, text[:text.index("diff --git a/arch/x86/kvm/x86.c")], [
        ("userspace-reject-added", 685, "kvm_vcpu_ioctl_x86_set_sregs2")])


def test_a_goto_with_an_error_preset_rewritten_as_a_return_fails_the_same():
    text = (DIFFS / "goto-to-return.diff").read_text()
    quiet_but(text, text.replace("-\tint ret = -EINVAL;", "-\tint ret = 0;"), [
        ("userspace-reject-added", 572, "__set_sregs_common")])


def test_a_newly_reserved_bit_and_a_dropped_one():
    rule = RULES.get("userspace-reject-reserved-bit")
    assert found("", rule.fires) == [("userspace-reject-reserved-bit", 604, None)]  # a macro: no function
    # CR4.FRED: allowed with its feature, reserved without it as before: a relaxation
    assert found("", rule.passes) == [("userspace-allows-bit-with-feature", 608, None)]
    dropped = RULES.get("userspace-reject-reserved-bit-dropped")
    assert found("", dropped.fires) == [("userspace-reject-reserved-bit-dropped", 3409, "kvm_set_msr_common")]
    assert found("", dropped.passes) == []


def test_an_msr_case_taken_out_and_bits_a_setter_now_drops():
    rejects = RULES.get("userspace-rejects-msr")
    assert found("", rejects.fires) == [("userspace-rejects-msr", 3638, "kvm_set_msr_common")]
    assert found("", rejects.passes) == []  # the same arm, re-added
    relabelled = rejects.fires.replace(
        "-\tcase MSR_K7_PERFCTR0 ... MSR_K7_PERFCTR3:\n",
        "-\tcase MSR_K7_PERFCTR0 ... MSR_K7_PERFCTR3: {\n+\tcase MSR_K7_PERFCTR0 ... MSR_K7_PERFCTR3:\n",
    ).replace("@@ -3635,16 +3635,6 @@", "@@ -3635,16 +3635,7 @@")
    assert found("", relabelled) == []  # a label rewritten in place handles the MSR still
    ignored = RULES.get("userspace-msr-bits-ignored")
    assert found("", ignored.fires) == [("userspace-msr-bits-ignored", 3440, "kvm_set_msr_common")]
    assert found("", ignored.passes) == []  # a comment changed


def test_an_allowed_mask_narrowed_through_a_new_helper_is_a_rejection():
    """``args & ~VALID`` becoming ``args & ~allowed()``, a helper the patch
    writes that clears a bit: that value is now refused; a helper that
    clears nothing only renames the mask (a changed condition, info)."""
    text = (DIFFS / "allowed-helper.diff").read_text()
    assert found("", text) == [("userspace-reject-condition", 6135, "kvm_vm_ioctl_enable_cap")]
    renamed = text.replace("+\tif (!kvm_can_mwait_in_guest())\n+\t\tallowed &= ~KVM_X86_DISABLE_EXITS_MWAIT;\n+\n", "")
    assert found("", renamed.replace("+4149,16", "+4149,13")) == [
        ("userspace-reject-condition-changed", 6135, "kvm_vm_ioctl_enable_cap")]


def test_moving_the_vendor_after_set_cpuid_callback_is_a_runtime_update_change():
    """When the vendor's callback runs decides which of KVM's CPUID-derived
    state it sees (the kvm_x86_ops->cpuid_update of older kernels too)."""
    assert found("vendor-callback-moved.diff") == [("cpuid-runtime-update", 421, "kvm_vcpu_after_set_cpuid")]
    older = (DIFFS / "vendor-callback-moved.diff").read_text().replace(
        "kvm_x86_call(vcpu_after_set_cpuid)(vcpu)", "kvm_x86_ops->cpuid_update(vcpu)")
    assert found("", older) == [("cpuid-runtime-update", 421, "kvm_vcpu_after_set_cpuid")]


def test_a_feature_bit_userspace_may_restore_is_a_relaxation():
    assert found("feature-bits.diff") == [("userspace-accepts-more", 1285, "vmx_restore_vmx_basic")]


def test_checking_against_what_the_guest_supports_refuses_more():
    """guest_supported_X (the guest's CPUID within what KVM supports) in
    place of kvm_caps.supported_X narrows what a write may set; another mask
    is only a changed condition."""
    text = (DIFFS / "guest-supported.diff").read_text()
    assert found("", text) == [("userspace-reject-condition", 3537, "kvm_set_msr_common")]
    assert found("", text.replace("guest_supported_xss", "supported_xss_mask")) == [
        ("userspace-reject-condition-changed", 3537, "kvm_set_msr_common")]


def test_a_bit_allowed_with_its_feature_is_a_relaxation_not_a_rejection():
    allows = RULES.get("userspace-allows-bit-with-feature")
    assert found("", allows.fires) == [("userspace-allows-bit-with-feature", 608, None)]
    assert found("", allows.passes) == [("userspace-reject-reserved-bit", 604, None)]  # PCIDE: newly reserved


def test_a_call_moved_from_the_ioctl_into_the_helper_it_calls_is_kept():
    text = (DIFFS / "call-into-helper.diff").read_text()
    quiet_but(text, text[:text.index("@@ -568")], [("userspace-reject-callee", 461, "kvm_set_cpuid")])


def test_the_same_condition_with_other_helper_arguments_is_no_change():
    text = (DIFFS / "args-only.diff").read_text()
    quiet_but(text, text.replace("kvm_hlt_in_guest(vcpu) && best", "kvm_mwait_in_guest(vcpu->kvm) && best"), [
        ("cpuid-adjust-condition", 327, "__kvm_update_cpuid_runtime")])


def test_a_check_that_needs_a_flag_the_patch_adds_rejects_nothing_that_worked():
    text = (DIFFS / "new-flag.diff").read_text()
    quiet_but(text, text[text.index("diff --git a/arch/x86/kvm/regs.c"):], [
        ("userspace-reject-added", 831, "kvm_vcpu_ioctl_x86_get_debugregs")])


def test_a_condition_fails_host_writes_unless_not_host_must_hold():
    """``!active && (!host || data)`` fails a host write with data;
    ``!active && (!host && (data || msr))`` only the guest's."""
    text = (DIFFS / "guest-or-data.diff").read_text()
    assert found("", text) == [("userspace-reject-condition", 265, "synic_set_msr")]
    assert found("", text.replace("(!host || data)", "(!host && (data || msr))")) == []
