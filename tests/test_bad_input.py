"""Every file of tests/bad/ gives exactly what tests/bad/expected.toml says:
the exit status, the one stderr line (or none), the findings; no traceback."""

from __future__ import annotations

import email
import email.policy
import email.utils
import importlib.util
import json
import re
import time
import tomllib
from pathlib import Path

import pytest

from reviewer import cli

BAD = Path(__file__).resolve().parent / "bad"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
EXPECTED = tomllib.loads((BAD / "expected.toml").read_text(encoding="utf-8"))["files"]
CORPUS = sorted(p.name for p in BAD.iterdir() if p.name not in ("expected.toml", "make_corpus.py"))
# every header a reply of ours may carry
REPLY_HEADERS = {"from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references", "x-mailer",
                 "content-type", "content-transfer-encoding", "mime-version"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err
    return status, out, err


def test_every_file_has_an_expectation():
    assert CORPUS == sorted(EXPECTED), "tests/bad/ and expected.toml disagree"


def test_corpus_is_what_make_corpus_writes():
    spec = importlib.util.spec_from_file_location("make_corpus", BAD / "make_corpus.py")
    make_corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_corpus)
    written = make_corpus.corpus()
    assert sorted(written) == CORPUS
    for name, data in written.items():
        assert (BAD / name).read_bytes() == data, f"{name}: run tests/bad/make_corpus.py"


def _summary(finding: dict) -> str:
    where = f" {finding['file']}:{finding['line']}" if finding["file"] else ""
    return f"{finding['patch']} {finding['rule']}{where}"


@pytest.mark.parametrize("name", CORPUS)
def test_bad_input(name, capsys):
    want = EXPECTED[name]
    path = str(BAD / name)
    start = time.monotonic()
    status, out, err = run(capsys, "review", path, "--format", "json")
    elapsed = time.monotonic() - start
    assert status == want["exit"], err
    assert elapsed < want.get("max_seconds", 10)
    if "stderr" in want:
        assert err == want["stderr"].replace("{path}", path) + "\n"
        assert out == ""
        return
    assert err == ""
    report = json.loads(out)
    if "same_as" in want:
        status, plain, _ = run(capsys, "review", str(SAMPLES / want["same_as"]), "--format", "json")
        assert report["findings"] == json.loads(plain)["findings"]
    if "findings" in want:
        assert [_summary(f) for f in report["findings"]] == want["findings"]
    if "unparsed" in want:
        assert [f["message"] for f in report["findings"] if f["rule"] == "patch-unparsed"] == want["unparsed"]
        assert all(f["category"] == "process" and f["severity"] == "error" and f["file"] is None
                   for f in report["findings"] if f["rule"] == "patch-unparsed")
    else:
        assert "patch-unparsed" not in {f["rule"] for f in report["findings"]}
    if "patches" in want:
        assert report["series"]["patches"] == want["patches"]
    if "complete" in want:
        assert report["series"]["complete"] == want["complete"]


@pytest.mark.parametrize("name", [n for n in CORPUS if "email" in EXPECTED[n]])
def test_reply_carries_no_injected_header(name, capsys):
    want = EXPECTED[name]["email"]
    status, out, err = run(capsys, "review", str(BAD / name), "--format", "email")
    assert status == EXPECTED[name]["exit"] and err == ""
    messages = [m for m in re.split(r"(?m)^From kvm-review .*\n", out) if m.strip()]
    assert messages
    for raw in messages:
        head = raw.split("\n\n", 1)[0]
        assert "\r" not in head
        names = {line.split(":", 1)[0].lower() for line in head.split("\n") if line and line[0] not in " \t"}
        assert names <= REPLY_HEADERS, names - REPLY_HEADERS
        msg = email.message_from_string(raw, policy=email.policy.default)
        recipients = [a for _, a in email.utils.getaddresses(msg.get_all("To", []) + msg.get_all("Cc", []))]
        assert recipients == want["recipients"]
        assert "bcc" not in {k.lower() for k in msg.keys()}


@pytest.mark.parametrize("fmt", ["text", "checkpatch", "b4-check", "markdown", "email"])
@pytest.mark.parametrize("name", [n for n in CORPUS if "stderr" not in EXPECTED[n]])
def test_every_format_survives(name, fmt, capsys):
    status, out, err = run(capsys, "review", str(BAD / name), "--format", fmt)
    assert status == EXPECTED[name]["exit"]
    assert err == ""
