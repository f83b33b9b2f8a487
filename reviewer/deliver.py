"""Delivery at the edge: SMTP like git send-email, or an outbox directory.

SMTP settings come from git's ``sendemail.*`` (smtpServer, smtpServerPort,
smtpEncryption, smtpUser, smtpPass), overridden by our own config. A password
is never printed or logged.
"""

from __future__ import annotations

import smtplib
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

from reviewer.config import git_config
from reviewer.errors import InputError, MaybeSent


@dataclass
class SmtpSettings:
    server: str = "localhost"
    port: int = 25
    encryption: str = ""  # "", "tls" (STARTTLS) or "ssl"
    user: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0


def smtp_settings(cfg) -> SmtpSettings:
    send = {k: v[-1] for k, v in git_config("sendemail").items()}
    server = cfg.get("smtp_server") or send.get("smtpserver") or "localhost"
    encryption = cfg.get("smtp_encryption") or send.get("smtpencryption") or ""
    default_port = {"ssl": 465, "tls": 587}.get(encryption, 25)
    port = cfg.get("smtp_port") or send.get("smtpserverport") or default_port
    try:
        port = int(port)
    except ValueError:
        raise InputError(f"SMTP port {port!r} is not a number") from None
    return SmtpSettings(server=str(server), port=port, encryption=str(encryption),
                        user=str(cfg.get("smtp_user") or send.get("smtpuser") or ""),
                        password=str(cfg.get("smtp_pass") or send.get("smtppass") or ""))


class _Marks:
    """smtplib, noting when a message's end (the lone "." line) has been sent."""

    body_sent = False

    def send(self, s):
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.body_sent = True


class _SMTP(_Marks, smtplib.SMTP):
    pass


class _SMTPSSL(_Marks, smtplib.SMTP_SSL):
    pass


def _hang_up(smtp: smtplib.SMTP) -> None:
    """QUIT, ignoring its failure: every message the server answered 250 is sent."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        smtp.close()


def _recipients(msg) -> list[str]:
    from email.utils import getaddresses

    return [addr for _, addr in getaddresses(msg.get_all("To", []) + msg.get_all("Cc", [])) if addr]


def send(replies, settings: SmtpSettings, dry_run: bool = True, out=None) -> list[str]:
    """Send each reply; returns the Message-IDs sent. Dry run prints instead."""
    sent = []
    out = out or sys.stderr
    if dry_run:
        for reply in replies:
            print(f"dry run: would send {reply.msg['Message-ID']} to {', '.join(_recipients(reply.msg))} "
                  f"via {settings.server}:{settings.port}", file=out)
        return sent
    smtp = None
    try:
        if settings.encryption == "ssl":
            smtp = _SMTPSSL(settings.server, settings.port, timeout=settings.timeout,
                            context=ssl.create_default_context())
        else:
            smtp = _SMTP(settings.server, settings.port, timeout=settings.timeout)
        if settings.encryption == "tls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.user:
            smtp.login(settings.user, settings.password)
        for reply in replies:
            smtp.body_sent = False
            smtp.send_message(reply.msg, to_addrs=_recipients(reply.msg))
            sent.append(reply.msg["Message-ID"])
    except (OSError, smtplib.SMTPException) as exc:
        detail = " ".join(str(exc).replace(settings.password, "***").split()) if settings.password else str(exc)
        where = f"SMTP {settings.server}:{settings.port}: {type(exc).__name__}: {detail}"
        if sent:
            where += f" (already sent: {', '.join(sent)})"
        # an answer refusing the mail (SMTPDataError...) is an answer: not sent; a
        # lost connection or a timeout after its last line is no answer at all
        lost = isinstance(exc, smtplib.SMTPServerDisconnected) or not isinstance(exc, smtplib.SMTPException)
        if smtp is not None and smtp.body_sent and lost:
            raise MaybeSent(f"{where}: the connection was lost after {reply.msg['Message-ID']} was sent, "
                            "it may have been delivered") from None
        raise InputError(where) from None
    finally:
        if smtp is not None:
            _hang_up(smtp)
    return sent


def to_outbox(replies, directory: str) -> list[Path]:
    """Write each reply as an .eml file (CRLF, as on the wire)."""
    from reviewer.mail import as_bytes

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for reply in replies:
        name = reply.msg["Message-ID"].strip("<>").replace("/", "_") + ".eml"
        path = root / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(as_bytes(reply.msg, linesep="\r\n"))
        tmp.replace(path)
        paths.append(path)
    return paths
