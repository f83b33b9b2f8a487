"""What the status pages show, read from the bot's SQLite state, read-only.

The state is opened with ``mode=ro`` (SQLite may create the ``-wal`` and
``-shm`` files any reader of a WAL database needs; the database itself is
never written), one connection a request, so pages run beside a polling bot
and always show its last committed step. A state file written by an older
bot lacks some columns: they read as NULL (the page says what is unknown).
Everything here returns plain data; :mod:`reviewer.web` renders it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from reviewer.errors import InputError
from reviewer.findings import CATEGORIES, SEVERITIES

PAGE_SIZE = 50
RULE_HITS = 200  # a rule page lists the newest this many
WEEK = 7 * 24 * 3600
WEEKS = 12
# the state a maintainer reads, from series.status and its deliveries
STATES = ("waiting", "reviewed", "sent", "needs-human", "error", "skipped")
LABELS = {"waiting": "waiting", "reviewed": "reviewed", "sent": "sent", "needs-human": "needs a human",
          "error": "error", "skipped": "skipped"}
_STATE_SQL = """CASE
    WHEN s.status = 'waiting' THEN 'waiting'
    WHEN s.status = 'failed' THEN 'error'
    WHEN d.human THEN 'needs-human'
    WHEN d.sent THEN 'sent'
    WHEN s.status = 'skipped' THEN 'skipped'
    ELSE 'reviewed' END"""
_DELIVERIES = ("SELECT series_id, MAX(status IN ('sending', 'failed')) AS human, MAX(status = 'sent') AS sent "
               "FROM deliveries GROUP BY series_id")
_LATER = ("error", "name", "patch_list", "replies", "checklist")  # columns an older state may lack
_SAFE_MSGID = "@!$&'()*+,;=:~._-"  # kept as they are in a lore URL


def connect(path: str | Path) -> sqlite3.Connection:
    """The state, read-only; one line (exit 2) if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no state yet ({path}): the bot has not run")
    try:
        db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA query_only = ON")
        db.execute("SELECT 1 FROM series LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot read the bot's state: {exc}") from None
    return db


def _columns(db: sqlite3.Connection) -> str:
    have = {row[1] for row in db.execute("PRAGMA table_info(series)")}
    return ", ".join(f"s.{c}" if c in have else f"NULL AS {c}" for c in _LATER)


def _select(db: sqlite3.Connection) -> str:
    # a series that failed before b4 read it has no author: the search result's
    return (f"SELECT s.id, s.root, s.revision, s.key, s.list, s.subject, COALESCE(NULLIF(s.author, ''), "
            f"(SELECT m.author FROM messages m WHERE m.msgid = s.root), '') AS author, s.expected, s.complete, "
            f"s.status, s.first_seen, s.updated, s.findings, s.comparison, {_columns(db)}, {_STATE_SQL} AS state "
            f"FROM series s LEFT JOIN ({_DELIVERIES}) d ON d.series_id = s.id")


def lore_thread(lore_url: str, inbox: str, msgid: str) -> str:
    return f"{lore_url.rstrip('/')}/{quote(inbox.strip('/'), safe='')}/{quote(msgid, safe=_SAFE_MSGID)}/T/"


@dataclass
class Series:
    id: int
    root: str
    revision: int
    list: str
    subject: str
    author: str
    name: str
    expected: int
    state: str
    first_seen: float
    updated: float
    findings: list[dict]
    patches: list[dict] | None  # index, subject, msgid; None: an older state did not keep them
    error: str | None
    row: sqlite3.Row = field(repr=False)

    @property
    def seen(self) -> int | None:
        return None if self.patches is None else len(self.patches)

    def severities(self) -> dict[str, int]:
        counts = dict.fromkeys(reversed(SEVERITIES), 0)
        for f in self.findings:
            counts[f.get("severity", "info")] = counts.get(f.get("severity", "info"), 0) + 1
        return counts


def _series(row: sqlite3.Row) -> Series:
    return Series(id=row["id"], root=row["root"], revision=row["revision"], list=row["list"],
                  subject=row["subject"], author=row["author"], name=row["name"] or "", expected=row["expected"],
                  state=row["state"], first_seen=row["first_seen"], updated=row["updated"],
                  findings=json.loads(row["findings"] or "[]"),
                  patches=json.loads(row["patch_list"]) if row["patch_list"] else None,
                  error=row["error"], row=row)


@dataclass
class Listing:
    rows: list[Series]
    total: int  # matching the filter and search
    counts: dict[str, int]  # per state, matching the search
    page: int
    pages: int


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def listing(db: sqlite3.Connection, state: str | None = None, q: str = "", page: int = 1) -> Listing | None:
    """One page of series, newest first (by when the bot first saw them);
    None when ``page`` is past the last one. Only the page's rows are read
    whole: counting and ordering touch the few columns they need."""
    lean = f"FROM series s LEFT JOIN ({_DELIVERIES}) d ON d.series_id = s.id"
    where, args = "", []
    if q:
        where = " WHERE (s.subject LIKE ? ESCAPE '\\' OR s.author LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\')"
        args = [_like(q)] * 3
        if "name" not in {row[1] for row in db.execute("PRAGMA table_info(series)")}:
            where = where.replace(" OR name LIKE ? ESCAPE '\\'", "")
            args = args[:2]
    counts = dict.fromkeys(STATES, 0)
    counts.update(db.execute(f"SELECT {_STATE_SQL} AS state, COUNT(*) {lean}{where} GROUP BY 1", args).fetchall())
    total = counts[state] if state else sum(counts.values())
    pages = max(1, -(-total // PAGE_SIZE))
    if page < 1 or page > pages:
        return None
    if state:
        where, args = where + (" AND " if where else " WHERE ") + f"{_STATE_SQL} = ?", [*args, state]
    ids = [r[0] for r in db.execute(f"SELECT s.id {lean}{where} ORDER BY s.first_seen DESC, s.id DESC "
                                    "LIMIT ? OFFSET ?", [*args, PAGE_SIZE, (page - 1) * PAGE_SIZE])]
    rows = db.execute(_select(db) + f" WHERE s.id IN ({','.join('?' * len(ids)) or 'NULL'}) "
                      "ORDER BY s.first_seen DESC, s.id DESC", ids).fetchall()
    return Listing([_series(r) for r in rows], total, counts, page, pages)


@dataclass
class Delivery:
    channel: str
    msgid: str
    status: str
    attempts: int
    error: str | None
    updated: float


@dataclass
class Revision:
    id: int
    revision: int


@dataclass
class SeriesPage:
    series: Series
    checklist: list[dict] | None
    replies: list[str]
    deliveries: list[Delivery]
    comparison: dict | None
    earlier: int | None  # the page of the revision compared with
    revisions: list[Revision]


def series_page(db: sqlite3.Connection, sid: int) -> SeriesPage | None:
    row = db.execute(_select(db) + " WHERE s.id = ?", (sid,)).fetchone()
    if row is None:
        return None
    deliveries = db.execute("SELECT channel, msgid, status, attempts, error, updated, payload FROM deliveries "
                            "WHERE series_id = ? ORDER BY id", (sid,)).fetchall()
    if row["replies"] is not None:
        replies = json.loads(row["replies"])
    else:  # an older state: the mails kept for delivery, once each
        kept = {d["msgid"]: d["payload"] for d in deliveries if d["payload"] is not None}
        replies = [p.decode("utf-8", "replace") for p in kept.values()]
    comparison = json.loads(row["comparison"]) if row["comparison"] else None
    earlier = None
    if comparison:
        found = db.execute("SELECT id FROM series WHERE root = ? AND revision = ?",
                           (comparison.get("msgid", "").strip("<>"), comparison.get("revision"))).fetchone()
        earlier = found[0] if found else None
    # the same change-id or author + subject, the revision compared with, and
    # those compared with this one (a subject may change between revisions)
    revisions = [Revision(r[0], r[1]) for r in db.execute(
        "SELECT id, revision FROM series WHERE key = ? OR id = ? OR (comparison IS NOT NULL AND "
        "json_extract(comparison, '$.msgid') = ? AND json_extract(comparison, '$.revision') = ?) "
        "ORDER BY revision, id", (row["key"], earlier, f"<{row['root']}>", row["revision"]))]
    return SeriesPage(series=_series(row), checklist=json.loads(row["checklist"]) if row["checklist"] else None,
                      replies=replies,
                      deliveries=[Delivery(d["channel"], d["msgid"], d["status"], d["attempts"], d["error"],
                                           d["updated"]) for d in deliveries],
                      comparison=comparison, earlier=earlier, revisions=revisions)


@dataclass
class Hit:
    series_id: int
    subject: str
    revision: int
    first_seen: float
    finding: dict


def rule_hits(db: sqlite3.Connection, rule_id: str) -> tuple[int, list[Hit]]:
    """How often ``rule_id`` fired, and where (the newest :data:`RULE_HITS`)."""
    fired = ("FROM series s, json_each(s.findings) j WHERE s.findings LIKE ? "
             "AND json_extract(j.value, '$.rule') = ?")
    args = ("%" + json.dumps(rule_id) + "%", rule_id)
    total = db.execute(f"SELECT COUNT(*) {fired}", args).fetchone()[0]
    rows = db.execute(f"SELECT s.id, s.subject, s.revision, s.first_seen, j.value {fired} "
                      "ORDER BY s.first_seen DESC, s.id DESC, j.key LIMIT ?", (*args, RULE_HITS)).fetchall()
    return total, [Hit(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]


def rule_counts(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """rule id -> severity -> how many findings."""
    out: dict[str, dict[str, int]] = {}
    for rule, severity, n in db.execute(
            "SELECT json_extract(j.value, '$.rule'), json_extract(j.value, '$.severity'), COUNT(*) "
            "FROM series s, json_each(s.findings) j WHERE s.findings IS NOT NULL GROUP BY 1, 2"):
        out.setdefault(str(rule), {})[str(severity)] = n
    return out


@dataclass
class Weekly:
    starts: list[float]  # each week's Monday 00:00 UTC
    counts: list[dict[str, int]]  # per week: category -> findings


def week_start(t: float) -> float:
    days = int(t // 86400)
    return (days - (days + 3) % 7) * 86400.0  # 1970-01-01 was a Thursday


def weekly(db: sqlite3.Connection, now: float | None = None, weeks: int = WEEKS) -> Weekly:
    """Findings per week by category, over the last ``weeks`` weeks (by when
    the bot first saw the series)."""
    first = week_start(now if now is not None else time.time()) - (weeks - 1) * WEEK
    counts: list[dict[str, int]] = [dict.fromkeys(CATEGORIES, 0) for _ in range(weeks)]
    for w, category, n in db.execute(
            "SELECT CAST((s.first_seen - ?) / ? AS INTEGER), json_extract(j.value, '$.category'), COUNT(*) "
            "FROM series s, json_each(s.findings) j WHERE s.first_seen >= ? AND s.findings IS NOT NULL "
            "GROUP BY 1, 2", (first, WEEK, first)):
        if 0 <= w < weeks:
            counts[w][str(category)] = counts[w].get(str(category), 0) + n
    return Weekly([first + i * WEEK for i in range(weeks)], counts)


def series_ids(db: sqlite3.Connection) -> list[int]:
    return [r[0] for r in db.execute("SELECT id FROM series ORDER BY id")]
