"""The call-graph index on the real 6.12 tree: function spans against
universal-ctags, reachability of known functions both ways, exact paths,
and the shipped index being what ``make kvm-index`` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from reviewer.kvm import cscan, generate, graph, reach
from reviewer.kvm.index import FORMAT, dumps
from tests.realkernel import kedits
from tests.realkernel.conftest import MEMBERS, TOP

pytestmark = pytest.mark.realkernel

# ctags mistakes on the scanned files (each must still show, or the entry is stale)
CTAGS_QUIRKS = {
    ("arch/x86/kvm/vmx/nested.c", "BUILD_NVMX_MSR_INTERCEPT_HELPER"): "nested_vmx_set_intercept_for_msr",
    ("arch/x86/kvm/vmx/vmx.h", "BUILD_VMX_MSR_BITMAP_HELPERS"): "vmx_get_rvi",
    ("arch/x86/kvm/kvm_cache_regs.h", "BUILD_KVM_GPR_ACCESSORS"): "kvm_register_is_available",
}
# a column-0 macro invocation without ';' before a function: ctags names the
# function after the macro and starts it at the invocation; the value is the real name


@pytest.fixture(scope="module")
def index(kernel_tree):
    return graph.build(kernel_tree)


@pytest.fixture(scope="module")
def model(index):
    return reach.Model(index)


def test_function_spans_agree_with_ctags(kernel_tree):
    paths = graph.source_files(kernel_tree)
    assert len(paths) > 100
    tags = kedits.ctags_functions(kernel_tree, paths)
    wrong, quirks_seen, total = [], set(), 0
    for path in paths:
        scanned = cscan.scan((kernel_tree / path).read_text(encoding="utf-8", errors="replace"), path)
        ours = {(fn.macro or fn.name, fn.line, fn.end) for fn in scanned.functions}
        theirs = {(tag.name, tag.start, tag.end) for tag in tags[path]}
        total += len(theirs)
        for name, start, end in theirs - ours:
            real = CTAGS_QUIRKS.get((path, name))
            if real and any(n == real and e == end for n, _, e in ours - theirs):
                quirks_seen.add((path, name))
                continue
            wrong.append(f"{path}:{start} ctags {name}-{end}")
        misnamed = {real for (where, _), real in CTAGS_QUIRKS.items() if where == path}
        wrong += [f"{path}:{start} ours {name}-{end}" for name, start, end in ours - theirs if name not in misnamed]
    assert wrong == []
    assert quirks_seen == set(CTAGS_QUIRKS)
    assert total > 3700


def test_shipped_index_is_what_make_kvm_index_writes(kernel_tree, tmp_path):
    out = tmp_path / "index.txt"
    assert generate.main(["--tree", str(kernel_tree), "-o", str(out)]) == 0
    shipped = Path(reach.__file__).parent / "data" / reach.SHIPPED
    assert out.read_text(encoding="utf-8") == shipped.read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8").startswith(f"kvm-review-index {FORMAT} kernel=6.12 functions=")


def test_generator_unpacks_what_the_tree_fixture_has(kernel_tree):
    """make kvm-index unpacks generate.members(): the tests' tree has all of them."""
    fixture = {f"{TOP}/{member}" for member in MEMBERS}
    assert set(generate.members()) <= fixture
    assert graph.kernel_version(kernel_tree) == "6.12"


def test_dispatchers_and_aliases_name_real_functions(model):
    assert sorted(model.index.dispatchers) == sorted(graph.DISPATCHERS)
    for old, new in reach.ALIASES.items():
        assert (new in model.index.members) if "." in new else model.known(new), (old, new)
        assert old not in model.index.position, f"{old} is no older name: 6.12 has it"
        assert old not in model.index.members, f"{old} is no older member: 6.12 has it"
    assert model.known("kvm_update_cpuid") and not model.known("kvm_update_cpuid_2")


REACHED = [
    ("intel_pmu_set_msr", "KVM_SET_MSRS"),
    ("amd_pmu_set_msr", "KVM_SET_MSRS"),
    ("kvm_hv_set_msr_common", "KVM_SET_MSRS"),
    ("kvm_xen_write_hypercall_page", "KVM_SET_MSRS"),
    ("vmx_set_vmx_msr", "KVM_SET_MSRS"),
    ("kvm_check_cpuid", "KVM_SET_CPUID2"),
    ("vmx_vcpu_after_set_cpuid", "KVM_SET_CPUID2"),
    ("vmx_set_nested_state", "KVM_SET_NESTED_STATE"),
    ("svm_set_nested_state", "KVM_SET_NESTED_STATE"),
    ("__do_cpuid_func", "KVM_GET_SUPPORTED_CPUID"),
    ("kvm_cpuid", "KVM_RUN"),
    ("em_cpuid", "KVM_RUN"),
    ("complete_emulated_pio", "KVM_RUN"),
    ("sev_guest_init", "KVM_MEMORY_ENCRYPT_OP"),
    ("kvm_apic_set_state", "KVM_SET_LAPIC"),
    ("kvm_is_valid_sregs", "KVM_SET_SREGS"),
    ("paging64_walk_addr_generic", "KVM_TRANSLATE"),
    ("kvm_arch_tsc_set_attr", "KVM_SET_DEVICE_ATTR"),
    ("kvm_hv_activate_synic", "KVM_ENABLE_CAP(KVM_CAP_HYPERV_SYNIC)"),
    ("kvm_vm_ioctl_set_msr_filter", "KVM_X86_SET_MSR_FILTER"),
]


@pytest.mark.parametrize(("func", "entry"), REACHED)
def test_reached(model, func, entry):
    assert entry in model.entries(func)
    path = model.path(func, entry=entry)
    assert path[0] == entry and path[-1] == func


NOT_REACHED = [
    ("kvm_set_cpu_caps", []),
    ("vmx_hardware_setup", []),
    ("svm_hardware_setup", []),
    ("kvm_x86_vendor_init", []),
    ("__do_cpuid_func", ["KVM_GET_EMULATED_CPUID", "KVM_GET_SUPPORTED_CPUID"]),
    ("kvm_check_cpuid", ["KVM_SET_CPUID", "KVM_SET_CPUID2"]),
    ("vmx_set_nested_state", ["KVM_SET_NESTED_STATE"]),
    ("sev_guest_init", ["KVM_MEMORY_ENCRYPT_OP"]),
]


@pytest.mark.parametrize(("func", "entries"), NOT_REACHED)
def test_reached_from_these_only(model, func, entries):
    assert model.entries(func) == entries
    assert model.known(func)


def test_exact_paths(model):
    assert model.path("intel_pmu_set_msr", "result") == [
        "KVM_SET_MSRS", "kvm_arch_vcpu_ioctl", "do_set_msr", "kvm_set_msr_ignored_check", "_kvm_set_msr",
        "__kvm_set_msr", "vmx_set_msr", "kvm_set_msr_common", "kvm_pmu_set_msr", "intel_pmu_set_msr"]
    assert model.path("kvm_check_cpuid", entry="KVM_SET_CPUID2") == [
        "KVM_SET_CPUID2", "kvm_arch_vcpu_ioctl", "kvm_vcpu_ioctl_set_cpuid2", "kvm_set_cpuid", "kvm_check_cpuid"]
    assert model.path("kvm_cpuid", entry="KVM_RUN") == [
        "KVM_RUN", "kvm_vcpu_ioctl", "kvm_arch_vcpu_ioctl_run", "vcpu_run", "vcpu_enter_guest", "vmx_handle_exit",
        "__vmx_handle_exit", "kvm_emulate_cpuid", "kvm_cpuid"]
    assert model.path("vmx_set_nested_state") == ["KVM_SET_NESTED_STATE", "kvm_arch_vcpu_ioctl", "vmx_set_nested_state"]
    assert model.label("kvm_arch_vcpu_ioctl", "vmx_set_nested_state") == ".set_state"
    assert model.label("__vmx_handle_exit", "kvm_emulate_cpuid") == "kvm_vmx_exit_handlers"
    assert model.label("kvm_arch_vcpu_ioctl", "do_set_msr") == "&"
    assert reach.describe(model.path("intel_pmu_set_msr", "result")) == (
        "reached from KVM_SET_MSRS via do_set_msr -> kvm_set_msr_ignored_check -> ... -> kvm_set_msr_common"
        " -> kvm_pmu_set_msr -> intel_pmu_set_msr")


def test_result_use_separates_error_paths(model):
    # kvm_set_cpuid() calls kvm_vcpu_after_set_cpuid() as a statement: no error of it reaches userspace
    assert model.entries("kvm_vcpu_after_set_cpuid") == ["KVM_SET_CPUID", "KVM_SET_CPUID2"]
    assert model.entries("kvm_vcpu_after_set_cpuid", via="result") == []
    assert model.path("kvm_cpuid", via="result") is None
    assert "KVM_SET_MSRS" in model.entries("kvm_pmu_set_msr", via="result")


def test_older_names_reach_like_their_successors(model):
    assert model.entries("kvm_update_cpuid") == ["KVM_SET_CPUID", "KVM_SET_CPUID2"]
    assert model.path("kvm_update_cpuid", entry="KVM_SET_CPUID2")[-2:] == ["kvm_set_cpuid", "kvm_update_cpuid"]
    assert model.entries("svm_cpuid_update") == ["KVM_SET_CPUID", "KVM_SET_CPUID2"]
    assert model.entries("vmx_cpuid_update") == ["KVM_SET_CPUID", "KVM_SET_CPUID2"]
    assert model.entries("cpuid_entry2_find") == model.entries("kvm_find_cpuid_entry2")
    assert "KVM_SET_MSRS" in model.entries("kvm_set_apic_base", via="result")


def test_calls_a_patch_adds(model):
    assert not model.known("kvm_new_cpuid_check")
    grown = model.with_calls([("kvm_set_cpuid", "kvm_new_cpuid_check", True),
                              ("kvm_new_cpuid_check", "kvm_set_cpu_caps", False)])
    assert grown.path("kvm_new_cpuid_check", "result", entry="KVM_SET_CPUID2") == [
        "KVM_SET_CPUID2", "kvm_arch_vcpu_ioctl", "kvm_vcpu_ioctl_set_cpuid2", "kvm_set_cpuid", "kvm_new_cpuid_check"]
    assert grown.entries("kvm_set_cpu_caps") == ["KVM_SET_CPUID", "KVM_SET_CPUID2"]
    assert grown.entries("kvm_set_cpu_caps", via="result") == []
    assert model.entries("kvm_set_cpu_caps") == []  # the base model is unchanged
    # an older kernel's ops member: the call goes to every implementation of the 6.12 member
    old = model.with_calls([("kvm_vcpu_ioctl_set_cpuid2", "kvm_x86_ops.cpuid_update", False)])
    assert "vmx_vcpu_after_set_cpuid" in old.callees("kvm_vcpu_ioctl_set_cpuid2")
    assert "svm_vcpu_after_set_cpuid" in old.callees("kvm_vcpu_ioctl_set_cpuid2")


def test_loaded_index_answers_like_the_built_one(model, index, tmp_path):
    path = tmp_path / "index.txt"
    path.write_text(dumps(index), encoding="utf-8")
    loaded = reach.read_index(path)
    for func, _ in REACHED:
        assert loaded.path(func) == model.path(func)
        assert loaded.entries(func, "result") == model.entries(func, "result")


def test_entry_table_agrees_with_the_path_search(model):
    """entries() reads the index's precomputed table (or extends it for a patch's calls);
    path(entry=E) searches the callers: two algorithms, one answer."""
    grown = model.with_calls([("kvm_set_cpuid", "kvm_new_cpuid_check", True),
                              ("kvm_new_cpuid_check", "kvm_set_cpu_caps", False)])
    sample = [*model.index.names[::300], "kvm_new_cpuid_check", "kvm_set_cpu_caps", "kvm_cpuid"]
    for current in (model, grown):
        for func in sample:
            for via in reach.VIA:
                by_path = [e for e in current.index.entries if current.path(func, via, entry=e)]
                assert current.entries(func, via) == by_path, (func, via)


def test_case_entry_names_the_arm(model, kernel_tree):
    x86 = (kernel_tree / "arch/x86/kvm/x86.c").read_text(encoding="utf-8").split("\n")
    at = next(n for n, line in enumerate(x86) if "r = kvm_vcpu_ioctl_set_cpuid2(vcpu, &cpuid," in line)
    assert model.case_entry("kvm_arch_vcpu_ioctl", x86[:at]) == "KVM_SET_CPUID2"
    at = next(n for n, line in enumerate(x86) if "kvm->arch.user_space_msr_mask = cap->args[0];" in line)
    assert model.case_entry("kvm_vm_ioctl_enable_cap", x86[:at]) == "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)"
    # an arm that calls nothing is an entry all the same: its code is the dispatcher's
    entry = "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)"
    assert entry in model.entries("kvm_vm_ioctl_enable_cap")
    assert model.path("kvm_vm_ioctl_enable_cap", entry=entry) == [entry, "kvm_vm_ioctl_enable_cap"]
    assert model.reached(entry) == {"kvm_vm_ioctl_enable_cap"}


def test_functions_writing_the_vcpu_cpuid_table(model):
    """Where 6.12 writes the table userspace set: the runtime bits, Xen's TSC
    leaves, and the older helper kept for SGX; what KVM offers is not."""
    writers = sorted(model.index.names[n] for n in model.index.cpuid_writers)
    assert writers == ["__kvm_update_cpuid_runtime", "guest_cpuid_clear", "kvm_xen_update_tsc_info"]
    assert not model.writes_cpuid("__do_cpuid_func") and not model.writes_cpuid("kvm_get_hv_cpuid")
