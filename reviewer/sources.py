"""Inputs -> mail messages: mbox, maildir, patch files, stdin, git range, lore.

Whatever the user points at becomes a list of ``EmailMessage``; threading is
left to :mod:`reviewer.b4glue`.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from reviewer import limits
from reviewer.errors import InputError

_MBOX_FROM = re.compile(rb"^From [^\n]*\n", re.M)
_MSGID_RE = re.compile(r"^<?([^<>\s@/]+@[^<>\s/]+)>?$")
_URL_RE = re.compile(r"^https?://[^/]+/(?:[^/]+/)*?([^/@]+@[^/]+?)/?(?:[a-zA-Z0-9.]*)?$")
_HEADER_RE = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*:", re.M)


@dataclass(frozen=True)
class Remote:
    """A Message-ID to fetch from lore (from a bare id or a lore URL)."""

    msgid: str
    base_url: str | None = None


def parse_remote(arg: str) -> Remote | None:
    """A Message-ID or lore URL, else None."""
    url = _URL_RE.match(arg)
    if url:
        msgid = url.group(1).replace("%40", "@")
        base = arg[: arg.index(url.group(1))].rstrip("/")
        return Remote(msgid, base)
    match = _MSGID_RE.match(arg)
    if match and not os.path.exists(arg):
        return Remote(match.group(1))
    return None


def split_mbox(data: bytes) -> list[bytes]:
    """Split an mboxo/mboxrd blob (or a single message) into messages."""
    if not data.startswith(b"From "):
        return [data]
    starts = [m.start() for m in _MBOX_FROM.finditer(data)
              if m.start() == 0 or data.endswith((b"\n\n", b"\r\n\r\n"), 0, m.start())]
    if not starts:  # "From " and no line end: not an mbox, one (bad) message
        return [data]
    chunks = []
    for start, end in zip(starts, starts[1:] + [len(data)]):
        chunk = data[start:end]
        chunk = chunk[chunk.index(b"\n") + 1:]
        chunks.append(chunk.replace(b"\n>From ", b"\nFrom "))
    return chunks


def _messages(data: bytes, name: str) -> list[EmailMessage]:
    from reviewer import b4glue

    if not data.strip():
        raise InputError(f"{name}: empty input")
    if len(data) > limits.MAX_INPUT_BYTES:
        raise InputError(f"{name}: input larger than {limits.MAX_INPUT_BYTES >> 20} MiB")
    msgs = []
    for n, raw in enumerate(split_mbox(data), 1):
        head = raw.lstrip(b"\r\n")[:1000]
        if not _HEADER_RE.match(head):
            raise InputError(f"{name}: not a mail or mbox (no headers at the start of a message)")
        problem = limits.problem(raw)
        if problem:
            raise InputError(f"{name}: message {n}: {problem}")
        msg = b4glue.parse_bytes(raw)
        if msg.defects and not msg.keys():
            raise InputError(f"{name}: cannot parse mail headers")
        b4glue.neutralise_headers(msg)
        _ensure_ids(msg, raw)
        msgs.append(msg)
    return msgs


def _ensure_ids(msg: EmailMessage, raw: bytes) -> None:
    """git format-patch output has no Message-ID: give it a stable one."""
    if not str(msg.get("Message-ID", "")).strip("<> \t"):
        digest = hashlib.sha1(raw).hexdigest()[:20]
        del msg["Message-ID"]  # an empty one may be there
        msg["Message-ID"] = f"<{digest}@kvm-review.local>"
    if msg.get("Subject") is None:
        msg["Subject"] = "(no subject)"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None


def _is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def from_path(arg: str) -> list[EmailMessage]:
    if arg == "-":
        return _messages(sys.stdin.buffer.read(), "stdin")
    path = Path(arg)
    if path.is_dir():
        if _is_maildir(path):
            files = sorted(p for sub in ("cur", "new") for p in (path / sub).iterdir() if p.is_file())
        else:
            files = sorted(p for p in path.iterdir() if p.suffix in (".patch", ".eml", ".mbox"))
        if not files:
            raise InputError(f"{arg}: no mail or patch files in this directory")
        return [m for p in files for m in _messages(_read(p), str(p))]
    if not path.exists():
        raise InputError(f"{arg}: no such file, and not a Message-ID or lore URL")
    return _messages(_read(path), arg)


def from_git(repo: str, rev_range: str) -> list[EmailMessage]:
    """Commits in ``rev_range`` of ``repo``, as git format-patch prints them."""
    if ".." not in rev_range or rev_range.startswith("-"):
        raise InputError(f"{rev_range}: not a git range (expected A..B)")
    cmd = ["git", "-C", repo, "format-patch", "--stdout", "--no-signature", rev_range, "--"]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)
    except OSError as exc:
        raise InputError(f"cannot run git: {exc.strerror}") from None
    if proc.returncode:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"git format-patch {rev_range}: {err[0] if err else 'failed'}")
    if not proc.stdout.strip():
        raise InputError(f"{rev_range}: no commits in this range")
    return _messages(proc.stdout, rev_range)


def gather(inputs: list[str]) -> list[EmailMessage]:
    """All local inputs, concatenated (remote ones are fetched elsewhere)."""
    return [m for arg in inputs for m in from_path(arg)]
