"""Every call into b4 lives here (b4 has no stable Python API; pinned 0.16.0).

Turns a list of mail messages into a :class:`MailSeries`: threading, the
latest revision, the cover letter and follow-up trailers, as b4 sees them.
Nothing outside this module touches a b4 object.
"""

from __future__ import annotations

import argparse
import email.errors
import email.header
import email.headerregistry
import email.parser
import email.utils
import functools
import importlib
import logging
import re
import sys
import threading
import types
import typing
from dataclasses import dataclass, field
from email.message import EmailMessage


class _Deferred(types.ModuleType):
    """Stands in for a module until its first use, then becomes it.

    b4 imports dkim (and with it dnspython, a third of b4's import time) at
    start-up, for DKIM attestation, and patatt; we turn attestation off, so a
    review should not pay for them. smtplib (and with it ssl, 6 ms) serves
    b4's sending, which we never call; at import b4 reads only its SMTP
    classes, in annotations. b4 and liblore import requests (urllib3, ssl,
    charset_normalizer: 0.1 s, half of a 10-patch review) although a local
    review sends no HTTP request; at import b4 reads only ``requests.Session``,
    in type annotations, and gets ``typing.Any`` for it while
    :data:`_IMPORTING` holds. Any other attribute access imports the real
    module.
    """

    def __getattr__(self, name: str):
        if name.startswith("__") and name != "__path__":  # __path__: a submodule is imported
            raise AttributeError(name)
        if _IMPORTING and name in _ANNOTATION_ONLY.get(self.__name__, ()):
            return typing.Any
        with _LOADING:  # two threads' first uses: one import, one module
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
            self.__dict__.update(real.__dict__)
        return getattr(real, name)


_LOADING = threading.RLock()
_ANNOTATION_ONLY = {"requests": ("Session",), "smtplib": ("SMTP", "SMTP_SSL")}
_IMPORTING = True
for _name in ("dkim", "requests", "smtplib", "patatt"):
    sys.modules.setdefault(_name, _Deferred(_name))

import b4  # noqa: E402 - after the stand-ins above
import liblore  # noqa: E402 - b4's own lore client

_IMPORTING = False

from reviewer import limits  # noqa: E402
from reviewer.errors import InputError  # noqa: E402

B4_VERSION = "0.16.0"  # the only b4 whose internals this module is written for


def _require_pinned_b4() -> None:
    if b4.__VERSION__ != B4_VERSION:
        raise InputError(f"b4 {b4.__VERSION__} is installed; kvm-review needs b4 {B4_VERSION} "
                         f"(pip install b4=={B4_VERSION})")


class _ParsedOnce(email.headerregistry.HeaderRegistry):
    """The stdlib parses a header anew on every read, and builds a new class
    on every lookup of a header name; b4 reads each header of a message about
    17 times (a third of a review's time went there). Same name and text, same
    header object: they are immutable strings with their parse attached."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}
        self._parsed: dict[tuple[str, str], email.headerregistry.BaseHeader] = {}

    def __getitem__(self, name: str) -> type:
        if name not in self._classes:
            self._classes[name] = super().__getitem__(name)
        return self._classes[name]

    def __call__(self, name: str, value: str):
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            if len(self._parsed) >= 8192:  # a long-running bot: keep it bounded
                self._parsed.clear()
            header = self._parsed[key] = super().__call__(name, value)
        return header


# every message, ours and those b4 parses from lore, goes through this policy
b4.emlpolicy = b4.emlpolicy.clone(header_factory=_ParsedOnce())

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
    problem: str | None = None  # why b4 found no diff in a [PATCH n/N] message


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


def _mail(lmsg, problem: str | None = None) -> Mail:
    _githeaders, message, trailers, basement, _sig = b4.LoreMessage.get_body_parts(lmsg.body or "")
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
        problem=problem,
    )


_UNDECODABLE = (email.errors.InvalidBase64CharactersDefect, email.errors.InvalidBase64PaddingDefect,
                email.errors.InvalidBase64LengthDefect)


def _why_unread(lmsg) -> str:
    """Why b4 found no diff in a message that says it is a patch."""
    if any(isinstance(d, _UNDECODABLE) for part in lmsg.msg.walk() for d in part.defects):
        return "its body cannot be decoded (invalid base64)"
    if not any(part.get_content_type() in ("text/plain", "text/x-patch") for part in lmsg.msg.walk()):
        return "it has no plain-text part"
    return "it has no diff"


def _unread(mailbox, revision: int | None) -> list:
    """The [PATCH n/N] messages of ``revision`` (None: any) that b4 left
    out of its series for want of a diff: each is a patch we could not read.
    (b4 files one among the unknowns, or, when it carries trailers and
    References as every patch of a series does, among the follow-ups.)"""
    found: dict[tuple[int, int], object] = {}
    for m in mailbox.unknowns + mailbox.followups:
        if m.lsubject.patch and not m.lsubject.reply and not m.has_diff and m.counter >= 1 \
                and revision in (None, m.revision):
            found.setdefault((m.revision, m.counter), m)  # a copy sent twice: once
    return list(found.values())


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _decoded(value: str) -> str:
    """RFC 2047 words decoded, control characters (CR, LF...) made spaces."""
    try:
        text = str(email.header.make_header(email.header.decode_header(value)))
    except Exception:  # undecodable words: keep them encoded
        text = value
    return " ".join(_CONTROL.sub(" ", text).split())


def _neutral(policy, name: str, value: str) -> str:
    """A safe text for a header the stdlib refused. In an address header the
    display names are decoded one by one and quoted again, so that decoded
    text never becomes structure (an extra address, a group)."""
    if not issubclass(policy.header_factory[name], email.headerregistry.AddressHeader):
        return _decoded(value)
    out = []
    for display, addr in email.utils.getaddresses([value]):
        try:
            out.append(str(email.headerregistry.Address(display_name=_decoded(display),
                                                        addr_spec=_decoded(addr))))
        except Exception:  # not an address at all: dropped
            continue
    return ", ".join(out)


_PLAIN = re.compile(r"[ -~]*(?:\r?\n[ \t][ -~]*)*")


@functools.cache
def _unstructured(policy, name: str) -> bool:
    # (the registry builds a new class on every lookup: ask once a name)
    return issubclass(policy.header_factory[name], email.headerregistry.UnstructuredHeader)


def _plain(policy, name: str, value) -> bool:
    """Printable ASCII in an unstructured header (Subject, Received, X-...):
    nothing the stdlib can refuse, nothing that decodes into a CR/LF."""
    return (isinstance(value, str) and "=?" not in value and _PLAIN.fullmatch(value) is not None
            and _unstructured(policy, name.lower()))


def neutralise_headers(msg: EmailMessage) -> None:
    """Replace each header the stdlib refuses to parse (an encoded CR/LF in
    an address, a malformed structured header...) by a neutral text (see
    :func:`_neutral`), keeping header order; a header that cannot be made
    safe is dropped."""
    raw = list(msg.raw_items())
    fixed = []
    changed = False
    for name, value in raw:
        if _plain(msg.policy, name, value):
            fixed.append((name, value))
            continue
        try:
            str(msg.policy.header_fetch_parse(name, value))
            fixed.append((name, value))
            continue
        except Exception:  # the stdlib raises many kinds on hostile headers
            changed = True
        try:
            header = msg.policy.header_store_parse(name, _neutral(msg.policy, name, str(value)))
            str(msg.policy.header_fetch_parse(*header))
            fixed.append(header)
        except Exception:
            pass  # dropped: nothing safe is left of it
    if changed:
        for name in {n.lower() for n, _ in raw}:
            del msg[name]
        for name, value in fixed:
            msg.set_raw(name, value)


def _content(msg: EmailMessage) -> tuple[str, ...]:
    """What two copies of one message share (whitespace aside)."""
    payload = msg.get_payload()
    text = payload if isinstance(payload, str) else repr(payload)
    return tuple(str(msg.get("Subject", "")).split()) + tuple(text.split())


def series_from_messages(msgs: list[EmailMessage], revision: int | None = None) -> MailSeries:
    """Thread ``msgs`` and return the chosen (default: latest) revision."""
    _require_pinned_b4()
    mailbox = b4.LoreMailbox()
    seen: dict[str, EmailMessage] = {}
    for msg in msgs:  # neutralised already: by sources, or by fetch_thread
        msgid = str(msg.get("Message-ID", "")).strip().strip("<>")
        if msgid in seen:
            if _content(seen[msgid]) != _content(msg):  # b4 would keep one, silently
                raise InputError(f"duplicate Message-ID <{msgid}>: two different messages carry it")
            continue  # the same message twice (an archive copy and a CC)
        seen[msgid] = msg
        try:
            mailbox.add_message(msg)
        except ValueError as exc:  # b4 refuses some messages outright
            raise InputError(f"cannot read a message: {exc}") from None
    if len(mailbox.series) == 1:
        # one revision: no trailers to carry over from an earlier one, so the
        # `git patch-id` b4 would run per patch (a process each) buys nothing
        for lmsg in mailbox.msgid_map.values():
            if lmsg._git_patch_id is None:
                lmsg._git_patch_id = ""
    # b4 looks up code-review trailers on lore from inside get_series (a
    # partial reroll asks for the previous revision with its defaults): the
    # input alone decides the series, and its content never triggers a query
    network, b4.can_network = b4.can_network, False
    try:
        lser = mailbox.get_series(revision=revision, codereview_trailers=False)
        unread = _unread(mailbox, lser.revision if lser is not None else revision)
        if lser is None:
            if not unread:
                raise InputError("no patches found in the input")
            return _unread_series(mailbox, unread)
        patches = [p for p in lser.patches[1:] if p is not None]
        unread = [m for m in unread if m.counter >= len(lser.patches) or lser.patches[m.counter] is None]
        if not patches and not unread:
            raise InputError("no patches found in the input")
        cover = lser.patches[0] if lser.has_cover else None
        return MailSeries(
            revision=lser.revision,
            expected=lser.expected,
            complete=lser.complete or _all_there(lser.expected, patches + unread),
            cover=_mail(cover) if cover is not None else None,
            patches=_in_order([_mail(p) for p in patches] + [_mail(m, _why_unread(m)) for m in unread]),
            change_id=lser.change_id,
        )
    finally:
        b4.can_network = network


def _all_there(expected: int, lmsgs: list) -> bool:
    return {m.counter for m in lmsgs} >= set(range(1, expected + 1))


def _in_order(mails: list[Mail]) -> list[Mail]:
    return sorted(mails, key=lambda m: m.counter)


def _unread_series(mailbox, unread: list) -> MailSeries:
    """A series of which b4 could read no patch: its latest revision."""
    revision = max(m.revision for m in unread)
    unread = [m for m in unread if m.revision == revision]
    expected = max(m.expected for m in unread)
    cover = mailbox.covers.get(revision)
    return MailSeries(revision=revision, expected=expected, complete=_all_there(expected, unread),
                      cover=_mail(cover) if cover is not None else None,
                      patches=_in_order([_mail(m, _why_unread(m)) for m in unread]))


def _within_limits(mbox: bytes, where: str, skipped: list[str] | None) -> bytes:
    """The thread's mbox without the messages over :mod:`reviewer.limits`
    (each named in ``skipped``), or InputError for the first when
    ``skipped`` is None. Checked before anything parses them."""
    if len(mbox) > limits.MAX_INPUT_BYTES:
        raise InputError(f"{where}: input larger than {limits.MAX_INPUT_BYTES >> 20} MiB")
    kept, dropped = [], False
    for n, raw in enumerate(liblore.utils.split_mbox_as_bytes(mbox), 1):
        problem = limits.problem(raw)
        if problem is None:
            kept.append(raw)
            continue
        if skipped is None:
            raise InputError(f"{where}: message {n}: {problem}")
        skipped.append(f"message {n} skipped: {problem}")
        dropped = True
    if not dropped:
        return mbox
    if not kept:
        raise InputError(f"{where}: every message is over the limits ({skipped[-1]})")
    # mboxrd again, as the server sent it: "From " lines and one more ">" on ">*From "
    return b"".join(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n" + _FROM_LINE.sub(rb">\1", raw).rstrip(b"\n")
                    + b"\n\n" for raw in kept)


_FROM_LINE = re.compile(rb"^(>*From )", re.M)


def fetch_thread(msgid: str, nocache: bool, skipped: list[str] | None = None) -> list[EmailMessage]:
    """The whole thread holding ``msgid``, from the configured lore. A
    message over the limits is an InputError, or, given a ``skipped``
    list, left out and named there."""
    _require_pinned_b4()
    try:
        mbox = b4.get_lore_node().get_mbox_by_msgid(msgid, nocache=nocache)
    except liblore.RemoteError:  # the server has no such thread
        mbox = b""
    except Exception as exc:  # liblore raises many kinds; one line for all
        raise InputError(f"cannot fetch {msgid}: {exc}") from None
    mbox = _within_limits(mbox, f"thread of {msgid}", skipped)
    try:
        msgs = b4.split_and_dedupe_pi_results(mbox) if mbox else []
        thread = b4.get_strict_thread(msgs, msgid) if msgs else None
    except Exception as exc:
        raise InputError(f"cannot fetch {msgid}: {exc}") from None
    if not thread:
        raise InputError(f"cannot fetch {msgid}: not found on the lore server")
    for msg in thread:
        neutralise_headers(msg)
    return list(thread)


# --- for fetching from lore and for the bot (appended; the functions above are unchanged) ---


@dataclass(frozen=True)
class SubjectInfo:
    """What a ``[PATCH vN M/N]`` subject says, as b4 reads it."""

    subject: str  # without the prefixes
    revision: int
    counter: int
    expected: int
    patch: bool  # a [PATCH ...] (or RFC) prefix
    reply: bool  # Re: ...


def parse_subject(subject: str) -> SubjectInfo:
    lsub = b4.LoreSubject(subject or "")
    return SubjectInfo(subject=lsub.subject, revision=int(lsub.revision or 1), counter=int(lsub.counter or 0),
                       expected=int(lsub.expected or 1), patch=bool(lsub.patch), reply=bool(lsub.reply))


def use_session(session) -> None:
    """Send b4's lore requests through ``session`` (rate limit, retries,
    User-Agent). Call after :func:`configure`: that drops b4's lore node."""
    b4.get_lore_node().set_requests_session(session)
