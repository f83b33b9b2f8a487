"""The bot's status pages (``kvm-review bot web`` / ``export-html``) on a state
made by the real bot against a real public-inbox (tests/webstate.py):
exact rows, states, findings, replies as sent, hostile mail shown as text,
404s, headers, read-only, static export."""

from __future__ import annotations

import collections
import html as htmlmod
import http.client
import io
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reviewer import bot, cli, pack, web, webdata
from reviewer.state import State
from tests import webstate
from tests.webstate import (
    BROKEN_MSGID,
    HOSTILE_EXCERPT,
    HOSTILE_MSGID,
    HOSTILE_NAME,
    HOSTILE_SUBJECT,
    V2_ROOT,
    WAITING_ROOT,
)

V1_ROOT = "20240910130244.720331-1-a.novak@example.cz"
# newest first: the order the bot recorded them in (all first seen in one poll)
ROWS = [
    ("KVM: x86: Validate writes to MSR_IA32_POWER_CTL", "v2", "2/2", "sent", "2 warning 1 info"),
    ("KVM: x86: SGX vs. XCR0 cleanups", "v2", "3/3", "reviewed", "3 info"),
    ("KVM: x86: an orphaned second half", "v1", "?/?", "error", "none"),
    (f"KVM: x86: {HOSTILE_SUBJECT}", "v1", "1/1", "sent", "3 warning 2 info"),
    ("KVM: x86: Advertise SRSO_USER_KERNEL_NO to userspace", "v1", "2/2", "reviewed", "2 info"),
    ("KVM: x86: Reject MAXPHYADDR > 52 in KVM_SET_CPUID2", "v1", "1/2", "waiting", "none"),
    ("KVM: VMX: Stop clearing RTM/HLE in guest CPUID when host TSX is off", "v1", "1/1", "sent",
     "2 warning 2 info"),
    ("KVM: x86: Clear AVX-512 in guest CPUID when XCR0 can't enable AVX-512 state", "v1", "1/1", "sent",
     "3 warning 2 info"),
    ("KVM: x86: Reject unknown values for KVM_CAP_EXIT_ON_EMULATION_FAILURE", "v1", "1/1", "sent",
     "2 warning 1 info"),
    ("KVM: x86: Use cpuid_entry_change() for runtime CPUID bits", "v1", "1/1", "reviewed", "1 info"),
    ("KVM: x86: Validate host-initiated writes to MSR_IA32_POWER_CTL", "v1", "2/2", "needs a human",
     "2 warning 1 info"),
]


class Page(HTMLParser):
    """The parts of a page the tests read: every tag, and the text of
    elements by ``tag.class``, ``tag`` or ``#id``."""

    VOID = {"meta", "link", "input", "br", "img", "line", "rect"}
    BLOCK = {"p", "li", "ul", "h1", "h2", "h3", "dt", "dd", "tr", "td", "th", "pre", "section", "article", "nav",
             "table", "figcaption", "br"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[tuple[str, list[str]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag in self.BLOCK:  # as a browser's innerText: blocks are apart
            self.handle_data(" ")
        if tag in self.VOID:
            return
        keys = [f"#{attrs['id']}"] if attrs.get("id") else []
        keys += [f"{tag}.{c}" for c in (attrs.get("class") or "").split()] + [tag]
        self._open.append((tag, keys))
        for key in keys:
            self.texts.setdefault(key, []).append("")

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                return

    def handle_data(self, data):
        for _, keys in self._open:
            for key in keys:
                self.texts[key][-1] += data

    def text(self, key: str) -> list[str]:
        return [" ".join(t.split()) for t in self.texts.get(key, [])]

    def hrefs(self) -> list[str]:
        return [a["href"] for tag, a in self.tags if tag == "a" and "href" in a]


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return webstate.build(tmp_path_factory.mktemp("webstate"))


@pytest.fixture
def site(state):
    return web.site_for(bot.load_config(state.config))


def get(site, path: str, **query) -> tuple[int, Page, str]:
    resp = web.respond(site, path, {k: [v] for k, v in query.items()})
    html = resp.body.decode()
    return resp.status, Page(html), html


def rows(page: Page) -> list[tuple]:
    cells = page.text("td")
    return [tuple(cells[i:i + 8]) for i in range(0, len(cells), 8)]


def no_markup_from_mail(page: Page) -> None:
    assert not [t for t, _ in page.tags if t in ("script", "img", "iframe", "object", "embed")]
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]


def test_list_page_newest_first_with_every_state(site, state):
    status, page, html = get(site, "/")
    assert status == 200
    got = rows(page)
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in got] == ROWS
    assert got[3][1] == f"{HOSTILE_NAME} mallory@example.org"
    assert got[5][1] == "Priya Raman priya.raman@example.com"
    assert page.text("a.current") == ["all 11"]
    assert page.text("nav.filters") == ["all 11 waiting 1 reviewed 3 sent 5 needs a human 1 error 1 skipped 0"]
    assert page.text("p.count") == ["11 series, newest first."]
    threads = [h for h in page.hrefs() if h.endswith("/T/")]
    assert threads[3] == f"{state.lore}/kvm/{HOSTILE_MSGID}/T/"
    assert threads[5] == f"{state.lore}/kvm/{WAITING_ROOT}/T/"
    assert [h for h in page.hrefs() if h.startswith("series-")][:3] == ["series-11.html", "series-10.html",
                                                                         "series-9.html"]
    # hostile text is text: escaped in the HTML, never markup
    no_markup_from_mail(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html


def test_chart_counts_every_finding_by_category(site, state):
    _, page, _ = get(site, "/")
    assert page.text("figcaption")[0].startswith("Findings per week (when the bot first saw the series), "
                                                 "29 in all; tallest week 29.")
    titles = [t for t in page.text("title") if t.startswith("week of ")]
    day = time.strftime("%Y-%m-%d", time.gmtime(webdata.week_start(time.time())))
    assert titles == [f"week of {day}: 5 cpuid-adjust", f"week of {day}: 3 userspace-reject",
                      f"week of {day}: 2 uapi", f"week of {day}: 4 docs", f"week of {day}: 7 selftests",
                      f"week of {day}: 6 changelog", f"week of {day}: 2 process"]
    # the same sums as the findings the bot recorded
    with sqlite3.connect(state.state) as db:
        recorded = collections.Counter(f["category"] for (text,) in db.execute("SELECT findings FROM series")
                                       for f in json.loads(text or "[]"))
    assert {t.split(": ")[1].split(" ")[1]: int(t.split(": ")[1].split(" ")[0]) for t in titles} == recorded


def test_chart_geometry():
    starts = [webdata.week_start(0) + i * webdata.WEEK for i in range(3)]
    counts = [{"cpuid-adjust": 2, "docs": 2}, {}, {"uapi": 1}]
    c = web.chart(webdata.Weekly(starts, counts), width=300, height=100, bar=20)
    assert [(b.x, b.y, b.height, b.title) for b in c.bars] == [
        (40, 50, 50, "week of 1969-12-29: 2 cpuid-adjust"), (40, 0, 50, "week of 1969-12-29: 2 docs"),
        (240, 75, 25, "week of 1970-01-12: 1 uapi")]
    assert (c.peak, c.total, c.labels) == (4, 5, [(50, "12-29"), (150, "01-05"), (250, "01-12")])
    assert webdata.week_start(1764633600.0 + 3 * 86400 + 5) == 1764547200.0  # Thu 2025-12-04 -> Mon 12-01


def test_filter_by_state(site):
    expect = {"waiting": [5], "needs-human": [10], "error": [2], "reviewed": [1, 4, 9], "sent": [0, 3, 6, 7, 8],
              "skipped": []}
    for state, indexes in expect.items():
        status, page, _ = get(site, f"/{state}.html")
        assert status == 200
        assert [r[0] for r in rows(page)] == [ROWS[i][0] for i in indexes], state
        assert page.text("a.current")[0].startswith(webdata.LABELS[state])
    _, page, _ = get(site, "/skipped.html")
    assert page.text("p.empty") == ["No series skipped."]


def test_search_by_subject_or_author(site):
    def found(q, path="/"):
        return [r[0] for r in rows(get(site, path, q=q)[1])]

    assert found("novak") == [ROWS[0][0], ROWS[10][0]]  # the address
    assert found("Novák") == [ROWS[0][0], ROWS[10][0]]  # the name
    assert found("CPUID BITS") == [ROWS[9][0]]  # subject, any case
    assert found("<script>") == [ROWS[3][0]]
    assert found("novak", "/sent.html") == [ROWS[0][0]]  # within a state
    assert found("%") == [] and found("X_R0") == []  # LIKE's wildcards are plain characters
    assert found("MSR_IA32") == [ROWS[0][0], ROWS[10][0]]
    status, page, html = get(site, "/", q="\"><script>alert(5)</script>")
    assert status == 200 and page.text("p.empty") == ["No series matching the search."]
    no_markup_from_mail(page)
    assert 'value="&#34;&gt;&lt;script&gt;alert(5)&lt;/script&gt;"' in html
    # the filters keep the search
    assert "needs-human.html?q=novak" in get(site, "/", q="novak")[1].hrefs()


def test_paged(site, monkeypatch):
    monkeypatch.setattr(webdata, "PAGE_SIZE", 4)
    _, page, _ = get(site, "/")
    assert [r[0] for r in rows(page)] == [r[0] for r in ROWS[:4]]
    assert page.text("nav.pages") == ["page 1 of 3 older →"]
    assert "index-2.html" in page.hrefs()
    _, page, _ = get(site, "/index-3.html")
    assert [r[0] for r in rows(page)] == [r[0] for r in ROWS[8:]]
    assert page.text("nav.pages") == ["← newer page 3 of 3"]
    assert get(site, "/index-4.html")[0] == 404
    _, page, _ = get(site, "/sent-2.html")
    assert [r[0] for r in rows(page)] == [ROWS[8][0]]
    assert "sent.html" in page.hrefs()
    _, page, _ = get(site, "/index-2.html", q="x86")
    assert "index.html?q=x86" in page.hrefs() and "index-3.html?q=x86" in page.hrefs()


def test_series_page_of_hostile_mail(site, state):
    status, page, html = get(site, "/series-8.html")
    assert status == 200
    no_markup_from_mail(page)
    assert page.text("span.subject") == [f"KVM: x86: {HOSTILE_SUBJECT}"]
    assert page.text("dd.author") == [f"{HOSTILE_NAME} <mallory@example.org>"]
    assert page.text("h3") == ["The series", f"1/1 KVM: x86: {HOSTILE_SUBJECT}"]
    findings = page.text("li.finding")
    assert [f.split(" This ")[0] for f in findings] == [
        "info docs-api-rst-untouched KVM's behaviour towards userspace changes but "
        "Documentation/virt/kvm/api.rst is not updated: document the new behaviour where the ioctl is described "
        "(KVM_SET_CPUID2's caveats, KVM_ENABLE_CAP, the quirks table).",
        "info selftests-missing The series changes KVM's behaviour towards userspace but adds no selftest under "
        "tools/testing/selftests/kvm/ (x86/cpuid_test.c and x86/set_sregs_test.c are the usual homes).",
        "warning changelog-abi-unacknowledged",
        "warning stable-on-abi-change",
        "warning cpuid-adjust-added kvm_vcpu_after_set_cpuid() arch/x86/kvm/cpuid.c:389"]
    excerpt = page.text("pre.excerpt")
    assert len(excerpt) == 1 and f"cpuid_entry_clear(best, X86_FEATURE_AVX512F); {HOSTILE_EXCERPT}" in excerpt[0]
    assert page.text("code.function") == ["kvm_vcpu_after_set_cpuid()"]
    assert "rule-cpuid-adjust-added.html" in page.hrefs()
    assert len(page.text("section.checklist")[0].split("[ ]")) == 4
    # the reply exactly as it went out (the outbox keeps it with CRLF)
    assert [a["class"] for tag, a in page.tags if tag == "pre"] == ["excerpt", "reply"]
    sent = re.findall(r'<pre class="reply">(.*?)</pre>', html, re.S)
    text = htmlmod.unescape(sent[0])
    msgid = re.search(r"^Message-ID: <(.+)>$", text, re.M)[1]
    assert (state.root / "outbox" / f"{msgid}.eml").read_bytes() == text.replace("\n", "\r\n").encode()
    assert page.text("td.dstatus") == ["sent", "sent"]


def test_series_page_needs_a_human_and_v2_comparison(site):
    _, page, _ = get(site, "/series-1.html")
    assert page.text("td.dstatus")[1].startswith("sending (needs a human: kvm-review bot resolve): SMTP 127.0.0.1")
    assert page.text("span.state") == ["needs a human"]
    assert page.text("code.msgid") == [f"<{V1_ROOT}>"]
    status, page, _ = get(site, "/series-11.html")
    assert status == 200 and page.text("code.msgid") == [f"<{V2_ROOT}>"]
    assert page.text("section.comparison") == [
        "Since v1 Resolved (0) none Remaining (2) changelog-abi-unacknowledged userspace-reject-msr in "
        "arch/x86/kvm/x86.c kvm_set_msr_common() New in v2 (0) none"]
    assert "series-1.html" in page.hrefs()
    assert page.text("dd")[5] == "v1 v2"  # the revisions, this one in bold


def test_waiting_and_failed_series(site):
    _, page, _ = get(site, "/series-6.html")
    assert page.text("span.state") == ["waiting"] and page.text("dd")[2] == "1 of 2"
    assert page.text("section.replies") == ["Replies Not reviewed yet."]
    _, page, _ = get(site, "/series-9.html")
    assert page.text("span.error")[0].startswith(f"cannot fetch {BROKEN_MSGID}")
    # its thread never came: no author was read
    assert page.text("dd.author") == [""]
    assert page.text("dd")[2] == "? of ?"
    assert page.text("section.replies") == ["Replies No review: it failed."]


def test_rule_pages(site):
    status, page, _ = get(site, "/rule-cpuid-adjust-added.html")
    assert status == 200
    assert page.text("p.count") == ["Fired 2 times."]
    assert [c for i, c in enumerate(page.text("td")) if i % 5 != 4] == [
        f"v1 KVM: x86: {HOSTILE_SUBJECT}", "1", "arch/x86/kvm/cpuid.c:389 kvm_vcpu_after_set_cpuid()", "warning",
        "v1 KVM: x86: Clear AVX-512 in guest CPUID when XCR0 can't enable AVX-512 state", "1",
        "arch/x86/kvm/cpuid.c:389 kvm_vcpu_after_set_cpuid()", "warning"]
    assert page.hrefs()[-2:] == ["series-8.html#patch-1", "series-4.html#patch-1"]
    no_markup_from_mail(page)
    _, page, _ = get(site, "/rule-userspace-reject-msr-typo.html")
    assert page.text("#what") == ["No rule userspace-reject-msr-typo is loaded and none of that name fired."]
    _, page, _ = get(site, "/rules.html")
    cells = page.text("td")
    at = cells.index("selftests-missing")
    assert cells[at:at + 4] == ["selftests-missing", "selftests", cells[at + 2], "7 info"]
    assert get(site, "/rule-docs-api-rst-untouched.html")[1].text("p.count") == ["Fired 4 times."]


BAD_PATHS = ["/series-0.html", "/series-999.html", "/series-1.html/", "/series-1", "/series-01.html",
             "/index-0.html", "/index-2.html", "/index-1x.html", "/bogus.html", "/../bot.sqlite", "/bot.sqlite",
             "/bot.toml", "/style.css/", "/rule-.html", "/rule-<script>.html", "/rule-a/../b.html",
             "/series-99999999999999999999.html", "//etc/passwd", "/" + "a" * 5000]


def test_bad_paths_are_404_pages(site, state):
    for path in BAD_PATHS:
        status, page, html = get(site, path)
        assert status == 404, path
        assert page.text("h1") == ["Not found"], path
        assert str(state.root) not in html and "Traceback" not in html


@pytest.fixture(scope="module")
def server(state):
    url, proc = webstate.serve(state, state.root / "web.log")
    yield int(url.rsplit(":", 1)[1].strip("/")), proc
    proc.terminate()
    proc.wait(10)


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_served_over_http_with_csp(server):
    port, _ = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/needs-human.html?q=novak")
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 200
    assert r.getheader("Content-Security-Policy") == web.CSP
    assert "script-src" not in web.CSP and "default-src 'none'" in web.CSP
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    assert [row[0] for row in rows(Page(body))] == [ROWS[10][0]]
    conn.request("GET", "/style.css")
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/css; charset=utf-8" and b"body" in r.read()
    conn.request("HEAD", "/")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"" and int(r.getheader("Content-Length")) > 1000
    conn.close()


def test_http_refuses_writes_and_paths_outside_routes(server, state):
    port, proc = server
    for method in ("POST", "PUT", "DELETE"):
        assert raw(port, f"{method} / HTTP/1.0\r\nContent-Length: 0\r\n\r\n".encode()).startswith(
            b"HTTP/1.0 405 Method Not Allowed")
    for path in ("/../../../etc/passwd", "/%2e%2e/bot.toml", "/..%2fbot.sqlite", "/series-1.html%00",
                 "/bot.sqlite-wal", "/templates/web/base.html.j2", "/%ff%fe"):
        reply = raw(port, f"GET {path} HTTP/1.0\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.0 404 Not Found"), path
        assert b"Content-Security-Policy: default-src 'none'" in reply
        assert b"root:" not in reply and b"SQLite" not in reply and b"[lore]" not in reply
    many = "&".join(f"f{i}=1" for i in range(30))
    assert raw(port, f"GET /?{many} HTTP/1.0\r\n\r\n".encode()).startswith(b"HTTP/1.0 404 Not Found")
    assert b"400 - Bad request" in raw(port, b"GARBAGE\r\n\r\n")
    assert proc.poll() is None  # still serving


def test_serving_writes_nothing(state, tmp_path):
    """The state directory is the same, byte for byte, after serving every
    page (SQLite's -wal/-shm companions aside: any reader of a WAL database
    has them; the -wal stays empty)."""
    copy = tmp_path / "copy"
    shutil.copytree(state.root, copy, ignore=shutil.ignore_patterns("lore", "home"))
    for extra in copy.glob("bot.sqlite-*"):
        extra.unlink()
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    cfg = bot.load_config(str(copy / "bot.toml"))
    cfg.state = str(copy / "bot.sqlite")
    site = web.site_for(cfg)
    for path in ["/", "/series-8.html", "/rules.html", "/rule-selftests-missing.html", "/waiting.html"]:
        assert web.respond(site, path).status == 200
    after = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if not k.startswith("bot.sqlite-")} == before
    assert set(after) - set(before) <= {"bot.sqlite-wal", "bot.sqlite-shm"}
    assert after.get("bot.sqlite-wal", b"") == b""


def test_page_made_while_the_state_is_written(state, tmp_path):
    """A bot holding a write transaction does not stop the pages (WAL)."""
    db = tmp_path / "busy.sqlite"
    shutil.copy(state.state, db)
    writer = State(db)
    cfg = bot.load_config(state.config)
    cfg.state = str(db)
    site = web.site_for(cfg)
    try:
        with writer.tx() as w:
            w.execute("UPDATE series SET subject = 'renamed' WHERE id = 9")
            assert [r[0] for r in rows(get(site, "/")[1])][2] == ROWS[2][0]  # the last committed step
        assert [r[0] for r in rows(get(site, "/")[1])][2] == "renamed"
    finally:
        writer.close()


def test_older_state_file(state, tmp_path):
    """A state written before these pages: shown with what it has; the bot
    adds the new columns when it opens it, keeping every row."""
    db = tmp_path / "old.sqlite"
    shutil.copy(state.state, db)
    with sqlite3.connect(db) as conn:
        for column in ("name", "patch_list", "replies", "checklist", "error"):
            conn.execute(f"ALTER TABLE series DROP COLUMN {column}")
    cfg = bot.load_config(state.config)
    cfg.state = str(db)
    site = web.site_for(cfg)
    _, page, html = get(site, "/")
    assert [(r[0], r[3], r[4]) for r in rows(page)] == [(r[0], "?/" + r[2].split("/")[1], r[3]) for r in ROWS]
    _, page, html = get(site, "/series-8.html")
    assert page.text("section.checklist") == ["Checklist Not recorded (reviewed by an older bot)."]
    assert len(re.findall(r'<pre class="reply">', html)) == 1  # from the delivery kept for sending
    assert page.text("h3") == ["The series", "1/1"]  # the patch's subject was not kept
    State(db).close()
    with sqlite3.connect(db) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(series)")]
        assert columns[-5:] == ["error", "name", "patch_list", "replies", "checklist"]
        assert conn.execute("SELECT COUNT(*), COUNT(findings) FROM series").fetchone() == (11, 10)  # 1 waits


def test_export_html(state, site, tmp_path, capsys):
    out = tmp_path / "site"
    assert cli.main(["bot", "--config", state.config, "export-html", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert capsys.readouterr().err == f"kvm-review bot: wrote {len(files)} files to {out}\n"
    assert {"index.html", "waiting.html", "reviewed.html", "sent.html", "needs-human.html", "error.html",
            "skipped.html", "rules.html", "style.css", "404.html"} <= set(files)
    assert [f for f in files if f.startswith("series-")] == sorted(f"series-{i}.html" for i in range(1, 12))
    rule_files = [f for f in files if f.startswith("rule-")]
    assert len(rule_files) == len(site.rules) and "rule-cpuid-adjust-added.html" in rule_files
    for name in files:
        if not name.endswith(".html"):
            continue
        html = (out / name).read_text()
        page = Page(html)
        assert ("meta", {"http-equiv": "Content-Security-Policy", "content": web.CSP_META}) in page.tags, name
        assert "form" not in [t for t, _ in page.tags], name  # search needs the server
        no_markup_from_mail(page)
        for href in page.hrefs():
            if "://" not in href:  # every link of ours leads to a file that is there
                assert (out / href.split("#")[0]).is_file(), (name, href)
    assert rows(Page((out / "index.html").read_text())) == rows(get(site, "/")[1])
    # again into the same directory: the same files
    assert cli.main(["bot", "--config", state.config, "export-html", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == files


def test_command_line_errors(state, tmp_path, capsys):
    missing = tmp_path / "bot.toml"
    missing.write_text(f'[bot]\nstate = "{tmp_path / "none.sqlite"}"\n')
    cases = [
        (["web"], f"kvm-review: error: no state yet ({tmp_path / 'none.sqlite'}): the bot has not run\n", missing),
        (["export-html", str(tmp_path / "o")], f"kvm-review: error: no state yet ({tmp_path / 'none.sqlite'}): "
         "the bot has not run\n", missing),
        (["web", "--listen", "nonsense"], "kvm-review: error: --listen 'nonsense': expected HOST:PORT, e.g. "
         "127.0.0.1:8080\n", state.config),
        (["web", "--listen", "127.0.0.1:99999"], "kvm-review: error: --listen '127.0.0.1:99999': expected "
         "HOST:PORT, e.g. 127.0.0.1:8080\n", state.config),
        (["web", "extra"], "kvm-review: error: bot web takes no Message-ID or --as (they are for: bot resolve)\n",
         state.config),
        (["export-html"], "kvm-review: error: bot export-html needs a directory\n", state.config),
        (["export-html", state.config], f"kvm-review: error: {state.config}: not a directory\n", state.config),
        (["status", "--listen", "127.0.0.1:1"], "kvm-review: error: bot status takes no --listen (it is for: "
         "bot web)\n", state.config),
    ]
    for args, err, cfg in cases:
        capsys.readouterr()
        assert cli.main(["bot", "--config", str(cfg), *args]) == 2, args
        assert capsys.readouterr().err == err, args


def test_listen_address_in_use(state):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "reviewer", "bot", "--config", state.config, "web",
                               "--listen", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == f"kvm-review: error: --listen 127.0.0.1:{port}: cannot listen: Address already in use\n"


def test_state_gone_is_a_500_page_and_one_line(state, tmp_path):
    db = tmp_path / "gone.sqlite"
    shutil.copy(state.state, db)
    cfg = bot.load_config(state.config)
    cfg.state = str(db)
    log = io.StringIO()
    app = web.app(web.site_for(cfg), log)
    db.unlink()
    got = []
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/series-8.html", "QUERY_STRING": ""},
                        lambda status, headers: got.append((status, dict(headers)))))
    assert got[0][0] == "500 Internal Server Error"
    assert got[0][1]["Content-Security-Policy"] == web.CSP
    assert Page(body.decode()).text("#what") == ["This page could not be made; the server's log says why."]
    assert log.getvalue() == (f"kvm-review bot web: error: /series-8.html: InputError: no state yet ({db}): "
                              "the bot has not run\n")


def test_parse_listen_and_links():
    assert web.parse_listen(web.DEFAULT_LISTEN) == ("127.0.0.1", 8080)  # loopback unless told otherwise
    assert web.parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert web.parse_listen("[::1]:0") == ("::1", 0)
    assert web.parse_listen("9000") == ("127.0.0.1", 9000)
    assert web.list_url() == "index.html" and web.list_url("needs-human", 3) == "needs-human-3.html"
    assert web.list_url("sent", 1, "a&b <c>") == "sent.html?q=a%26b+%3Cc%3E"
    assert web.rule_url("cpuid-adjust-added") == "rule-cpuid-adjust-added.html"
    assert web.rule_url("../x") is None and web.rule_url("") is None
    assert webdata.lore_thread("http://l/", "kvm", "a/b?c#d@x") == "http://l/kvm/a%2Fb%3Fc%23d@x/T/"


def test_templates_found_through_one_helper():
    """The pages' templates come from the built-in pack (the checkout's
    templates/web/ through reviewer/builtin, a copy in a wheel)."""
    assert web.templates_dir() == Path(str(pack.root() / "templates" / "web"))
    assert (web.templates_dir() / "list.html.j2").read_bytes() == \
        (Path(web.__file__).resolve().parent.parent / "templates" / "web" / "list.html.j2").read_bytes()


def test_web_benchmark_runs(tmp_path, capsys):
    """bench/webbench.py (make bench) fills a state and times the pages;
    its figures are measured there, not asserted here."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import webbench

    out = tmp_path / "web.json"
    assert webbench.main(["--series", "120", "--runs", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["series"] == 120 and set(figures["pages"]) >= {"list page 1", "list page 1 over HTTP"}
    assert "target: list page under 0.2 s with 120 series" in capsys.readouterr().out
