"""kvm-review review MSGID|URL against a real public-inbox on 127.0.0.1, and
the polite HTTP session (rate limit, retries, Retry-After) against small
local servers that misbehave on purpose."""

from __future__ import annotations

import gzip
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reviewer import lore
from reviewer.cli import main
from tests.lore_server import lore_server, sample_bytes  # noqa: F401

V2_PATCH = "20241001074013.1033872-2-a.novak@example.cz"


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setenv("KVM_REVIEW_LORE_RATE", "0")
    monkeypatch.setenv("KVM_REVIEW_LORE_BACKOFF", "0.01")
    monkeypatch.setenv("KVM_REVIEW_LORE_RETRIES", "2")
    monkeypatch.setenv("KVM_REVIEW_LORE_TIMEOUT", "2")


@pytest.fixture
def served(lore_server, fast, tmp_path):  # noqa: F811
    lore_server.import_mbox(sample_bytes("01-sgx-xcr0-abi.mbox", "09-v1-v2-thread.mbox"))
    lore_server.start()
    return lore_server


def midmask(url: str) -> None:
    import os
    from pathlib import Path

    gitconfig = Path(os.environ["GIT_CONFIG_GLOBAL"])
    gitconfig.write_text(gitconfig.read_text() + f"[b4]\n\tmidmask = {url}/%s\n")


def review_json(capsys, *args) -> tuple[int, dict | None, str]:
    capsys.readouterr()
    rc = main(["review", *args, "--format", "json", "--fail-on", "never"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def test_review_by_msgid_uses_b4_midmask(served, capsys):
    midmask(served.url)
    rc, report, _ = review_json(capsys, V2_PATCH)
    assert rc == 0
    assert report["series"]["revision"] == 2 and report["series"]["subject"].endswith("MSR_IA32_POWER_CTL")


def test_review_by_url(served, capsys):
    rc, report, _ = review_json(capsys, f"{served.url}/20230503184218.2961044-2-kgallagher@example.com/")
    assert rc == 0 and report["series"]["subject"] == "KVM: x86: SGX vs. XCR0 cleanups"


def test_lore_option_overrides_midmask(served, capsys):
    midmask("http://127.0.0.1:9/nowhere")
    rc, report, _ = review_json(capsys, V2_PATCH, "--lore", served.url)
    assert rc == 0 and report["series"]["revision"] == 2


def test_cache_and_no_cache(served, capsys):
    midmask(served.url)
    assert review_json(capsys, V2_PATCH)[0] == 0
    served.stop()
    assert review_json(capsys, V2_PATCH)[0] == 0  # b4's cache
    rc, _, err = review_json(capsys, V2_PATCH, "--no-cache")
    assert rc == 2 and err.count("\n") == 1 and "connection refused (3 attempts)" in err


def test_unknown_msgid_is_one_line(served, capsys):
    rc, _, err = review_json(capsys, "no-such-message@example.org", "--lore", served.url)
    assert rc == 2
    assert err == "kvm-review: error: cannot fetch no-such-message@example.org: not found on the lore server\n"


def test_timeout_is_one_line(fast, capsys, monkeypatch):
    monkeypatch.setenv("KVM_REVIEW_LORE_TIMEOUT", "0.3")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        rc, _, err = review_json(capsys, V2_PATCH, "--lore", f"http://127.0.0.1:{silent.getsockname()[1]}/kvm")
    finally:
        silent.close()
    assert rc == 2 and err.count("\n") == 1 and err.rstrip().endswith("timed out (3 attempts)")


class Flaky(BaseHTTPRequestHandler):
    """Answers 503 (Retry-After: 0) ``fail`` times, then the thread mbox."""

    fail = 2
    seen: list = []

    def do_GET(self):  # noqa: N802
        Flaky.seen.append(dict(self.headers))
        if len(Flaky.seen) <= Flaky.fail:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = gzip.compress(sample_bytes("09-v1-v2-thread.mbox"))
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    Flaky.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_5xx_retried_then_served(flaky, fast, capsys):
    Flaky.fail = 2
    rc, report, _ = review_json(capsys, V2_PATCH, "--lore", f"http://127.0.0.1:{flaky.server_port}/kvm")
    assert rc == 0 and report["series"]["revision"] == 2
    assert len(Flaky.seen) == 3
    assert Flaky.seen[0]["User-Agent"].startswith("kvm-review/") and "mailto:" in Flaky.seen[0]["User-Agent"]
    assert "gzip" in Flaky.seen[0]["Accept-Encoding"]


def test_5xx_gives_up_with_one_line(flaky, fast, capsys):
    Flaky.fail = 100
    rc, _, err = review_json(capsys, V2_PATCH, "--no-cache", "--lore", f"http://127.0.0.1:{flaky.server_port}/kvm")
    assert rc == 2 and err.count("\n") == 1 and err.rstrip().endswith("HTTP 503 (3 attempts)")
    assert len(Flaky.seen) == 3


def test_rate_limit_backoff_and_retry_after():
    slept: list[float] = []
    now = [0.0]
    session = lore.PoliteSession(lore.Policy(rate=2, retries=3, backoff=1.0), sleep=slept.append,
                                 clock=lambda: now[0])
    session._wait_turn()
    session._wait_turn()
    assert slept == [0.5]  # two a second
    assert session._delay(0, 7.0) == 7.0  # Retry-After wins
    assert session._delay(0, 10_000.0) == lore.MAX_RETRY_AFTER
    for attempt in range(4):
        base = min(60.0, 2 ** attempt)
        assert base / 2 <= session._delay(attempt, None) <= base  # exponential, with jitter
    assert lore._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert lore._retry_after("12") == 12.0


def test_search_atom_from_real_server(served):
    client = lore.Lore(served.base, lore.PoliteSession(lore.Policy(rate=0)))
    entries = client.search("kvm", "dfn:arch/x86/kvm/x86.c")
    by_id = {e.msgid: e for e in entries}
    assert V2_PATCH in by_id
    assert by_id[V2_PATCH].in_reply_to == "20241001074012.1033872-1-a.novak@example.cz"
    assert by_id[V2_PATCH].subject.startswith("[PATCH v2 1/2]") and by_id[V2_PATCH].email == "a.novak@example.cz"


def test_b4_series_check_fetches_the_thread_of_the_cover(served, tmp_path):
    """b4 0.16's review-series-check-cmd pipes only the cover letter; we fetch
    its thread from lore (b4.midmask) and review the series behind it."""
    import sys
    from pathlib import Path

    from b4.review import checks

    from reviewer import sources

    midmask(served.url)
    cover = sources._messages(sample_bytes("01-sgx-xcr0-abi.mbox"), "sample")[0]
    assert cover["Subject"].startswith("[PATCH v2 0/3]")
    cmd = f"{Path(sys.executable).parent / 'kvm-review'} check --stdin --format b4-check"
    (result,) = checks.run_series_checks(("id", cover), [cmd], str(tmp_path))
    assert (result["tool"], result["status"], result["summary"]) == ("kvm-review", "warn", "3 infos")
    assert "arch/x86/kvm/cpuid.c:330 (kvm_vcpu_after_set_cpuid()): info: cpuid-adjust-removed" in \
        result["details"]
