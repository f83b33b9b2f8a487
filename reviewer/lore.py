"""HTTP to a public-inbox server (lore), politely.

One keep-alive :class:`requests.Session` per process, used by our own calls
(search Atom) and handed to b4 (thread mboxes), so every request to lore goes
through the same rate limit and retry policy:

- at most ``rate`` requests a second (default 1);
- exponential backoff with jitter on connection errors, timeouts, 429 and
  5xx, honouring ``Retry-After``; a bounded number of retries, then one
  :class:`LoreError` line (exit 2);
- gzip (requests asks for it and un-gzips ``Content-Encoding: gzip``);
- a User-Agent naming the tool and a contact address.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from reviewer import __version__
from reviewer.errors import InputError

ATOM = "{http://www.w3.org/2005/Atom}"
THR = "{http://purl.org/syndication/thread/1.0}"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 300.0
DEFAULT_CONTACT = "kvm-review@localhost"


class LoreError(InputError):
    """lore could not be reached or refused us (after retries): exit 2."""


@dataclass
class Policy:
    rate: float = 1.0  # requests a second, at most (0 = no limit)
    retries: int = 3  # extra attempts after the first
    backoff: float = 1.0  # first wait; doubles each retry
    max_backoff: float = 60.0
    timeout: float = 30.0  # read timeout (connect: min(timeout, 10))
    contact: str = DEFAULT_CONTACT

    @classmethod
    def from_env(cls) -> Policy:
        """Defaults, tuned by ``KVM_REVIEW_LORE_{RATE,RETRIES,BACKOFF,TIMEOUT,CONTACT}``."""
        p = cls(contact=os.environ.get("KVM_REVIEW_LORE_CONTACT") or DEFAULT_CONTACT)
        for name, conv in (("rate", float), ("retries", int), ("backoff", float), ("timeout", float)):
            raw = os.environ.get(f"KVM_REVIEW_LORE_{name.upper()}")
            if raw:
                try:
                    setattr(p, name, conv(raw))
                except ValueError:
                    raise InputError(f"KVM_REVIEW_LORE_{name.upper()}={raw!r} is not a number") from None
        return p


def user_agent(contact: str) -> str:
    return f"kvm-review/{__version__} (+mailto:{contact})"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(exc: BaseException) -> str:
    """A connection error in a few words, not urllib3's nested repr."""
    text = str(exc)
    for marker, words in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "unknown host"),
                          ("Temporary failure in name resolution", "DNS failure"),
                          ("RemoteDisconnected", "connection closed by the server"),
                          ("Connection reset", "connection reset")):
        if marker in text:
            return words
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__


class PoliteSession(requests.Session):
    """A Session whose every request is rate limited and retried."""

    def __init__(self, policy: Policy | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.policy = policy or Policy()
        self.headers.update({"User-Agent": user_agent(self.policy.contact),
                             "Accept-Encoding": "gzip"})
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0
        self.attempts = 0  # requests actually sent, for status and tests
        self.failures = 0  # requests given up on, or refused (HTTP 4xx but 404): lore unusable, not the message

    def _wait_turn(self) -> None:
        if self.policy.rate <= 0:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + 1.0 / self.policy.rate
        if start > now:
            self._sleep(start - now)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        base = min(self.policy.max_backoff, self.policy.backoff * (2 ** attempt))
        return base / 2 + random.uniform(0, base / 2)  # "equal jitter"

    def request(self, method, url, *args, **kwargs):  # noqa: D401 - requests' signature
        timeout = self.policy.timeout
        kwargs["timeout"] = (min(timeout, 10.0), timeout)  # ours, even over b4's (5, 30)
        where = _where(url)
        last = ""
        for attempt in range(self.policy.retries + 1):
            self._wait_turn()
            self.attempts += 1
            retry_after = None
            try:
                resp = super().request(method, url, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = _short(exc)
            else:
                if resp.status_code not in RETRY_STATUS:
                    if resp.status_code >= 400 and resp.status_code != 404:
                        self.failures += 1
                    return resp
                last = f"HTTP {resp.status_code}"
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                resp.close()
            if attempt < self.policy.retries:
                self._sleep(self._delay(attempt, retry_after))
        tries = self.policy.retries + 1
        self.failures += 1
        raise LoreError(f"lore {where}: {last} ({tries} attempt{'s' if tries > 1 else ''})")


def _where(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass
class Entry:
    """One search result: a message as the Atom feed describes it."""

    msgid: str
    subject: str
    author: str
    email: str
    updated: str
    in_reply_to: str | None = None
    list: str = ""


@dataclass
class Lore:
    """Search and fetch on one public-inbox base URL (``https://lore.kernel.org``)."""

    base: str
    session: PoliteSession = field(default_factory=PoliteSession)

    def inbox_url(self, inbox: str) -> str:
        return f"{self.base.rstrip('/')}/{inbox.strip('/')}"

    def search(self, inbox: str, query: str, max_results: int = 1000) -> list[Entry]:
        """Every result of ``query`` (newest first), following pages."""
        out: list[Entry] = []
        seen: set[str] = set()
        offset = 0
        while len(out) < max_results:
            params = {"q": query, "x": "A"}
            if offset:
                params["o"] = str(offset)
            resp = self.session.get(self.inbox_url(inbox) + "/", params=params)
            if resp.status_code == 404:
                return out  # public-inbox: no results (or no such inbox)
            if resp.status_code != 200:
                raise LoreError(f"lore {_where(resp.url)}: HTTP {resp.status_code}")
            try:
                page = parse_atom(resp.content, inbox)
            except LoreError:
                if offset:  # public-inbox answers a page past the end with a bare "</feed>"
                    break
                raise
            fresh = [e for e in page if e.msgid not in seen]
            if not fresh:
                break
            seen.update(e.msgid for e in fresh)
            out += fresh
            offset += len(page)
        return out[:max_results]


def _msgid_from_url(href: str | None) -> str | None:
    if not href:
        return None
    path = urllib.parse.urlsplit(href).path.rstrip("/")
    last = path.rsplit("/", 1)[-1]
    return urllib.parse.unquote(last) or None


def parse_atom(data: bytes, inbox: str = "") -> list[Entry]:
    """public-inbox search results (``x=A``) -> entries; bad XML is a LoreError."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise LoreError(f"lore answered with unreadable Atom: {exc}") from None
    out = []
    for entry in root.iter(f"{ATOM}entry"):
        link = entry.find(f"{ATOM}link")
        msgid = _msgid_from_url(link.get("href") if link is not None else None)
        if not msgid:
            continue
        irt = entry.find(f"{THR}in-reply-to")
        author = entry.find(f"{ATOM}author")
        out.append(Entry(
            msgid=msgid,
            subject=" ".join((entry.findtext(f"{ATOM}title") or "").split()),
            author=(author.findtext(f"{ATOM}name") or "") if author is not None else "",
            email=(author.findtext(f"{ATOM}email") or "") if author is not None else "",
            updated=entry.findtext(f"{ATOM}updated") or "",
            in_reply_to=_msgid_from_url(irt.get("href")) if irt is not None else None,
            list=inbox,
        ))
    return out
