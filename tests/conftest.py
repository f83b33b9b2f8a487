"""Shared fixtures. System packages: installed when root, else the test is
skipped with a reason; KVM_REVIEW_REQUIRE_SYSTEM=1 (set by .ci/run) turns such
a skip into a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
_apt_updated = False


def _present(package: str, binary: str | None) -> bool:
    if binary is None:
        return _dpkg_has(package)
    return os.path.exists(binary) if "/" in binary else shutil.which(binary) is not None


def require_system(package: str, binary: str | None = None) -> None:
    """Make sure a Debian package is installed, or skip (fail under CI).

    ``binary`` is a command on PATH or an absolute path that the package
    provides; without it dpkg is asked.
    """
    global _apt_updated
    probe = binary or package
    if _present(package, binary):
        return
    if os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
            _apt_updated = True
        proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                              env=env, check=False, capture_output=True, text=True)
        if proc.returncode == 0 and _present(package, binary):
            return
        reason = f"apt-get install {package} failed: {proc.stderr.strip()[-200:]}"
    else:
        reason = f"needs the Debian package {package} ({probe}); run as root to install it"
    if os.environ.get("KVM_REVIEW_REQUIRE_SYSTEM") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _dpkg_has(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package], capture_output=True, text=True)
    return proc.returncode == 0 and "install ok installed" in proc.stdout


@pytest.fixture
def sample():
    def load(name: str) -> Path:
        return SAMPLES / name
    return load


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test reads the developer's git or kvm-review config."""
    home = tmp_path / "home"
    home.mkdir()
    gitconfig = home / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = Rev Iewer\n\temail = reviewer@example.org\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("KVM_REVIEW_CONFIG", raising=False)
