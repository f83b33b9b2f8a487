"""Limits on one raw mail, checked before anything parses it.

The stdlib's parser recurses once per nested MIME part (a few hundred levels
exhaust the stack), and every header field is parsed many times over by b4.
So each message is scanned first, as bytes: its size, its header fields
(all header blocks), its MIME parts and how deeply they nest. The scan
follows the parser's reading: a part's header block declares a multipart
boundary (or a ``message/*`` body, another header block) and a delimiter of
any open boundary starts the next part of that boundary, closing the parts
nested inside it.
"""

from __future__ import annotations

import email.message
import re

MAX_INPUT_BYTES = 256 * 1024 * 1024  # a whole input: a file, stdin, a git range, a thread
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADERS = 1000  # header fields in one message, every part's counted
MAX_PARTS = 256  # MIME parts in one message
MAX_DEPTH = 16  # multipart and message/* parts inside each other

# only a message that says "multipart" or "message/" can nest: the rest
# (git send-email's mails) need just the top header block counted
_MIME = re.compile(rb"(?i)^content-type:[ \t]*(?:\r?\n[ \t]+)?(?:multipart|message)/", re.M)
_FIELD = re.compile(rb"^[^ \t\r\n][^:\r\n]*:", re.M)
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")
_CONTENT_TYPE = re.compile(rb"(?is)^content-type:[ \t]*([!-~]+?)[ \t]*(?:;.*)?$")


def problem(raw: bytes) -> str | None:
    """What limit ``raw`` (one message) breaks, or None."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return f"message larger than {MAX_MESSAGE_BYTES >> 20} MiB"
    if not _MIME.search(raw):
        end = _END_OF_HEADERS.search(raw)
        head = raw[:end.start()] if end else raw
        if len(_FIELD.findall(head)) > MAX_HEADERS:
            return f"more than {MAX_HEADERS} header fields"
        return None
    return _scan(raw)


def _fields(block: list[bytes]) -> list[bytes]:
    """Header lines, continuation lines joined to their field."""
    fields: list[bytes] = []
    for line in block:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b" " + line.strip()
        else:
            fields.append(line)
    return fields


def _boundary(field: bytes) -> bytes | None:
    """A Content-Type field's boundary, read as the parser reads it (quoted,
    or RFC 2231's ``boundary*0=``): the stdlib's parameter parsing, on this
    one field."""
    header = email.message.Message()
    header["Content-Type"] = field.split(b":", 1)[1].strip().decode("ascii", "surrogateescape")
    boundary = header.get_boundary()
    return None if boundary is None else boundary.encode("utf-8", "surrogateescape").rstrip()


def _nesting(fields: list[bytes]) -> tuple[str, bytes | None]:
    """("multipart", boundary), ("message", None) or ("", None) for a header block."""
    for field in fields:
        match = _CONTENT_TYPE.match(field)
        if not match:
            continue
        kind = match.group(1).lower()
        if kind.startswith(b"multipart/"):
            boundary = _boundary(field)
            return ("multipart", boundary) if boundary else ("", None)
        if kind.startswith(b"message/") and kind != b"message/delivery-status":
            return "message", None
        return "", None
    return "", None


def _scan(raw: bytes) -> str | None:
    # the stack holds one entry per open level: a boundary, or None for a message/* body
    stack: list[bytes | None] = []
    headers = parts = 0
    block: list[bytes] | None = []  # the header block being read, None in a body
    for line in raw.split(b"\n"):
        line = line.rstrip(b"\r")
        if block is not None:
            if line:
                block.append(line)
                continue
            fields = _fields(block)
            headers += len(fields)
            if headers > MAX_HEADERS:
                return f"more than {MAX_HEADERS} header fields"
            kind, boundary = _nesting(fields)
            block = None
            if kind:
                stack.append(boundary)
                if len(stack) > MAX_DEPTH:
                    return f"MIME parts nested deeper than {MAX_DEPTH} levels"
                if kind == "message":
                    block = []  # the enclosed message's headers follow at once
            continue
        if not line.startswith(b"--"):
            continue
        text = line[2:].rstrip(b" \t")
        closing = text.endswith(b"--") and text[:-2] in stack
        name = text[:-2] if closing else text
        if name not in stack:
            continue
        while stack[-1] != name:  # a delimiter of an outer boundary ends the inner parts
            stack.pop()
        if closing:
            stack.pop()
            continue
        parts += 1
        if parts > MAX_PARTS:
            return f"more than {MAX_PARTS} MIME parts"
        block = []
    return None
