"""The real 6.12 tree, unpacked once per session (never committed).

Needs Debian's linux-source-6.12 and universal-ctags: installed when root,
else every real-kernel test is skipped with the reason (a failure under CI,
KVM_REVIEW_REQUIRE_SYSTEM=1).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_system
from tests.realkernel import kedits

TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
TOP = "linux-source-6.12"
MEMBERS = [
    "arch/x86/kvm/*",
    "arch/x86/include/uapi/asm/kvm.h",
    "include/uapi/linux/kvm.h",
    "arch/x86/include/asm/msr-index.h",
    "arch/x86/include/asm/kvm_host.h",
    "arch/x86/include/asm/fpu/xstate.h",
    "include/uapi/asm-generic/errno-base.h",
    "include/uapi/asm-generic/errno.h",
    "include/linux/errno.h",
    "Documentation/virt/kvm/api.rst",
    # the call-graph index (reviewer.kvm) scans these too
    "virt/kvm/*",
    "include/linux/kvm_host.h",
    "Makefile",
]


@pytest.fixture(scope="session")
def kernel_tree(tmp_path_factory) -> Path:
    """arch/x86/kvm and the headers the rules name, from the 6.12 tarball."""
    require_system("linux-source-6.12")
    require_system("universal-ctags", "ctags")
    if not TARBALL.is_file():
        pytest.fail(f"linux-source-6.12 is installed but {TARBALL} is missing")
    root = tmp_path_factory.mktemp("kernel")
    subprocess.run(["tar", "-xJf", str(TARBALL), "-C", str(root), "--wildcards",
                    *[f"{TOP}/{m}" for m in MEMBERS]], check=True, capture_output=True)
    tree = root / TOP
    assert (tree / "arch/x86/kvm/cpuid.c").is_file()
    return tree


@pytest.fixture(scope="session")
def built(kernel_tree, tmp_path_factory) -> kedits.Built:
    """The edited versions, their ctags, and the series as git format-patch mails."""
    return kedits.build(kernel_tree, tmp_path_factory.mktemp("kedits"))
