"""``kvm-review bot web`` and ``bot export-html``: the bot's work as pages.

One set of routes serves both: the WSGI app (stdlib ``wsgiref``, a thread a
request) answers them live from the state (read-only, see
:mod:`reviewer.webdata`), and the export asks the same routes for every page
and writes the answers as files. Links are relative file names
(``index.html``, ``waiting-2.html``, ``series-12.html``, ``rule-ID.html``), so
exported pages link to each other on any web server; only search (``?q=``)
needs the live server.

Everything a mail carries is rendered by jinja2 with autoescaping; pages
carry a Content-Security-Policy without script (a header live, a meta tag in
files); any path outside the routes, or a series that does not exist, is a
404 page; an error is a one-line 500 page and one line on stderr.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from reviewer import webdata
from reviewer.errors import EXIT_CLEAN, InputError
from reviewer.findings import CATEGORIES

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
# a meta tag cannot carry frame-ancestors
CSP_META = CSP.rsplit("; frame-ancestors", 1)[0]
HEADERS = [("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
           ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"), ("Cache-Control", "no-cache")]
DEFAULT_LISTEN = "127.0.0.1:8080"
MAX_QUERY = 200  # characters of a search kept
MAX_FIELDS = 20  # query fields read; a URL with more is not ours: 404
COLOURS = dict(zip(CATEGORIES, ("#c0392b", "#d35400", "#8e44ad", "#2471a3", "#17a589", "#7d8c8d", "#b7950b")))
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_LIST = re.compile(r"/(?:(?P<state>index|" + "|".join(webdata.STATES) + r")(?:-(?P<page>[1-9][0-9]{0,5}))?\.html)?")
_SERIES = re.compile(r"/series-(?P<id>[1-9][0-9]{0,17})\.html")
_RULE = re.compile(r"/rule-(?P<id>" + _RULE_ID.pattern + r")\.html")


def templates_dir() -> Path:
    """Where the page templates live (the built-in pack's templates/web/):
    the one place that knows."""
    from reviewer import pack

    return Path(str(pack.root() / "templates" / "web"))


@dataclass
class Site:
    """What every page needs: where the state is, how to link to lore, the
    rules (titles and explanations), and whether pages become files."""

    state: Path
    lore_url: str
    rules: dict = field(default_factory=dict)  # id -> reviewer.rules.Rule
    static: bool = False
    env: object = field(default=None, repr=False)

    def __post_init__(self):
        from jinja2 import Environment, FileSystemLoader, StrictUndefined

        env = Environment(loader=FileSystemLoader(str(templates_dir())), autoescape=True,
                          undefined=StrictUndefined, lstrip_blocks=True)
        env.globals.update(labels=webdata.LABELS, states=webdata.STATES, static=self.static, csp=CSP_META,
                           list_url=list_url, rule_url=rule_url, colours=COLOURS)
        env.filters["when"] = when
        self.env = env


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"


def when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else ""


def list_url(state: str | None = None, page: int = 1, q: str = "") -> str:
    name = (state or "index") + (f"-{page}" if page > 1 else "")
    return f"{name}.html" + (f"?{urlencode({'q': q})}" if q else "")


def rule_url(rule_id: str) -> str | None:
    return f"rule-{rule_id}.html" if _RULE_ID.fullmatch(rule_id or "") else None


# --- the chart ----------------------------------------------------------------


@dataclass
class Bar:
    x: int
    y: int
    height: int
    colour: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[int, str]]  # x, week
    peak: int
    total: int
    bar: int


def chart(week: webdata.Weekly, width: int = 480, height: int = 120, bar: int = 28) -> Chart:
    """Stacked bars, one a week, one colour a category: SVG geometry."""
    step = width // max(1, len(week.starts))
    peak = max([sum(c.values()) for c in week.counts] + [1])
    bars, labels = [], []
    for i, (start, counts) in enumerate(zip(week.starts, week.counts)):
        x, y = i * step + (step - bar) // 2, height
        day = time.strftime("%Y-%m-%d", time.gmtime(start))
        for category in CATEGORIES:
            n = counts.get(category, 0)
            if n:
                h = max(1, round(n * height / peak))
                y -= h
                bars.append(Bar(x, y, h, COLOURS[category], f"week of {day}: {n} {category}"))
        labels.append((i * step + step // 2, day[5:]))
    return Chart(width, height, bars, labels, peak, sum(sum(c.values()) for c in week.counts), bar)


# --- pages --------------------------------------------------------------------


def _page(site: Site, template: str, status: int = 200, **context) -> Response:
    return Response(status, site.env.get_template(template).render(**context).encode())


def not_found(site: Site, what: str = "No such page.") -> Response:
    return _page(site, "error.html.j2", 404, title="Not found", what=what)


def _list_page(site: Site, db, state: str | None, page: int, q: str) -> Response:
    found = webdata.listing(db, state, q, page)
    if found is None:
        return not_found(site, f"There is no page {page} of this list.")
    return _page(site, "list.html.j2", listing=found, state=state, q=q,
                 chart=chart(webdata.weekly(db)),
                 thread=lambda s: webdata.lore_thread(site.lore_url, s.list, s.root))


def _series_page(site: Site, db, sid: int) -> Response:
    page = webdata.series_page(db, sid)
    if page is None:
        return not_found(site, f"There is no series {sid} in the bot's state.")
    s = page.series
    patches = s.patches or [{"index": i, "subject": "", "msgid": ""}
                            for i in sorted({f.get("patch", 0) for f in s.findings} - {0})]
    by_patch: dict[int, list[dict]] = {}
    for f in s.findings:
        by_patch.setdefault(f.get("patch", 0), []).append(f)
    return _page(site, "series.html.j2", page=page, s=s, patches=patches, by_patch=by_patch,
                 thread=webdata.lore_thread(site.lore_url, s.list, s.root))


def _rule_page(site: Site, db, rule_id: str) -> Response:
    total, hits = webdata.rule_hits(db, rule_id)
    rule = site.rules.get(rule_id)
    if rule is None and not total:
        return not_found(site, f"No rule {rule_id} is loaded and none of that name fired.")
    return _page(site, "rule.html.j2", rule_id=rule_id, rule=rule, total=total, hits=hits)


def _rules_page(site: Site, db) -> Response:
    counts = webdata.rule_counts(db)
    ids = list(site.rules) + sorted(set(counts) - set(site.rules))
    return _page(site, "rules.html.j2", ids=ids, rules=site.rules, counts=counts)


def _style() -> Response:
    return Response(200, (templates_dir() / "style.css").read_bytes(), "text/css; charset=utf-8")


def respond(site: Site, path: str, query: dict[str, list[str]] | None = None) -> Response:
    """The page at ``path`` (the part after the host, without the query)."""
    query = query or {}
    if path == "/style.css":
        return _style()
    m_list, m_series, m_rule = _LIST.fullmatch(path), _SERIES.fullmatch(path), _RULE.fullmatch(path)
    if not (m_list or m_series or m_rule or path == "/rules.html"):
        return not_found(site)
    db = webdata.connect(site.state)
    try:
        if m_list:
            state = m_list["state"] if m_list["state"] not in (None, "index") else None
            q = "" if site.static else " ".join((query.get("q") or [""])[0].split())[:MAX_QUERY]
            return _list_page(site, db, state, int(m_list["page"] or 1), q)
        if m_series:
            return _series_page(site, db, int(m_series["id"]))
        if m_rule:
            return _rule_page(site, db, m_rule["id"])
        return _rules_page(site, db)
    finally:
        db.close()


# --- live: WSGI ---------------------------------------------------------------


def app(site: Site, log=None):
    """The WSGI application: GET and HEAD only, never a traceback."""
    log = log or sys.stderr

    def wsgi(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            resp = Response(405, b"405 Method Not Allowed: these pages are read-only\n", "text/plain; charset=utf-8")
        else:
            try:
                query = parse_qs(environ.get("QUERY_STRING", ""), max_num_fields=MAX_FIELDS)
            except ValueError:  # more fields than any link of ours has
                query = None
            try:
                resp = not_found(site) if query is None else respond(site, environ.get("PATH_INFO") or "/", query)
            except Exception as exc:  # the state gone or unreadable, or our bug: one line, no traceback
                why = " ".join(str(exc).split())
                print(f"kvm-review bot web: error: {environ.get('PATH_INFO')}: {type(exc).__name__}: {why}",
                      file=log, flush=True)
                resp = _page(site, "error.html.j2", 500, title="Error",
                             what="This page could not be made; the server's log says why.")
        reason = HTTPStatus(resp.status).phrase
        headers = [("Content-Type", resp.content_type), ("Content-Length", str(len(resp.body))), *HEADERS]
        if resp.status == 405:
            headers.append(("Allow", "GET, HEAD"))
        start_response(f"{resp.status} {reason}", headers)
        return [b"" if method == "HEAD" else resp.body]

    return wsgi


class _Handler(WSGIRequestHandler):
    def log_message(self, format, *args):  # one line a request, like an access log
        print(f"kvm-review bot web: {self.address_string()} {format % args}", file=self.server.log, flush=True)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    log = sys.stderr


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or int(port) > 65535 or not host:
        raise InputError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def serve(site: Site, listen: str, stop: threading.Event, log=None, ready=None) -> int:
    """Serve until ``stop`` is set; ``ready(url)`` once listening."""
    host, port = parse_listen(listen)
    log = log or sys.stderr

    class Server(_Server):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    Server.log = log
    try:
        httpd = make_server(host, port, app(site, log), server_class=Server, handler_class=_Handler)
    except OSError as exc:
        raise InputError(f"--listen {listen}: cannot listen: {exc.strerror or exc}") from None
    bound = httpd.server_address[1]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}/"
    print(f"kvm-review bot web: serving {site.state} read-only on {url}", file=log, flush=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"kvm-review bot web: note: listening on {host}, not only this machine", file=log, flush=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        if ready:
            ready(url)
        stop.wait()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    return EXIT_CLEAN


# --- files: export-html -------------------------------------------------------


def export_paths(site: Site) -> list[str]:
    """Every page the routes answer, as paths."""
    db = webdata.connect(site.state)
    try:
        paths = ["/style.css", "/rules.html"]
        for state in (None, *webdata.STATES):
            found = webdata.listing(db, state, "", 1)
            paths += ["/" + list_url(state, page) for page in range(1, found.pages + 1)]
        paths += [f"/series-{sid}.html" for sid in webdata.series_ids(db)]
        fired = webdata.rule_counts(db)
        paths += [f"/{rule_url(r)}" for r in sorted(set(site.rules) | set(fired)) if rule_url(r)]
    finally:
        db.close()
    return paths


def export(site: Site, outdir: str | Path) -> int:
    """Write every page under ``outdir`` (created; our files overwritten);
    returns how many files."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = export_paths(site)
        for path in paths:
            (out / path.lstrip("/")).write_bytes(respond(site, path).body)
        (out / "404.html").write_bytes(not_found(site).body)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the pages: {exc.strerror or exc}") from None
    return len(paths) + 1


# --- command line (from reviewer.bot) -----------------------------------------


def site_for(cfg, static: bool = False) -> Site:
    from reviewer import rules as rulesmod

    ruleset = rulesmod.load(list(cfg.rules), list(cfg.disable))
    return Site(state=Path(cfg.state), lore_url=cfg.lore_url, rules={r.id: r for r in ruleset.rules},
                static=static)


def main(cfg, action: str, target: str | None, listen: str | None, stop: threading.Event, out=None) -> int:
    out = out or sys.stderr
    if action == "export-html":
        if not target:
            raise InputError("bot export-html needs a directory")
        site = site_for(cfg, static=True)
        webdata.connect(site.state).close()  # no state: one line, exit 2
        n = export(site, target)
        print(f"kvm-review bot: wrote {n} files to {target}", file=out)
        return EXIT_CLEAN
    site = site_for(cfg)
    webdata.connect(site.state).close()
    return serve(site, listen or DEFAULT_LISTEN, stop, log=out)
