"""A real lore for tests: the ``lore_server`` fixture, a public-inbox
(tests/pilore.py, shared with bench/run.py --bot) under the test's tmp
directory, filled from the samples."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLES, require_system
from tests.pilore import INBOX, LIST_ADDR, LoreServer

__all__ = ["INBOX", "LIST_ADDR", "LoreServer", "lore_server", "messages", "sample_bytes"]


def sample_bytes(*names: str) -> bytes:
    return b"".join((SAMPLES / n).read_bytes().rstrip(b"\n") + b"\n\n" for n in names)


def messages(data: bytes) -> list[bytes]:
    """An mboxo blob split into messages (envelope lines dropped)."""
    from reviewer.sources import split_mbox

    return split_mbox(data)


@pytest.fixture
def lore_server(tmp_path):
    """A running, empty-or-filled public-inbox: call ``.import_mbox`` or
    ``.deliver`` (before or after ``.start``)."""
    require_system("public-inbox", "public-inbox-httpd")
    server = LoreServer(tmp_path / "lore")
    server.init()
    yield server
    server.stop()
