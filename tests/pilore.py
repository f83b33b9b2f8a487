"""A public-inbox v2 archive served by ``public-inbox-httpd`` on 127.0.0.1
(socket activation, no port race), new mail delivered with
``public-inbox-mda`` while it runs. No pytest here: the bot tests
(tests/lore_server.py) and the benchmark (bench/run.py --bot) both use it.

Recipe and figures: ../shared/docs/local-lore.md. Everything public-inbox
reads or writes (HOME, PI_CONFIG, git config, XDG dirs) lives under ``root``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

INBOX = "kvm"
LIST_ADDR = "kvm@vger.example.org"
# public-inbox-httpd's own app plus an access log (it keeps none by default):
# one "combined" line a request, written to its stdout (-1 out.log) unbuffered
PSGI = """use v5.12;
use Plack::Builder;
use PublicInbox::WWW;
my $www = PublicInbox::WWW->new;
$www->preload;
builder {
	enable 'AccessLog', format => 'combined', logger => sub { syswrite(STDOUT, $_[0]) };
	enable 'Head';
	sub { $www->call(@_) };
};
"""
IMPORT = ("my $i = PublicInbox::Config->new->lookup_name($ARGV[0]) or die 'no inbox';"
          "PublicInbox::InboxWritable->new($i)->import_mbox(\\*STDIN, 'mboxo')")


class LoreServer:
    def __init__(self, root: Path):
        self.root = root
        self.sock = self._bind(0)
        self.port = self.sock.getsockname()[1]
        self.proc: subprocess.Popen | None = None
        home = root / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, HOME=str(home), PI_CONFIG=str(root / "config"),
                        PI_EMERGENCY=str(root / "emergency"), GIT_CONFIG_NOSYSTEM="1",
                        GIT_CONFIG_GLOBAL="/dev/null", XDG_CONFIG_HOME=str(home / ".config"),
                        XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local/share"),
                        XDG_STATE_HOME=str(home / ".local/state"), LC_ALL="C.UTF-8")
        self.env.pop("KVM_REVIEW_CONFIG", None)

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        return sock

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/{INBOX}"

    def _run(self, cmd: list[str], stdin: bytes | None = None, extra: dict | None = None) -> None:
        env = dict(self.env, **(extra or {}))
        proc = subprocess.run(cmd, input=stdin, env=env, capture_output=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')[-500:]}")

    def init(self) -> None:
        self._run(["public-inbox-init", "-V2", "-L", "full", INBOX, str(self.root / "inboxes" / INBOX),
                   self.url, LIST_ADDR])
        self._run(["git", "config", "-f", str(self.root / "config"), "publicinboxmda.spamcheck", "none"])

    def import_mbox(self, data: bytes) -> None:
        """Many messages at once, in one perl process (not indexed as mail arrives)."""
        self._run(["perl", "-MPublicInbox::Config", "-MPublicInbox::InboxWritable", "-e", IMPORT, INBOX],
                  stdin=data)

    def deliver(self, message: bytes) -> None:
        """One message, as a mail server would hand it over (indexed at once)."""
        if message.startswith(b"From "):
            message = message.split(b"\n", 1)[1]
        self._run(["public-inbox-mda", "--no-precheck"], stdin=message,
                  extra={"ORIGINAL_RECIPIENT": LIST_ADDR})
        if self.proc is not None:
            self._reload(message)

    def _reload(self, message: bytes) -> None:
        """A running public-inbox-httpd (1.9.0) serves new mail at once but
        searches the Xapian index it opened: SIGHUP makes it reopen. Wait
        until the message is found by search."""
        import email.parser
        import signal

        import requests

        msgid = email.parser.BytesHeaderParser().parsebytes(message)["Message-ID"].strip().strip("<>")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = requests.get(self.url + "/", params={"q": f"m:{msgid}", "x": "A"}, timeout=5)
            if r.status_code == 200 and msgid in r.text:
                return
            time.sleep(0.02)
        raise RuntimeError(f"{msgid}: delivered but not found by search")

    def start(self) -> None:
        if self.sock is None:
            self.sock = self._bind(self.port)
        self.sock.setblocking(False)  # what the server wants (it says so otherwise)
        fd = self.sock.fileno()
        psgi = self.root / "httpd.psgi"
        psgi.write_text(PSGI, encoding="utf-8")
        # systemd socket activation: the listening socket is fd 3 of the server
        cmd = (f"LISTEN_PID=$$ LISTEN_FDS=1 exec public-inbox-httpd -W0 "
               f"-l http://127.0.0.1:{self.port} -1 '{self.root}/out.log' -2 '{self.root}/err.log' '{psgi}' "
               + ("" if fd == 3 else f"3<&{fd} {fd}<&-"))
        self.proc = subprocess.Popen(["bash", "-c", cmd], env=self.env, pass_fds=(fd,))
        # the socket listens already: the first request waits for the server
        self._wait_ready()

    @property
    def access_log(self) -> Path:
        """One line a request served (Apache "combined" format)."""
        return self.root / "out.log"

    def _wait_ready(self, timeout: float = 10.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while True:
            try:
                requests.get(f"{self.url}/_/text/help/", timeout=1)
                return
            except requests.RequestException:
                if self.proc.poll() is not None:
                    err = (self.root / "err.log").read_text(errors="replace")[-500:]
                    raise RuntimeError(f"public-inbox-httpd exited: {err}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server and close the port: connections are refused."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
