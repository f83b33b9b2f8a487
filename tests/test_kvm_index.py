"""The call-graph index file and the model on a small tree written for these
tests: building, reading, bad index files (one line, exit 2), the
``kvm-review reach`` command and the ``--kernel-tree`` cache."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from reviewer.errors import InputError
from reviewer.kvm import graph, reach
from reviewer.kvm.index import FORMAT, dumps, loads

X86 = """\
static int do_set_thing(struct kvm_vcpu *vcpu, u32 index, u64 *data)
{
	return kvm_x86_call(set_thing)(vcpu, index, *data);
}

long kvm_arch_vcpu_ioctl(struct file *filp, unsigned int ioctl, unsigned long arg)
{
	int r;

	switch (ioctl) {
	case KVM_SET_THINGS:
		r = thing_io(filp, do_set_thing);
		break;
	case KVM_POKE:
		poke(filp);
		r = 0;
		break;
	default:
		r = -EINVAL;
	}
	return r;
}

static void poke(struct file *filp)
{
	note_poke(filp);
}

static void note_poke(struct file *filp)
{
}
"""

VMX = """\
static int vmx_set_thing(struct kvm_vcpu *vcpu, u32 index, u64 data)
{
	if (index > 3)
		return 1;
	return vendor_check(vcpu, data);
}

static int vendor_check(struct kvm_vcpu *vcpu, u64 data)
{
	return data ? 0 : 1;
}

static int setup_only(void)
{
	return vendor_check(NULL, 0);
}

struct kvm_x86_ops vt_x86_ops __initdata = {
	.set_thing = vmx_set_thing,
};
"""


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "linux"
    (root / "arch/x86/kvm/vmx").mkdir(parents=True)
    (root / "arch/x86/kvm/x86.c").write_text(X86)
    (root / "arch/x86/kvm/vmx/vmx.c").write_text(VMX)
    (root / "Makefile").write_text("VERSION = 9\nPATCHLEVEL = 1\nSUBLEVEL = 0\n")
    return root


@pytest.fixture
def index_file(tree, tmp_path) -> Path:
    path = tmp_path / "index.txt"
    path.write_text(dumps(graph.build(tree)), encoding="utf-8")
    return path


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reviewer", *args], capture_output=True, text=True, env=env)


def test_small_tree_model(tree):
    model = reach.Model(graph.build(tree))
    assert model.index.kernel == "9.1"
    assert model.path("vendor_check", "result") == [
        "KVM_SET_THINGS", "kvm_arch_vcpu_ioctl", "do_set_thing", "vmx_set_thing", "vendor_check"]
    assert model.label("do_set_thing", "vmx_set_thing") == ".set_thing"
    assert model.entries("note_poke") == ["KVM_POKE"]
    assert model.entries("note_poke", via="result") == []
    assert model.path("setup_only") is None and model.known("setup_only")
    assert model.callers("vendor_check") == ["setup_only", "vmx_set_thing"]
    assert model.callees("kvm_arch_vcpu_ioctl") == ["do_set_thing", "poke"]
    assert model.below("do_set_thing") == {"do_set_thing", "vmx_set_thing", "vendor_check"}
    assert model.below("poke", "result") == {"poke"}
    assert model.reached("KVM_SET_THINGS") == {
        "kvm_arch_vcpu_ioctl", "do_set_thing", "vmx_set_thing", "vendor_check"}
    body = X86.split("\n")
    assert model.case_entry("kvm_arch_vcpu_ioctl", body[:12]) == "KVM_SET_THINGS"
    assert model.case_entry("kvm_arch_vcpu_ioctl", body[:16]) == "KVM_POKE"
    assert model.case_entry("kvm_arch_vcpu_ioctl", body[:19]) is None  # default: no entry of its own
    assert model.case_entry("kvm_arch_vcpu_ioctl", body[:8]) is None  # before the switch
    assert model.case_entry("poke", body[:12]) is None  # not a dispatcher
    assert reach.describe(model.path("vendor_check")) == (
        "reached from KVM_SET_THINGS via do_set_thing -> vmx_set_thing -> vendor_check")
    # which functions can fail their caller on bad input: their own exits (`return data ? 0 : 1`
    # is none the model reads), and
    # the used results of those that can (through the ops member too)
    assert {name: model.can_reject(name) for name in (
        "vmx_set_thing", "vendor_check", "do_set_thing", "setup_only", "kvm_arch_vcpu_ioctl", "poke",
        "note_poke", "kvm_x86_ops.set_thing", ".set_thing", ".nothing", "not_a_function")} == {
        "vmx_set_thing": True, "vendor_check": False, "do_set_thing": True, "setup_only": False,
        "kvm_arch_vcpu_ioctl": True, "poke": False, "note_poke": False, "kvm_x86_ops.set_thing": True,
        ".set_thing": True, ".nothing": None, "not_a_function": None}


def test_index_file_round_trip(tree, index_file):
    text = index_file.read_text(encoding="utf-8")
    header = text.split("\n", 1)[0].split(" ")
    assert header[:6] == ["kvm-review-index", str(FORMAT), "kernel=9.1", "functions=7", "edges=6", "entries=2"]
    assert header[6].startswith("sha256=") and len(header[6]) == 7 + 64
    assert dumps(loads(text, "x")) == text


@pytest.mark.parametrize(("damage", "message"), [
    (lambda t: t[:len(t) // 2], "kvm-review index damaged or truncated (checksum mismatch)"),
    (lambda t: "", "not a kvm-review index (no 'kvm-review-index' header)"),
    (lambda t: '{"files": []}\n', "not a kvm-review index (no 'kvm-review-index' header)"),
    (lambda t: t.replace(f"kvm-review-index {FORMAT} ", "kvm-review-index 7 ", 1), "kvm-review index format ['7'],"
                                                                                   f" this version reads {FORMAT}"),
    (lambda t: t.replace("functions=7", "functions=8", 1), "kvm-review index counts do not match its header"),
])
def test_bad_index_is_one_line_exit_2(index_file, damage, message):
    index_file.write_text(damage(index_file.read_text(encoding="utf-8")), encoding="utf-8")
    proc = run("reach", "--index", str(index_file), "vendor_check")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"kvm-review: error: {index_file}: {message}\n"


def test_body_that_is_not_the_format():
    body = '{"files": 3}\n'
    digest = hashlib.sha256(body.encode()).hexdigest()
    text = f"kvm-review-index {FORMAT} kernel=6.12 functions=0 edges=0 entries=0 sha256={digest}\n"
    with pytest.raises(InputError, match=r"^x: kvm-review index unreadable \(KeyError\)$"):
        loads(text + body, "x")


def test_reach_command(index_file):
    proc = run("reach", "--index", str(index_file), "--path", "--entries", "vendor_check", "setup_only", "nothing")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "vendor_check: reached from KVM_SET_THINGS via do_set_thing -> vmx_set_thing -> vendor_check",
        "  path: KVM_SET_THINGS -> kvm_arch_vcpu_ioctl -> do_set_thing -> vmx_set_thing -> vendor_check",
        "  entries: KVM_SET_THINGS",
        "setup_only: not reached from userspace",
        "nothing: not a function of the index (kernel 9.1)"]


def test_kernel_tree_is_indexed_once_then_cached(tree, tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    first = run("reach", "--kernel-tree", str(tree), "note_poke", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "note_poke: reached from KVM_POKE via poke -> note_poke\n"
    cached = list((tmp_path / "cache" / "kvm-review").glob("index-*.txt"))
    assert len(cached) == 1
    cached[0].write_text("damaged", encoding="utf-8")  # a damaged cache entry is rebuilt, not an error
    again = run("reach", "--kernel-tree", str(tree), "note_poke", env=env)
    assert (again.returncode, again.stdout) == (0, first.stdout)
    assert cached[0].read_text(encoding="utf-8").startswith(f"kvm-review-index {FORMAT} kernel=9.1 ")


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "missing", "--kernel-tree needs a directory"),
    (lambda p: p, "no arch/x86/kvm or virt/kvm sources in this kernel tree"),
])
def test_kernel_tree_without_kvm_is_exit_2(tmp_path, make, message):
    path = make(tmp_path)
    proc = run("reach", "--kernel-tree", str(path), "x", env={"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin"})
    assert proc.returncode == 2
    assert proc.stderr == f"kvm-review: error: {path}: {message}\n"


def test_shipped_index_loads():
    model = reach.load()
    assert model is reach.load()  # read once per process
    assert model.index.kernel == "6.12"
    assert len(model.index.names) > 3500 and len(model.index.entries) > 100
    assert model.entries("kvm_check_cpuid") == ["KVM_SET_CPUID", "KVM_SET_CPUID2"]
    # can refuse input (an exit of its own, or a used result of one that can) ... or cannot
    assert {name: model.can_reject(name) for name in (
        "kvm_check_cpuid", "kvm_set_cpuid", "kvm_set_msr_common", "intel_pmu_set_msr", "kvm_x86_ops.set_msr",
        "kvm_hv_vcpu_init", "kvm_pmu_refresh", "kvm_update_cpuid_runtime")} == {
        "kvm_check_cpuid": True, "kvm_set_cpuid": True, "kvm_set_msr_common": True, "intel_pmu_set_msr": True,
        "kvm_x86_ops.set_msr": True, "kvm_hv_vcpu_init": False, "kvm_pmu_refresh": False,
        "kvm_update_cpuid_runtime": False}


def test_reach_stats_and_usage(index_file):
    proc = run("reach", "--index", str(index_file), "--stats")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "kernel 9.1: 7 functions, 6 calls, 2 entry points",
        "functions reached (any call / result used):",
        "     4      4  KVM_SET_THINGS",
        "     3      1  KVM_POKE"]
    proc = run("reach", "--index", str(index_file))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "kvm-review: error: reach: name a FUNCTION, or ask for --stats\n"
