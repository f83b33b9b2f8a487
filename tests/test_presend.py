"""Pre-send mode against real git, the real b4 0.16 and git send-email."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reviewer.cli import main
from tests.conftest import require_system

BIN = Path(sys.executable).parent
CPUID_C = """\
// SPDX-License-Identifier: GPL-2.0-only
#include "cpuid.h"

static int kvm_check_cpuid(struct kvm_vcpu *vcpu)
{
	struct kvm_cpuid_entry2 *best;

	best = kvm_find_cpuid_entry(vcpu, 0x80000008);
	if (best) {
		int vaddr_bits = (best->eax & 0xff00) >> 8;

		if (vaddr_bits != 48 && vaddr_bits != 57 && vaddr_bits != 0)
			return -EINVAL;
	}

	return 0;
}

void kvm_update_pv_runtime(struct kvm_vcpu *vcpu)
{
	struct kvm_cpuid_entry2 *best = kvm_find_cpuid_entry(vcpu, 0x40000001);

	if (best)
		vcpu->arch.pv_cpuid.features = best->eax;
}
"""
REJECT = CPUID_C.replace(
    "\treturn 0;\n}\n\nvoid",
    "\tbest = kvm_find_cpuid_entry(vcpu, 0x7);\n\tif (best && (best->ebx & 1))\n\t\treturn -EINVAL;\n\n"
    "\treturn 0;\n}\n\nvoid")
BENIGN = CPUID_C.replace("void kvm_update_pv_runtime", "/* Track the PV features userspace set. */\n"
                         "void kvm_update_pv_runtime")
REJECT_LINE = REJECT.splitlines().index("\t\treturn -EINVAL;", 13) + 1


def git(repo: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, **kw)


@pytest.fixture
def kernel(tmp_path: Path) -> Path:
    """A throwaway kernel-like repo: arch/x86/kvm/cpuid.c on master."""
    repo = tmp_path / "linux"
    (repo / "arch/x86/kvm").mkdir(parents=True)
    git(tmp_path, "init", "-q", "-b", "master", str(repo))
    (repo / "arch/x86/kvm/cpuid.c").write_text(CPUID_C)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    return repo


def commit(repo: Path, text: str, subject: str) -> None:
    (repo / "arch/x86/kvm/cpuid.c").write_text(text)
    git(repo, "commit", "-qam", subject, "-m", "Signed-off-by: Rev Iewer <reviewer@example.org>")


def test_check_range_with_rejection_exits_1_at_the_line(kernel, capsys):
    commit(kernel, REJECT, "KVM: x86: Reject CPUID.7.EBX[0]")
    status = main(["check", "--repo", str(kernel), "HEAD~1..HEAD"])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert f"arch/x86/kvm/cpuid.c:{REJECT_LINE}: WARNING: userspace-reject-added: This adds an error " \
           "return to kvm_check_cpuid(), a path that handles userspace's input: a VMM that works today " \
           "gets an error after this patch. Why: reached from KVM_SET_CPUID2 via kvm_vcpu_ioctl_set_cpuid2 -> " \
           "kvm_set_cpuid -> kvm_check_cpuid." in out
    assert out[0].startswith("patch 1: WARNING: changelog-abi-unacknowledged: ")
    assert len(out) == 2  # checkpatch format is terse: no info lines


def test_check_benign_commit_exits_0(kernel, capsys):
    commit(kernel, BENIGN, "KVM: x86: Comment kvm_update_pv_runtime()")
    assert main(["check", "--repo", str(kernel), "HEAD~1..HEAD"]) == 0
    assert capsys.readouterr().out == ""


def test_check_format_patch_files(kernel, tmp_path, capsys):
    commit(kernel, REJECT, "KVM: x86: Reject CPUID.7.EBX[0]")
    outdir = tmp_path / "out"
    git(kernel, "format-patch", "-q", "-o", str(outdir), "HEAD~1")
    files = sorted(str(p) for p in outdir.iterdir())
    assert main(["check", *files, "--format", "json"]) == 1
    assert '"rule": "userspace-reject-added"' in capsys.readouterr().out


def test_check_defaults_to_upstream(kernel, capsys):
    git(kernel, "checkout", "-q", "-b", "topic", "--track", "master")
    commit(kernel, REJECT, "KVM: x86: Reject CPUID.7.EBX[0]")
    assert main(["check", "--repo", str(kernel)]) == 1
    assert "userspace-reject-added" in capsys.readouterr().out


@pytest.mark.parametrize("setup, args, message", [
    ("none", ["nope..HEAD"], "kvm-review: error: git format-patch nope..HEAD: fatal: bad revision 'nope..HEAD'"),
    ("none", [], "kvm-review: error: no range given, and this branch is neither a b4 prep branch nor tracking "
                 "an upstream: pass one, e.g. kvm-review check origin/master..HEAD"),
    ("dirty", ["HEAD~1..HEAD"], "kvm-review: error: {repo}: uncommitted changes; commit or stash them, "
                                "check reviews commits"),
    ("notkernel", ["HEAD~1..HEAD"], "kvm-review: error: {repo}: not a kernel tree (no arch/x86/kvm/)"),
    ("nogit", ["HEAD~1..HEAD"], "kvm-review: error: {repo}: not a git repository"),
])
def test_check_bad_setup_is_one_line_exit_2(kernel, tmp_path, capsys, setup, args, message):
    repo = kernel
    commit(kernel, BENIGN, "KVM: x86: Comment")
    if setup == "dirty":
        (kernel / "arch/x86/kvm/cpuid.c").write_text(REJECT)
    if setup == "notkernel":
        git(kernel, "mv", "arch", "drivers")
        git(kernel, "commit", "-qm", "move")
    if setup == "nogit":
        repo = tmp_path / "plain"
        repo.mkdir()
    assert main(["check", "--repo", str(repo), *args]) == 2
    err = capsys.readouterr().err
    assert err == message.format(repo=repo) + "\n"


def _env(tmp_path: Path) -> dict:
    """Our venv first on PATH, and a runtime directory of this test's own
    (the hook's check starts a `kvm-review server` there)."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", XDG_RUNTIME_DIR=str(run))
    env.pop("KVM_REVIEW_SERVER", None)
    return env


def test_b4_prep_check_shows_our_finding(kernel, tmp_path):
    """The real b4 0.16 runs us once per patch (stdin) and counts our lines."""
    env = _env(tmp_path)
    subprocess.run([str(BIN / "b4"), "prep", "-n", "reject-test"], cwd=kernel, env=env, check=True,
                   capture_output=True)
    commit(kernel, REJECT, "KVM: x86: Reject CPUID.7.EBX[0]")
    git(kernel, "config", "b4.prep-perpatch-check-cmd",
        f"{BIN / 'kvm-review'} check --stdin --format checkpatch")
    proc = subprocess.run([str(BIN / "b4"), "prep", "--check", "--no-cache"], cwd=kernel, env=env,
                          capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    assert f"kvm-review: arch/x86/kvm/cpuid.c:{REJECT_LINE}: WARNING: userspace-reject-added:" in text
    assert "Success: 0, Warning: 2, Error: 0" in text
    # and without a range, check finds the b4 prep series by itself
    proc = subprocess.run([str(BIN / "kvm-review"), "check"], cwd=kernel, env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"arch/x86/kvm/cpuid.c:{REJECT_LINE}: WARNING: userspace-reject-added" in proc.stdout


def test_hook_install_refuses_send_and_uninstall_keeps_others(kernel, tmp_path):
    hooks = kernel / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    theirs = "#!/bin/sh\necho their-check >&2\n"
    (hooks / "sendemail-validate").write_text(theirs)
    assert main(["install-hook", "--repo", str(kernel)]) == 0
    assert main(["install-hook", "--repo", str(kernel)]) == 0  # idempotent
    text = (hooks / "sendemail-validate").read_text()
    assert text.startswith(theirs) and text.count("# >>> kvm-review >>>") == 1
    assert main(["uninstall-hook", "--repo", str(kernel)]) == 0
    assert (hooks / "sendemail-validate").read_text() == theirs
    (hooks / "sendemail-validate").unlink()
    assert main(["install-hook", "--repo", str(kernel)]) == 0
    assert main(["uninstall-hook", "--repo", str(kernel)]) == 0
    assert not (hooks / "sendemail-validate").exists()


def test_hook_makes_git_send_email_refuse(kernel, tmp_path):
    require_system("git-email", "/usr/lib/git-core/git-send-email")
    require_system("libmailtools-perl")  # git-email only recommends it; send-email needs it
    commit(kernel, REJECT, "KVM: x86: Reject CPUID.7.EBX[0]")
    assert main(["install-hook", "--repo", str(kernel)]) == 0
    patches = tmp_path / "patches"
    git(kernel, "format-patch", "-q", "-o", str(patches), "HEAD~1")
    cmd = ["git", "-C", str(kernel), "send-email", "--dry-run", "--confirm=never", "--quiet",
           "--from=Rev Iewer <reviewer@example.org>", "--to=kvm@vger.kernel.org", str(patches)]
    env = _env(tmp_path)
    try:
        refused = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert refused.returncode != 0
        assert "kvm-review: findings (send with --no-validate to override)" in refused.stderr
        # the hook's check started a server (--server auto); the next send's check is its
        for _ in range(200):
            status = subprocess.run([str(BIN / "kvm-review"), "server", "status"], env=env, capture_output=True,
                                    text=True)
            if status.returncode == 0:
                break
            time.sleep(0.1)
        assert status.stdout.endswith("; 0 checks answered\n")
        again = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert (again.returncode, again.stderr) == (refused.returncode, refused.stderr)
        status = subprocess.run([str(BIN / "kvm-review"), "server", "status"], env=env, capture_output=True,
                                text=True)
        assert status.stdout.endswith("; 1 checks answered\n")
        passed = subprocess.run(cmd[:5] + ["--no-validate"] + cmd[5:], capture_output=True, text=True, env=env)
        assert passed.returncode == 0, passed.stderr
        assert "Dry-Sent" in passed.stdout + passed.stderr
    finally:
        subprocess.run([str(BIN / "kvm-review"), "server", "stop"], env=env, capture_output=True)


def test_b4_review_perpatch_check_reads_our_json(kernel):
    """b4 0.16's review-perpatch-check-cmd runner, in process (b4 review is a
    TUI): it pipes one patch to us and parses our b4-check JSON."""
    from b4.review import checks

    from reviewer import sources
    from tests.conftest import SAMPLES

    msg = sources.from_path(str(SAMPLES / "04-check-cpuid-einval.mbox"))[1]
    cmd = f"{BIN / 'kvm-review'} check --stdin --format b4-check"
    results = checks.run_perpatch_checks([("id", msg)], [cmd], str(kernel))
    assert results == {"id": [{
        "tool": "kvm-review", "status": "fail", "summary": "2 warnings, 2 infos",
        "url": "https://docs.kernel.org/virt/kvm/api.html",
        "details": results["id"][0]["details"]}]}
    assert "arch/x86/kvm/cpuid.c:167 (kvm_check_cpuid()): warning: userspace-reject-added" in \
        results["id"][0]["details"]
