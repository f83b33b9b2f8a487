"""The bot survives (issue 8): a malformed message is logged in one line and
skipped while the rest is reviewed, and is not retried forever; a state file
that cannot be written (disk full, read-only) is one line, exit 2, and the
file keeps its last committed state; SIGTERM stops it between steps (exit 0).
A real public-inbox (tests/lore_server.py) and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from reviewer import bot, cli
from reviewer import state as statemod
from tests.botkit import SMTP_PASS, config, start_smtp
from tests.conftest import ROOT
from tests.lore_server import lore_server, messages, sample_bytes  # noqa: F401

BAD = ROOT / "tests" / "bad"
GOOD = {"20250114112009.1207335-1-priya.raman@example.com",  # 04: cover letter
        "20241022011534.553190-1-hwang.jiho@example.com"}  # 05: single patch


@pytest.fixture
def smtp():
    sink, controller = start_smtp()
    yield sink, controller.port
    controller.stop()


def run_bot(cfg: str, action: str = "run") -> int:
    return cli.main(["bot", action, "--config", cfg] + (["--once"] if action == "run" else []))


def no_secret(*texts) -> None:
    for text in texts:
        assert SMTP_PASS not in (text if isinstance(text, str) else text.decode(errors="replace"))


def orphan_patch() -> bytes:
    """Patch 2/2 of a series whose patch 1 and cover never reached the list;
    no Message-ID of its own, and a header of raw garbage bytes."""
    body = messages(sample_bytes("05-enable-cap-reject.mbox"))[0]
    head, _, rest = body.partition(b"\n\n")
    lines = [ln for ln in head.split(b"\n") if not ln.lower().startswith((b"message-id:", b"subject:"))]
    lines += [b"Subject: [PATCH 2/2] KVM: x86: Orphaned second half",
              b"In-Reply-To: <never-arrived-1@example.org>", b"References: <never-arrived-1@example.org>",
              b"X-Garbage: \xff\xfe\x01 =?utf-8?q?=0D=0ABcc:_evil@example.org?= \x00"]
    return b"From git@z Thu Jan  1 00:00:00 1970\n" + b"\n".join(lines) + b"\n\n" + rest + b"\n"


def nested_reply(depth: int = 40) -> bytes:
    """A reply in sample 05's thread whose MIME parts nest ``depth`` deep."""
    head = (b"From git@z Thu Jan  1 00:00:00 1970\nFrom: Mallory <mallory@example.net>\n"
            b"To: kvm@vger.kernel.org\nSubject: Re: [PATCH] KVM: x86: nested\n"
            b"Date: Tue, 22 Oct 2024 09:00:00 +0900\nMessage-ID: <nested-1@example.net>\n"
            b"In-Reply-To: <20241022011534.553190-1-hwang.jiho@example.com>\n"
            b"References: <20241022011534.553190-1-hwang.jiho@example.com>\nMIME-Version: 1.0\n")
    inner = b"".join(b'Content-Type: multipart/mixed; boundary="n%d"\n\n--n%d\n' % (i, i) for i in range(depth))
    return (head + inner + b"Content-Type: text/plain\n\nhello\n"
            + b"".join(b"--n%d--\n" % i for i in reversed(range(depth))) + b"\n")


def test_unreadable_input_recorded_once_others_reviewed(lore_server, smtp, tmp_path, capsys):  # noqa: F811
    """A series with one patch that cannot be parsed is reviewed, replied to
    on its good patches, its bad one recorded; a patch alone that cannot be
    parsed likewise (nothing to reply to); a mail over the MIME limits is left
    out of its thread and recorded; a thread that cannot be fetched fails."""
    sink, port = smtp
    lore_server.import_mbox((BAD / "series-malformed-patch.mbox").read_bytes().rstrip(b"\n") + b"\n\n"
                            + sample_bytes("05-enable-cap-reject.mbox")
                            + (BAD / "truncated-hunk.mbox").read_bytes().rstrip(b"\n") + b"\n\n" + orphan_patch())
    lore_server.deliver(nested_reply())
    lore_server.start()
    cfg = config(tmp_path, lore_server.base, port)
    assert run_bot(cfg) == 0
    err = capsys.readouterr().err
    failed = [ln for ln in err.splitlines() if " failed v" in ln]
    assert len(failed) == 1, err
    assert "<never-arrived-1@example.org>: cannot fetch never-arrived-1@example.org" in failed[0]
    assert "kvm-review bot: thread of <20241022011534.553190-1-hwang.jiho@example.com>: message 2 skipped: " \
           "MIME parts nested deeper than 16 levels" in err.splitlines()
    assert "Traceback" not in err
    # the good patches of 04 (cover letter, patch 1) and 05 answered; not 04's patch 2, nor the lone bad patch
    replied = set(sink.in_reply_to())
    assert GOOD <= replied
    assert "20250114112010.1207335-2-priya.raman@example.com" in replied
    assert not {"20250114112011.1207335-3-priya.raman@example.com",
                "20241119130352.88213-1-r.lindqvist@example.org"} & replied
    sent = sink.msgids()
    # not retried: a second run fetches nothing, logs nothing, sends nothing
    assert run_bot(cfg) == 0
    again = capsys.readouterr().err
    assert "failed" not in again and "series to look at" not in again
    assert sink.msgids() == sent
    assert run_bot(cfg, "status") == 0
    out = capsys.readouterr().out
    assert "series: failed 1, reviewed 3" in out
    assert "patch 2 could not be parsed: malformed diff: Hunk diff line expected: @@ -213,6 +235,8 @@ int main(void)" \
        in out
    assert "patch 1 could not be parsed: malformed diff: Hunk is shorter than expected" in out
    assert "message 2 skipped: MIME parts nested deeper than 16 levels" in out
    no_secret(err, again, out)


def _digest(db_path) -> tuple:
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return tuple(tuple(db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall())
                     for t in ("messages", "series", "deliveries"))
    finally:
        db.close()


def test_disk_full_is_one_line_and_rolls_back(lore_server, smtp, tmp_path, capsys, monkeypatch):  # noqa: F811
    """SQLite's own SQLITE_FULL ("database or disk is full"), reached by capping
    the file's size (max_page_count) just before the second series is recorded."""
    sink, port = smtp
    lore_server.import_mbox(sample_bytes("02-add-adjustment.mbox", "04-check-cpuid-einval.mbox",
                                         "05-enable-cap-reject.mbox"))
    lore_server.start()
    cfg = config(tmp_path, lore_server.base, port)
    real_finish = statemod.State.finish
    calls = []
    snapshot = []

    def finish(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            snapshot.append(_digest(self.path))
            pages = self.db.execute("PRAGMA page_count").fetchone()[0]
            self.db.execute(f"PRAGMA max_page_count = {pages}")
        return real_finish(self, *args, **kwargs)

    monkeypatch.setattr(statemod.State, "finish", finish)
    assert run_bot(cfg) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"kvm-review: error: {tmp_path / 'bot.sqlite'}: cannot write the bot's state: " \
                      "database or disk is full"
    assert not any("Traceback" in ln or "internal error" in ln for ln in err)
    assert _digest(tmp_path / "bot.sqlite") == snapshot[0]  # the refused transaction left nothing behind
    first = sink.msgids()
    monkeypatch.setattr(statemod.State, "finish", real_finish)
    assert run_bot(cfg) == 0  # space again: the rest is reviewed, nothing sent twice
    sent = sink.msgids()
    assert sent[:len(first)] == first and len(sent) == len(set(sent))
    assert {"20241119130352.88213-1-r.lindqvist@example.org"} | GOOD <= set(sink.in_reply_to())
    no_secret(*err)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory for the state that can be made read-only: chmod for a
    normal user; root ignores modes, so a small tmpfs remounted read-only."""
    where = tmp_path / "state"
    where.mkdir()
    if os.geteuid() != 0:
        def seal():
            for p in where.iterdir():
                p.chmod(0o444)
            where.chmod(0o555)
        yield where, seal
        where.chmod(0o755)
        return
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True)
    if proc.returncode:
        pytest.skip(f"root, but cannot mount a tmpfs: {proc.stderr.decode(errors='replace').strip()}")

    def seal():
        for p in where.iterdir():
            p.chmod(0o444)
        where.chmod(0o555)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
    try:
        yield where, seal
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(where)], check=False)
            pytest.fail("the state directory was still in use: a connection was left open")


def test_read_only_state_is_one_line_exit_2(lore_server, smtp, tmp_path, capsys, read_only_dir):  # noqa: F811
    sink, port = smtp
    where, seal = read_only_dir
    lore_server.import_mbox(sample_bytes("02-add-adjustment.mbox"))
    lore_server.start()
    cfg = config(tmp_path, lore_server.base, port, bot__state=str(where / "bot.sqlite"))
    assert run_bot(cfg) == 0
    sent = sink.msgids()
    seal()
    before = hashlib.sha256((where / "bot.sqlite").read_bytes()).hexdigest()
    lore_server.import_mbox(sample_bytes("05-enable-cap-reject.mbox"))  # new work: must be recorded
    capsys.readouterr()
    assert run_bot(cfg) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in ln or "internal error" in ln for ln in err)
    assert err[-1].startswith(f"kvm-review: error: {where / 'bot.sqlite'}: cannot ")
    assert err[-1].endswith("(read-only: the file or its directory cannot be written)"), err
    assert sink.msgids() == sent  # nothing sent that could not be recorded
    assert hashlib.sha256((where / "bot.sqlite").read_bytes()).hexdigest() == before
    assert run_bot(cfg, "status") in (0, 2)  # it reads, or says in one line why not; never a crash
    assert "Traceback" not in capsys.readouterr().err
    no_secret(*err)


def test_sigterm_stops_between_steps(lore_server, smtp, tmp_path, capsys):  # noqa: F811
    sink, port = smtp
    names = ["02-add-adjustment.mbox", "03-remove-adjustment.mbox", "04-check-cpuid-einval.mbox",
             "05-enable-cap-reject.mbox", "06-advertise-feature.mbox", "07-runtime-refactor.mbox"]
    lore_server.import_mbox(sample_bytes(*names))
    lore_server.start()
    slow = config(tmp_path, lore_server.base, port, lore__rate=4)  # 0.25 s a request: time to signal
    env = dict(os.environ)
    env.pop(bot.CRASH_ENV, None)
    proc = subprocess.Popen([sys.executable, "-m", "reviewer", "bot", "run", "--config", slow, "--once"],
                            env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("kvm-review bot: reviewed "):
            proc.send_signal(signal.SIGTERM)
            break
    _, rest = proc.communicate(timeout=60)
    lines += rest.splitlines(keepends=True)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "series left for the next run" in err and "Traceback" not in err
    reviewed = sum(1 for ln in lines if ln.startswith("kvm-review bot: reviewed "))
    assert 1 <= reviewed < len(names)
    db = sqlite3.connect(tmp_path / "bot.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert not db.execute("SELECT COUNT(*) FROM deliveries WHERE status = 'sending'").fetchone()[0]
    assert db.execute("SELECT COUNT(*) FROM series WHERE status = 'reviewed'").fetchone()[0] == reviewed
    db.close()
    first = sink.msgids()
    assert run_bot(config(tmp_path, lore_server.base, port)) == 0  # the rest, each reply once
    sent = sink.msgids()
    assert sent[:len(first)] == first and len(sent) == len(set(sent)) and len(sent) > len(first)
    no_secret(err)
