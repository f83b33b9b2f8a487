"""Patchwork checks against a small local HTTP server that implements the two
endpoints as Patchwork's REST API 1.2 documents them (``GET /api/1.2/patches/
?project=&msgid=``, ``POST /api/1.2/patches/ID/checks/`` with token auth,
201 on success). It is NOT Patchwork: only those two endpoints, no database."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from reviewer import bot, cli
from reviewer.patchwork import Patchwork, PatchworkError
from tests.botkit import PW_TOKEN, config
from tests.lore_server import lore_server, sample_bytes  # noqa: F401

PATCHES = {("kvm", "20241119130352.88213-1-r.lindqvist@example.org"): 101,
           ("kvm", "20230503184218.2961044-2-kgallagher@example.com"): 201,
           ("kvm", "20230503184219.2961044-3-kgallagher@example.com"): 202,
           ("kvm", "20230503184220.2961044-4-kgallagher@example.com"): 203}


class FakePatchwork(BaseHTTPRequestHandler):
    checks: list = []
    auth: list = []

    def _json(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/api/1.2/patches/":
            return self._json(404, {"detail": "Not found."})
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        pid = PATCHES.get((q.get("project"), q.get("msgid")))
        return self._json(200, [{"id": pid, "msgid": f"<{q['msgid']}>"}] if pid else [])

    def do_POST(self):  # noqa: N802
        parts = urlsplit(self.path).path.strip("/").split("/")
        if parts[:3] != ["api", "1.2", "patches"] or parts[4:] != ["checks"]:
            return self._json(404, {"detail": "Not found."})
        FakePatchwork.auth.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") != f"Token {PW_TOKEN}":
            return self._json(403, {"detail": "Authentication credentials were not provided."})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("state") not in ("pending", "success", "warning", "fail"):
            return self._json(400, {"state": ["not a valid choice"]})
        FakePatchwork.checks.append(dict(body, patch=int(parts[3])))
        return self._json(201, dict(body, id=len(FakePatchwork.checks)))

    def log_message(self, *args):
        pass


@pytest.fixture
def patchwork():
    FakePatchwork.checks, FakePatchwork.auth = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePatchwork)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_find_and_post(patchwork):
    pw = Patchwork(patchwork, "kvm", PW_TOKEN)
    assert pw.find_patch("<20241119130352.88213-1-r.lindqvist@example.org>") == 101
    assert pw.find_patch("unknown@example.org") is None
    pw.post_check(101, "pass", "all good", "https://example.org/r/1")
    assert FakePatchwork.checks == [{"state": "success", "context": "kvm-review", "description": "all good",
                                     "target_url": "https://example.org/r/1", "patch": 101}]


def test_bad_token_error_has_no_token(patchwork):
    with pytest.raises(PatchworkError) as err:
        Patchwork(patchwork, "kvm", "wrong-" + PW_TOKEN).post_check(101, "warning", "x")
    assert "HTTP 403" in str(err.value) and PW_TOKEN not in str(err.value)
    assert "Patchwork(" in repr(Patchwork(patchwork, "kvm", PW_TOKEN)) and PW_TOKEN not in repr(
        Patchwork(patchwork, "kvm", PW_TOKEN))


def test_bot_posts_one_check_per_patch(lore_server, patchwork, tmp_path, capsys):  # noqa: F811
    lore_server.import_mbox(sample_bytes("01-sgx-xcr0-abi.mbox", "02-add-adjustment.mbox"))
    lore_server.start()
    cfg = config(tmp_path, lore_server.base, 1, delivery__smtp=False, delivery__outbox="", delivery__patchwork=True,
                 patchwork__url=patchwork, patchwork__project="kvm", patchwork__token=PW_TOKEN,
                 patchwork__target_url="https://ci.example.org/kvm-review/{msgid}")
    assert cli.main(["bot", "run", "--config", cfg, "--once"]) == 0
    by_patch = {c["patch"]: c for c in FakePatchwork.checks}
    assert sorted(by_patch) == [101, 201, 202, 203]
    assert by_patch[101]["state"] == "warning" and "cpuid-adjust-added" in by_patch[101]["description"]
    assert by_patch[201]["state"] == "success"
    assert by_patch[101]["target_url"] == ("https://ci.example.org/kvm-review/"
                                           "20241119130352.88213-1-r.lindqvist@example.org")
    assert all(c["context"] == "kvm-review" for c in FakePatchwork.checks)
    assert cli.main(["bot", "run", "--config", cfg, "--once"]) == 0
    assert len(FakePatchwork.checks) == 4  # once each
    out, err = capsys.readouterr()
    assert PW_TOKEN not in out + err and PW_TOKEN.encode() not in (tmp_path / "bot.sqlite").read_bytes()


def test_state_mapping():
    assert bot.Bot is not None
    from reviewer.patchwork import state_for
    assert state_for(["info"]) == "pass" and state_for(["info", "warning"]) == "warning"
    assert state_for(["error", "warning"]) == "fail"
