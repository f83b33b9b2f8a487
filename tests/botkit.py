"""Helpers shared by the bot tests: a real SMTP server (aiosmtpd) on
127.0.0.1, the bot's TOML config, messages with a fresh Date."""

from __future__ import annotations

import email.utils
import socket
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

SMTP_USER = "kvmbot"
SMTP_PASS = "s3cret-smtp-pa55"
PW_TOKEN = "pw-t0ken-abcdef0123456789"


class Sink:
    """Every message the SMTP server accepted, as bytes."""

    def __init__(self):
        self.messages: list[bytes] = []
        self.lock = threading.Lock()
        self.hang_ups = 0  # take this many mails, then hang up instead of answering 250

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(envelope.original_content or envelope.content)
            if self.hang_ups > 0:
                self.hang_ups -= 1
                server.transport.close()
        return "250 OK"

    def msgids(self) -> list[str]:
        out = []
        for raw in list(self.messages):
            for line in raw.split(b"\r\n" if b"\r\n" in raw else b"\n"):
                if line.lower().startswith(b"message-id:"):
                    out.append(line.split(b":", 1)[1].strip().decode())
        return out

    def in_reply_to(self) -> list[str]:
        out = []
        for raw in list(self.messages):
            for line in raw.splitlines():
                if line.lower().startswith(b"in-reply-to:"):
                    out.append(line.split(b":", 1)[1].strip().decode().strip("<>"))
        return out


def _auth(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASS.encode()
    return AuthResult(success=ok)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_smtp():
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), authenticator=_auth,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    return sink, controller


def config(tmp_path, lore_base: str, smtp_port: int, **over) -> str:
    values = {
        "lore": {"url": lore_base, "lists": ["kvm"], "window": "", "rate": 0, "retries": 1,
                 "backoff": 0.01, "timeout": 5},
        "bot": {"poll_interval": 0.1, "grace": 3600, "state": str(tmp_path / "bot.sqlite")},
        "policy": {"dry_run": False},
        "identity": {"from": "KVM Review Bot <kvm-bot@example.org>", "contact": "ops@example.org"},
        "delivery": {"outbox": str(tmp_path / "outbox"), "smtp": True},
        "smtp": {"server": "127.0.0.1", "port": smtp_port, "user": SMTP_USER, "pass": SMTP_PASS},
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        values.setdefault(section, {})[name] = value
    lines = []
    for section, table in values.items():
        lines.append(f"[{section}]")
        for k, v in table.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, (int, float)):
                lines.append(f"{k} = {v}")
            elif isinstance(v, list):
                lines.append(f"{k} = [{', '.join(repr(x) for x in v)}]".replace("'", '"'))
            else:
                lines.append(f'{k} = "{v}"')
    path = tmp_path / "bot.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def fresh(raw: bytes) -> bytes:
    """The message dated now, so lore's rt: window sees it as new."""
    now = email.utils.formatdate(localtime=False).encode()
    out = []
    for line in raw.split(b"\n"):
        out.append(b"Date: " + now if line.startswith(b"Date: ") else line)
    return b"\n".join(out)
