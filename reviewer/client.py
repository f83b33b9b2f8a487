"""The client half of ``kvm-review server`` (:mod:`reviewer.server`): a
``kvm-review check`` process that finds a running server hands it its
command and prints the answer; ``kvm-review server start|stop|status``.

``b4 prep --check`` and git's sendemail-validate hook start one process per
patch, and a process that imports the reviewer pays about 0.1 s before it
reads its patch. A server started once keeps the reviewer imported and its
rules and index loaded; a ``check`` that finds it sends its command line,
directory, environment and standard input over a Unix socket and prints
what the server answers, importing nothing but this module: that is its
point, so it imports only the standard library's lightest modules.

The socket's name carries a digest of the installed package (code, rules,
templates, index) and of the environment it runs in, so a client of another
version never reaches the server; a server exits after its idle time.
Anything amiss (no server, a directory another user can write, a broken
answer) and the client reviews in its own process, as it would without a
server. Only ``check`` goes to a server: it sends nothing, so reviewing
again in the client is harmless. ``check --server auto`` (what the hooks
we install run) or ``KVM_REVIEW_SERVER=auto`` start a server for the next
checks when none runs; ``KVM_REVIEW_SERVER=off`` keeps every command in
its own process.
"""

from __future__ import annotations

import _socket  # the socket module costs a client 8 ms; its C half is all a client needs
import io
import marshal
import os
import struct
import sys
import zlib

ENV = "KVM_REVIEW_SERVER"
IDLE_S = 900  # a server nobody asked for this long exits
ANSWER_TIMEOUT_S = 120.0  # a review this slow is a hung server: review here instead
_HEADER = struct.Struct("!I")
_MAX_MESSAGE = 1 << 30  # a request or answer above this is not ours (inputs stop at 256 MiB)
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _digest() -> str:
    """What the installed reviewer is: each file's path, size and mtime under
    the package (code, rule pack, templates, index), and the environment
    (venv) and interpreter it runs in."""
    parts = [sys.prefix, sys.version]
    stack = [_PACKAGE]
    while stack:
        for entry in sorted(os.scandir(stack.pop()), key=lambda e: e.name):
            if entry.name == "__pycache__":
                continue
            if entry.is_dir():  # follows the source tree's links to rules/ and templates/
                stack.append(entry.path)
            elif entry.is_file():
                st = entry.stat()
                parts.append(f"{entry.path}\0{st.st_size}\0{st.st_mtime_ns}")
    data = "\n".join(parts).encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"  # an identity, not a secret


def runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return os.path.join(base, "kvm-review")
    return os.path.join("/tmp", f"kvm-review-{os.getuid()}")


def socket_path() -> str:
    return os.path.join(runtime_dir(), f"server-{_digest()}.sock")


def _private(directory: str) -> bool:
    """Ours and nobody else's: a socket in a directory another user can write
    could be anybody's server."""
    try:
        st = os.lstat(directory)
    except OSError:
        return False
    return st.st_uid == os.getuid() and (st.st_mode & 0o077) == 0 and os.path.isdir(directory)


def send(sock: _socket.socket, obj) -> None:
    data = marshal.dumps(obj)
    sock.sendall(_HEADER.pack(len(data)) + data)


def receive(sock: _socket.socket):
    def exactly(n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = sock.recv(min(left, 1 << 20))
            if not chunk:
                raise ConnectionError("connection closed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    (size,) = _HEADER.unpack(exactly(_HEADER.size))
    if size > _MAX_MESSAGE:
        raise ConnectionError("message too large")
    return marshal.loads(exactly(size))


def _connect(path: str, timeout: float) -> _socket.socket | None:
    if not _private(os.path.dirname(path)):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


# -- the client: a ``kvm-review check`` process ------------------------------

def forward(argv: list[str]) -> int | None:
    """Run ``kvm-review ARGV`` in a running server and print its answer: the
    exit status, or None when this process must review by itself."""
    mode = _mode(argv)
    if mode == "off" or argv[:1] != ["check"] or None in (sys.stdin, sys.stdout, sys.stderr):
        return None
    path = socket_path()
    sock = _connect(path, ANSWER_TIMEOUT_S)
    if sock is None:
        if mode == "auto":  # this check runs here; the next ones find the server
            _start_behind(path)
        return None
    stdin = sys.stdin.buffer.read() if ("--stdin" in argv or "-" in argv) and sys.stdin else None
    try:
        send(sock, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": _umask(), "stdin": stdin,
                    "stdout": _stream(sys.stdout), "stderr": _stream(sys.stderr)})
        answer = receive(sock)
        status, out, err = answer["exit"], answer["stdout"], answer["stderr"]
    except (OSError, ConnectionError, ValueError, EOFError, TypeError, KeyError):
        if stdin is not None:  # read already: review it here
            sys.stdin = stdin_of(stdin)
        return None
    finally:
        sock.close()
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.stderr.buffer.write(err)
    sys.stderr.flush()
    return status


def _mode(argv: list[str]) -> str:
    """use (a running server), auto (and start one when none runs) or off:
    ``KVM_REVIEW_SERVER=off`` wins, then ``check --server``, then the
    variable, then "use"."""
    env = os.environ.get(ENV)
    if env == "off":
        return "off"
    for i, arg in enumerate(argv):
        if arg.startswith("--server="):
            return arg.split("=", 1)[1]
        if arg == "--server" and i + 1 < len(argv):
            return argv[i + 1]
    return env or "use"


def _start_behind(path: str) -> None:
    """Start a server without waiting for it (``KVM_REVIEW_SERVER=auto``);
    one that cannot start leaves its reason in its log."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if _private(directory):
            _spawn(path, IDLE_S)
    except OSError:
        pass  # no server: every check runs in its own process


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _stream(stream) -> tuple[str, str, bool]:
    """What the server's stand-in for this stream must be like: its encoding,
    its error handler, and whether it is a terminal (colour)."""
    return stream.encoding, stream.errors, stream.isatty()


def stdin_of(data: bytes) -> io.TextIOWrapper:
    """Standard input already read, for a review in this process."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")


# -- kvm-review server start|stop|status ---------------------------------------

def _ask(path: str, request: dict) -> dict | None:
    sock = _connect(path, 5.0)
    if sock is None:
        return None
    try:
        send(sock, request)
        return receive(sock)
    except (OSError, ConnectionError, ValueError, EOFError):
        return None
    finally:
        sock.close()


def log_path(path: str) -> str:
    """Where the server on socket ``path`` keeps its own errors."""
    return path[: -len(".sock")] + ".log"


def _spawn(path: str, idle_s: float):
    """A server process on ``path``, in its own session, its errors outside
    any check kept in a log beside the socket for its user."""
    import subprocess

    with open(log_path(path), "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "reviewer.server", path, str(idle_s)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, close_fds=True)


def start(idle_s: float) -> tuple[bool, str]:
    """Start a server in the background unless one answers: (ok, a line)."""
    import time

    path = socket_path()
    running = _ask(path, {"ping": True})
    if running:
        return True, f"kvm-review: server already running (pid {running['pid']}) on {path}"
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if not _private(directory):
        return False, f"kvm-review: error: {directory} is not private to this user: not starting a server"
    child = _spawn(path, idle_s)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        answer = _ask(path, {"ping": True})
        if answer:
            return True, f"kvm-review: server running (pid {answer['pid']}) on {path}; exits after {idle_s:g} s idle"
        if child.poll() is not None:
            try:
                with open(log_path(path), encoding="utf-8", errors="replace") as fh:
                    why = fh.read().strip().splitlines()
            except OSError:
                why = [f"it exited with status {child.returncode}"]
            return False, f"kvm-review: error: server did not start: {why[-1] if why else 'no reason given'}"
        time.sleep(0.02)
    child.kill()
    return False, "kvm-review: error: server did not answer within 30 s"


def stop() -> list[str]:
    """Stop every server of this user, this version's and older ones'."""
    directory = runtime_dir()
    names = sorted(n for n in os.listdir(directory) if n.endswith(".sock")) if _private(directory) else []
    lines = []
    for name in names:
        answer = _ask(os.path.join(directory, name), {"stop": True})
        if answer:
            lines.append(f"kvm-review: server stopped (pid {answer['stopped']})")
        else:
            unlink(os.path.join(directory, name))  # nobody listens there
    return lines or ["kvm-review: no server running"]


def status() -> tuple[bool, str]:
    path = socket_path()
    answer = _ask(path, {"ping": True})
    if answer:
        return True, (f"kvm-review: server running (pid {answer['pid']}) on {path}; "
                      f"{answer['answered']} checks answered")
    return False, "kvm-review: no server running"


def main(args) -> int:
    from reviewer.errors import EXIT_CLEAN, EXIT_FINDINGS, EXIT_INPUT

    if args.action == "start":
        ok, line = start(args.idle)
        print(line, file=sys.stdout if ok else sys.stderr)
        return EXIT_CLEAN if ok else EXIT_INPUT
    if args.action == "stop":
        print("\n".join(stop()))
        return EXIT_CLEAN
    ok, line = status()
    print(line)
    return EXIT_CLEAN if ok else EXIT_FINDINGS


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
