"""Every call into b4 lives here (b4 has no stable Python API; pinned 0.16.0).

Turns a list of mail messages into a :class:`MailSeries`: threading, the
latest revision, the cover letter and follow-up trailers, as b4 sees them.
Nothing outside this module touches a b4 object.
"""

from __future__ import annotations

import argparse
import email.parser
import logging
from dataclasses import dataclass, field
from email.message import EmailMessage

import b4

from reviewer.errors import InputError

B4_VERSION = "0.16.0"

logging.getLogger("b4").setLevel(logging.CRITICAL + 1)
logging.getLogger("b4").propagate = False


@dataclass
class Mail:
    """One message of the series, with what b4 parsed out of it."""

    msg: EmailMessage
    msgid: str
    subject: str  # without the [PATCH ...] prefix
    full_subject: str
    counter: int
    fromname: str
    fromemail: str
    date: str
    message: str  # the changelog
    basement: str  # everything below the first ---
    trailers: list[tuple[str, str]]
    followup_trailers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class MailSeries:
    revision: int
    expected: int
    complete: bool
    cover: Mail | None
    patches: list[Mail]
    change_id: str | None = None


def parse_bytes(data: bytes) -> EmailMessage:
    """One message, parsed with b4's own policy."""
    return email.parser.BytesParser(policy=b4.emlpolicy, _class=EmailMessage).parsebytes(data)


def configure(settings: dict[str, str], network: bool) -> None:
    """Apply b4 settings (``b4.midmask`` ...) on top of the user's git config."""
    b4.can_network = network
    config = {"b4.attestation-policy": "off"}
    config.update(settings)
    b4.setup_config(argparse.Namespace(config=config))
    b4.LORENODE = None


def _mail(lmsg) -> Mail:
    _githeaders, message, trailers, basement, _sig = b4.LoreMessage.get_body_parts(lmsg.body)
    return Mail(
        msg=lmsg.msg,
        msgid=lmsg.msgid,
        subject=lmsg.subject,
        full_subject=lmsg.full_subject,
        counter=lmsg.counter,
        fromname=lmsg.fromname,
        fromemail=lmsg.fromemail,
        date=lmsg.date.isoformat(),
        message=message,
        basement=basement,
        trailers=[(t.name, t.value) for t in trailers],
        followup_trailers=[(t.name, t.value) for t in lmsg.followup_trailers],
    )


def series_from_messages(msgs: list[EmailMessage], revision: int | None = None) -> MailSeries:
    """Thread ``msgs`` and return the chosen (default: latest) revision."""
    mailbox = b4.LoreMailbox()
    for msg in msgs:
        try:
            mailbox.add_message(msg)
        except ValueError as exc:  # b4 refuses some messages outright
            raise InputError(f"cannot read a message: {exc}") from None
    lser = mailbox.get_series(revision=revision, codereview_trailers=False)
    if lser is None:
        raise InputError("no patches found in the input")
    patches = [p for p in lser.patches[1:] if p is not None]
    if not patches:
        raise InputError("no patches found in the input")
    cover = lser.patches[0] if lser.has_cover else None
    return MailSeries(
        revision=lser.revision,
        expected=lser.expected,
        complete=lser.complete,
        cover=_mail(cover) if cover is not None else None,
        patches=[_mail(p) for p in patches],
        change_id=lser.change_id,
    )


def fetch_thread(msgid: str, nocache: bool) -> list[EmailMessage]:
    """The whole thread holding ``msgid``, from the configured lore."""
    try:
        msgs = b4.get_pi_thread_by_msgid(msgid, nocache=nocache)
    except Exception as exc:  # liblore raises many kinds; one line for all
        raise InputError(f"cannot fetch {msgid}: {exc}") from None
    if not msgs:
        raise InputError(f"cannot fetch {msgid}: not found on the lore server")
    return list(msgs)
