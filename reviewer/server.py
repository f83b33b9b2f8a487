"""A resident ``kvm-review`` for the pre-send hooks (``kvm-review server
start``; the client half and the commands are :mod:`reviewer.client`).

Nothing here changes a review: the server runs the same :func:`cli.main`
with the client's arguments, directory, environment and standard input,
one request at a time, and answers with the exit status and the bytes the
command wrote. Only a process of the same user is answered (the socket's
peer credentials); after ``IDLE_S`` seconds without a request, or when a
client asks it to stop, the server removes its socket and exits.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import struct
import sys

from reviewer.client import ANSWER_TIMEOUT_S, IDLE_S, log_path, receive, send, stdin_of, unlink


class _Stream(io.TextIOWrapper):
    """The client's stdout or stderr as its command would see it (encoding,
    error handler, terminal or not), writing into bytes for the answer."""

    def __init__(self, like: tuple[str, str, bool]):
        encoding, errors, self._tty = like
        super().__init__(io.BytesIO(), encoding=encoding, errors=errors, newline="\n", write_through=True)

    def isatty(self) -> bool:
        return self._tty

    def written(self) -> bytes:
        self.flush()
        return self.buffer.getvalue()


def _answer(request: dict) -> dict:
    """Run one command in this process as a process of the client's would."""
    import contextlib

    from reviewer import cli

    stdout, stderr = _Stream(request["stdout"]), _Stream(request["stderr"])
    saved = dict(os.environ), os.getcwd(), sys.stdin, os.umask(request["umask"])
    try:
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.stdin = stdin_of(request["stdin"] or b"")
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = cli.main(list(request["argv"]))
    finally:
        env, cwd, sys.stdin, umask = saved
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        os.umask(umask)
    return {"exit": status, "stdout": stdout.written(), "stderr": stderr.written()}


def _peer_is_us(conn) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _bind(path: str) -> socket.socket | None:
    """A listening socket on ``path``; None when a live server has it. A
    socket file nobody listens on is what a server that died left."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            listener.close()
            return None
        except OSError:
            unlink(path)
            listener.bind(path)
        finally:
            probe.close()
    listener.listen(16)
    return listener


def serve(path: str, idle_s: float = IDLE_S) -> int:
    """Answer requests on ``path`` one at a time until nobody asked for
    ``idle_s`` seconds, or a client asks it to stop."""
    from reviewer import b4glue, cli, commands, presend, rules  # noqa: F401 - loaded before the first check
    from reviewer.kvm import reach

    rules.builtin()  # a broken pack stops the server here, not a request
    reach.load()
    listener = _bind(path)
    if listener is None:
        return 0  # another server answers there
    listener.settimeout(idle_s)
    answered = 0
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return 0
            with conn:
                conn.settimeout(10.0)
                try:
                    if not _peer_is_us(conn):
                        continue
                    request = receive(conn)
                    if request.get("stop"):
                        send(conn, {"stopped": os.getpid()})
                        return 0
                    if request.get("ping"):
                        send(conn, {"pid": os.getpid(), "answered": answered})
                        continue
                    answer = _answer(request)
                    conn.settimeout(ANSWER_TIMEOUT_S)
                    send(conn, answer)
                    answered += 1
                except (OSError, ConnectionError, ValueError, EOFError, TypeError, KeyError):
                    continue  # that client reviews by itself
    finally:
        listener.close()
        unlink(path)
        unlink(log_path(path))  # nothing went wrong that it must keep


if __name__ == "__main__":  # kvm-review server start runs: python -m reviewer.server PATH IDLE
    os.chdir("/")  # hold no directory of the user's busy
    try:
        sys.exit(serve(sys.argv[1], float(sys.argv[2])))
    except Exception as exc:  # noqa: BLE001 - reported to `server start` on stderr, one line
        print(f"{type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(3)
