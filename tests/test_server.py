"""``kvm-review server``: a resident reviewer for the pre-send hooks. Real
processes, a real Unix socket: a check it answers prints the same bytes and
exits with the same status as a check in its own process, and anything
amiss falls back to a check in the client's own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.test_presend import REJECT, REJECT_LINE, commit, kernel  # noqa: F401 - kernel is a fixture

BIN = Path(sys.executable).parent
KVM_REVIEW = str(BIN / "kvm-review")


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> dict:
    """This test's own runtime directory, so that no other server is found."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    monkeypatch.delenv("KVM_REVIEW_SERVER", raising=False)
    yield dict(os.environ)
    subprocess.run([KVM_REVIEW, "server", "stop"], env=dict(os.environ), capture_output=True)


def kvm_review(*args: str, env: dict, stdin: bytes | None = None, cwd=None) -> tuple[int, bytes, bytes]:
    proc = subprocess.run([KVM_REVIEW, *args], env=env, input=stdin, capture_output=True, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def answered(env: dict) -> int | None:
    """How many checks the running server answered, None without one."""
    status, out, _ = kvm_review("server", "status", env=env)
    if status:
        assert out == b"kvm-review: no server running\n"
        return None
    return int(out.decode().rsplit("; ", 1)[1].split()[0])


def start(env: dict, *extra: str) -> None:
    status, out, err = kvm_review("server", "start", *extra, env=env)
    assert status == 0, err
    assert out.startswith(b"kvm-review: server running (pid ")


def own_process(env: dict) -> dict:
    return dict(env, KVM_REVIEW_SERVER="off")


CHECKS = [
    (("check", str(SAMPLES / "02-add-adjustment.mbox")), None),
    (("check", str(SAMPLES / "04-check-cpuid-einval.mbox"), "--format", "json"), None),
    (("check", str(SAMPLES / "09-v1-v2-thread.mbox"), "--fail-on", "info"), None),
    (("check", "--stdin"), (SAMPLES / "05-enable-cap-reject.mbox").read_bytes()),
    (("check", "--stdin", "--format", "b4-check"), b"not a patch at all\n"),
    (("check", "/nonexistent/0001-x.patch"), None),
]


def test_a_check_the_server_answers_is_the_check_a_process_does(env):
    start(env)
    assert answered(env) == 0
    for args, stdin in CHECKS:
        assert kvm_review(*args, env=env, stdin=stdin) == kvm_review(*args, env=own_process(env), stdin=stdin), args
    assert answered(env) == len(CHECKS)  # each went to the server; KVM_REVIEW_SERVER=off kept the others home
    status, out, err = kvm_review("check", str(SAMPLES / "02-add-adjustment.mbox"), env=env)
    assert (status, err) == (1, b"")
    assert out.splitlines()[2].startswith(b"arch/x86/kvm/cpuid.c:389: WARNING: cpuid-adjust-added: ")
    status, out, err = kvm_review("check", "/nonexistent/0001-x.patch", env=env)
    assert (status, out) == (2, b"")
    assert err.count(b"\n") == 1 and err.startswith(b"kvm-review: error: ")


def test_the_server_checks_in_the_clients_directory_with_its_environment(env, kernel, tmp_path):  # noqa: F811
    start(env)
    commit(kernel, REJECT, "KVM: x86: Reject CPUID.7.EBX[0]")
    here = kvm_review("check", "HEAD~1..HEAD", env=env, cwd=kernel)
    assert here == kvm_review("check", "HEAD~1..HEAD", env=own_process(env), cwd=kernel)
    assert here[0] == 1
    assert f"arch/x86/kvm/cpuid.c:{REJECT_LINE}: WARNING: userspace-reject-added".encode() in here[1]
    # the client's environment, not the server's: a config naming a rule to disable
    config = tmp_path / "kvm-review.toml"
    config.write_text('disable = ["userspace-reject-added"]\n')
    configured = dict(env, KVM_REVIEW_CONFIG=str(config))
    quiet = kvm_review("check", "HEAD~1..HEAD", env=configured, cwd=kernel)
    assert quiet == kvm_review("check", "HEAD~1..HEAD", env=own_process(configured), cwd=kernel)
    assert quiet == (0, b"", b"")  # its one finding was of the disabled rule
    assert answered(env) == 2


def test_a_check_that_imports_only_the_client(env):
    """What a check costs with a server: the interpreter, cli and the client."""
    start(env)
    code = ("import sys\nfrom reviewer import cli\nsys.argv = ['kvm-review', 'check', sys.argv[1]]\n"
            "status = cli.main()\n"
            "print(sorted(m for m in sys.modules if m.startswith('reviewer')), "
            "[m for m in ('argparse', 'email', 'b4', 'dataclasses', 'unidiff', 'socket') if m in sys.modules], "
            "status, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(SAMPLES / "02-add-adjustment.mbox")], env=env,
                          capture_output=True, text=True)
    assert proc.stderr == "['reviewer', 'reviewer.cli', 'reviewer.client', 'reviewer.errors'] [] 1\n"
    assert answered(env) == 1


def test_a_directory_others_can_write_is_not_trusted(env):
    start(env)
    directory = Path(env["XDG_RUNTIME_DIR"]) / "kvm-review"
    directory.chmod(0o755)
    try:
        args = ("check", str(SAMPLES / "02-add-adjustment.mbox"))
        assert kvm_review(*args, env=env) == kvm_review(*args, env=own_process(env))
    finally:
        directory.chmod(0o700)
    assert answered(env) == 0


@pytest.mark.parametrize("stdin", [False, True])
def test_a_server_that_breaks_off_leaves_the_check_to_the_client(env, stdin):
    """Something listens on the server's socket but hangs up on every
    request: each check is reviewed in its own process, stdin included."""
    from reviewer import client

    path = client.socket_path()  # the same package and interpreter as the kvm-review script
    Path(path).parent.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    hung_up = []

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(16)
        conn.close()
        hung_up.append(True)

    thread = threading.Thread(target=hang_up)
    thread.start()
    try:
        sample = SAMPLES / "05-enable-cap-reject.mbox"
        args, data = (("check", "--stdin"), sample.read_bytes()) if stdin else (("check", str(sample)), None)
        got = kvm_review(*args, env=env, stdin=data)
        thread.join(10)
    finally:
        listener.close()
    assert hung_up == [True]
    assert got == kvm_review(*args, env=own_process(env), stdin=data)
    assert got[0] == 1 and b"WARNING: " in got[1]


def test_an_idle_server_exits_and_removes_its_socket(env):
    start(env, "--idle", "0.5")
    directory = Path(env["XDG_RUNTIME_DIR"]) / "kvm-review"
    deadline = time.monotonic() + 20
    while any(directory.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(directory.iterdir()) == []  # socket and log gone
    assert answered(env) is None


def test_start_twice_stop_and_status(env):
    start(env)
    status, out, _ = kvm_review("server", "start", env=env)
    assert status == 0 and out.startswith(b"kvm-review: server already running (pid ")
    status, out, _ = kvm_review("server", "stop", env=env)
    assert status == 0 and out.startswith(b"kvm-review: server stopped (pid ") and out.count(b"\n") == 1
    assert kvm_review("server", "status", env=env) == (1, b"kvm-review: no server running\n", b"")
    assert kvm_review("server", "stop", env=env) == (0, b"kvm-review: no server running\n", b"")


def test_auto_starts_one_for_the_next_check(env):
    args = ("check", str(SAMPLES / "02-add-adjustment.mbox"))
    auto = dict(env, KVM_REVIEW_SERVER="auto")
    first = kvm_review(*args, env=auto)  # no server yet: this one runs here and starts one
    deadline = time.monotonic() + 20
    while answered(env) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answered(env) == 0
    assert kvm_review(*args, env=auto) == first
    assert answered(env) == 1


def test_a_stale_socket_file_does_not_stop_a_start(env):
    from reviewer import client

    path = Path(client.socket_path())
    path.parent.mkdir(mode=0o700)
    path.write_text("")  # what a killed server leaves is a file nobody listens on
    start(env)
    assert answered(env) == 0


def test_check_server_auto_and_the_off_switch(env):
    args = ("check", "--server", "auto", str(SAMPLES / "02-add-adjustment.mbox"))
    off = kvm_review(*args, env=own_process(env))  # KVM_REVIEW_SERVER=off wins over --server auto
    assert answered(env) is None
    assert kvm_review(*args, env=env) == off  # runs here, starts one
    deadline = time.monotonic() + 20
    while answered(env) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kvm_review(*args, env=env) == off
    assert kvm_review("check", "--server=off", *args[3:], env=env) == off
    assert answered(env) == 1


@pytest.mark.parametrize("idle", ["-5", "0", "abc", "nan", "inf"])
def test_idle_must_be_a_positive_number_of_seconds(env, idle):
    status, out, err = kvm_review("server", "start", "--idle", idle, env=env)
    assert (status, out) == (2, b"")
    assert err.decode().splitlines()[-1] == (
        f"kvm-review server: error: argument --idle: {idle!r} is not a positive number of seconds")
    assert answered(env) is None


def test_no_server_in_a_directory_others_can_write(env):
    directory = Path(env["XDG_RUNTIME_DIR"]) / "kvm-review"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    status, out, err = kvm_review("server", "start", env=env)
    assert (status, out) == (2, b"")
    assert err == f"kvm-review: error: {directory} is not private to this user: not starting a server\n".encode()
