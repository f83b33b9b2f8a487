"""A bot state for the web pages' tests, made the real way: the samples plus
hostile and broken series in a real public-inbox (tests/pilore.py), one run
of the real bot, a real SMTP server that hangs up on the first mail (so one
delivery needs a human). Shared by tests/test_web.py and
tests/test_web_browser.py (one module-scoped state each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from reviewer import cli
from tests import botkit
from tests.conftest import require_system
from tests.lore_server import messages, sample_bytes
from tests.pilore import LoreServer

HOSTILE_SUBJECT = "<script>alert(1)</script> \"><img src=x onerror=alert(2)>"
HOSTILE_NAME = "\"><img src=x onerror=alert(4)>"
HOSTILE_EXCERPT = "/* </pre><script>alert(3)</script> */"
HOSTILE_MSGID = "hostile-1@example.org"
BROKEN_MSGID = "never-arrived-1@example.org"  # the cover the orphan replies to
SAMPLES = ["01-sgx-xcr0-abi.mbox", "02-add-adjustment.mbox", "03-remove-adjustment.mbox",
           "05-enable-cap-reject.mbox", "06-advertise-feature.mbox", "07-runtime-refactor.mbox",
           "08-not-kvm.mbox", "09-v1-v2-thread.mbox"]
WAITING_ROOT = "20250114112009.1207335-1-priya.raman@example.com"  # sample 04 without its patch 2
V2_ROOT = "20241001074012.1033872-1-a.novak@example.cz"  # sample 09's v2


def hostile() -> bytes:
    """Sample 02 from a stranger: hostile subject, name and changed line."""
    raw = sample_bytes("02-add-adjustment.mbox").decode()
    raw = re.sub(r"Subject: .*\n .*\n", f"Subject: [PATCH] KVM: x86: {HOSTILE_SUBJECT}\n", raw, count=1)
    raw = raw.replace("From: Rasmus Lindqvist <r.lindqvist@example.org>",
                      f"From: \"{HOSTILE_NAME.replace(chr(34), chr(92) + chr(34))}\" <mallory@example.org>")
    raw = raw.replace("<20241119130352.88213-1-r.lindqvist@example.org>", f"<{HOSTILE_MSGID}>")
    raw = raw.replace("cpuid_entry_clear(best, X86_FEATURE_AVX512F);",
                      f"cpuid_entry_clear(best, X86_FEATURE_AVX512F); {HOSTILE_EXCERPT}")
    return raw.encode()


def broken() -> bytes:
    """Sample 03 as patch 2/2 of a series whose cover and patch 1 never
    reached the list (no Message-ID of its own): its thread cannot be
    fetched, so the bot records it as failed."""
    raw = sample_bytes("03-remove-adjustment.mbox").decode()
    head, _, body = raw.partition("\n\n")
    kept = [ln for ln in re.split(r"\n(?![ \t])", head)
            if not ln.lower().startswith(("message-id:", "subject:", "in-reply-to:", "references:"))]
    kept += ["Subject: [PATCH 2/2] KVM: x86: an orphaned second half",
             f"In-Reply-To: <{BROKEN_MSGID}>", f"References: <{BROKEN_MSGID}>"]
    return ("\n".join(kept) + "\n\n" + body).encode()


@dataclass
class BotState:
    root: Path
    config: str
    state: Path
    lore: str


def build(root: Path) -> BotState:
    require_system("public-inbox", "public-inbox-httpd")
    server = LoreServer(root / "lore")
    server.init()
    incomplete = messages(sample_bytes("04-check-cpuid-einval.mbox"))[:2]
    server.import_mbox(sample_bytes(*SAMPLES) + b"".join(b"From x@y Thu Jan  1 00:00:00 1970\n" + m + b"\n"
                                                         for m in [*incomplete, hostile(), broken()]))
    server.start()
    sink, controller = botkit.start_smtp()
    sink.hang_ups = 1  # the first mail may or may not have gone out: a human must say
    try:
        cfg = botkit.config(root, server.base, controller.port)
        with pytest.MonkeyPatch.context() as mp:
            home = root / "home"
            home.mkdir()
            mp.setenv("HOME", str(home))
            mp.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
            mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
            mp.setenv("XDG_CACHE_HOME", str(home / ".cache"))
            assert cli.main(["bot", "run", "--config", cfg, "--once"]) == 0
    finally:
        controller.stop()
        server.stop()
    return BotState(root, cfg, root / "bot.sqlite", server.base)


def serve(st: BotState, log: Path) -> tuple[str, subprocess.Popen]:
    """``kvm-review bot web`` as a user starts it, on a free port; its log
    (one line a request) goes to ``log``. Returns its URL and process."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "reviewer", "bot", "--config", st.config, "web",
                                 "--listen", "127.0.0.1:0"], stderr=err,
                                env=dict(os.environ, HOME=str(st.root / "home")))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"read-only on (http://127\.0\.0\.1:\d+/)\n", log.read_text())
        if m:
            return m[1], proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"bot web did not start: {log.read_text()[-500:]}")
