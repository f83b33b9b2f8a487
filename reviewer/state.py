"""The bot's memory: SQLite (stdlib), WAL, one transaction per step.

- ``messages``: every Message-ID seen in search results, and the series it
  was reviewed as (NULL until then).
- ``series``: one row per series revision, keyed by its first message
  (cover letter or patch 1) and revision; ``key`` is the change-id, else
  author + subject, to find earlier revisions. Status ``waiting`` (not
  complete yet), ``reviewed``, ``skipped`` (nothing to review), ``failed``
  (malformed, or it broke the review: ``error`` says why; not retried until
  a new message of the series arrives). What the status pages show
  (``kvm-review bot web``) is kept beside it: the author's ``name``, the
  ``patch_list`` seen (JSON: index, subject, Message-ID), the ``replies``
  exactly as sent or as a dry run would send them (JSON list of mail texts)
  and the ``checklist`` they carry (JSON).
- ``deliveries``: one row per reply / check, with its Message-ID and the
  exact bytes to send. ``pending`` -> ``sending`` (committed before the
  send) -> ``sent`` (committed after). A row left in ``sending`` by a crash,
  or by a connection lost after the mail's last line went out, may or may
  not have gone out: it is reported, never resent, until a human says
  (``kvm-review bot resolve``).

A review and all its deliveries are recorded in one transaction, so a crash
leaves either nothing (the series is reviewed again) or every delivery
``pending`` (each is sent once on restart). A write SQLite refuses (read-only
file or directory, disk full) rolls its transaction back and is one
:class:`StateError` line (exit 2): the file keeps its last committed state.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from reviewer.errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    msgid TEXT PRIMARY KEY,
    list TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    in_reply_to TEXT,
    first_seen REAL NOT NULL,
    series_id INTEGER REFERENCES series(id)
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    root TEXT NOT NULL,
    revision INTEGER NOT NULL,
    key TEXT NOT NULL,
    list TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    change_id TEXT,
    expected INTEGER NOT NULL DEFAULT 0,
    complete INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    first_seen REAL NOT NULL,
    updated REAL NOT NULL,
    findings TEXT,
    comparison TEXT,
    UNIQUE (root, revision)
);
CREATE INDEX IF NOT EXISTS series_key ON series (key, revision);
CREATE INDEX IF NOT EXISTS series_first_seen ON series (first_seen);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL REFERENCES series(id),
    channel TEXT NOT NULL,
    msgid TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    payload BLOB,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    updated REAL NOT NULL,
    UNIQUE (channel, msgid)
);
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (series_id, status);
"""
# columns added to ``series`` after its first release: an older state file
# gains them (NULL or '' in its existing rows) when the bot opens it
ADDED_COLUMNS = (
    ("error", "TEXT"),
    ("name", "TEXT NOT NULL DEFAULT ''"),
    ("patch_list", "TEXT"),
    ("replies", "TEXT"),
    ("checklist", "TEXT"),
)

DONE = ("reviewed", "skipped", "failed")


class StateError(InputError):
    """The state file cannot be read or written: exit 2, one line."""


class State:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(series)")}
            for name, decl in ADDED_COLUMNS:
                if name not in columns:
                    self.db.execute(f"ALTER TABLE series ADD COLUMN {name} {decl}")
        except (OSError, sqlite3.Error) as exc:
            if self.db is not None:
                self.db.close()
            raise self.error(exc, "open") from None

    def close(self) -> None:
        self.db.close()

    def error(self, exc: BaseException, doing: str = "write") -> StateError:
        """One line: which file, what failed, and why when the cause is plain."""
        hint = ""
        probe = self.path if self.path.exists() else self.path.parent
        if probe.exists() and not (os.access(probe, os.W_OK) and os.access(self.path.parent, os.W_OK)):
            hint = " (read-only: the file or its directory cannot be written)"
        return StateError(f"{self.path}: cannot {doing} the bot's state: {exc}{hint}")

    @contextmanager
    def tx(self):
        """One transaction: all or nothing. SQLite refusing a write (read-only,
        disk full...) rolls it back and is a :class:`StateError`."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled back already (SQLITE_FULL can do that)
            if isinstance(exc, sqlite3.Error):
                raise self.error(exc) from None
            raise

    # --- messages -------------------------------------------------------
    def see(self, entries) -> int:
        """Record search results; returns how many were new."""
        now = time.time()
        new = 0
        with self.tx() as db:
            for e in entries:
                cur = db.execute("INSERT OR IGNORE INTO messages (msgid, list, subject, author, in_reply_to, "
                                 "first_seen) VALUES (?, ?, ?, ?, ?, ?)",
                                 (e.msgid, e.list, e.subject, e.email, e.in_reply_to, now))
                new += cur.rowcount
        return new

    def message(self, msgid: str):
        return self.db.execute("SELECT * FROM messages WHERE msgid = ?", (msgid,)).fetchone()

    def first_seen(self, msgids) -> float:
        marks = ",".join("?" * len(msgids))
        row = self.db.execute(f"SELECT MIN(first_seen) FROM messages WHERE msgid IN ({marks})",
                              list(msgids)).fetchone()
        return row[0] if row and row[0] is not None else time.time()

    def unassigned(self, msgids) -> list[str]:
        """Those of ``msgids`` not yet part of a finished series."""
        out = []
        for msgid in msgids:
            row = self.db.execute("SELECT m.series_id, s.status FROM messages m LEFT JOIN series s "
                                  "ON s.id = m.series_id WHERE m.msgid = ?", (msgid,)).fetchone()
            if row is None or row["series_id"] is None or row["status"] not in DONE:
                out.append(msgid)
        return out

    # --- series ---------------------------------------------------------
    def series(self, root: str, revision: int):
        return self.db.execute("SELECT * FROM series WHERE root = ? AND revision = ?", (root, revision)).fetchone()

    def wait(self, info: dict) -> None:
        """A series seen but not complete yet."""
        now = time.time()
        with self.tx() as db:
            db.execute("INSERT INTO series (root, revision, key, list, subject, author, name, change_id, expected, "
                       "complete, status, first_seen, updated, patch_list) VALUES (:root, :revision, :key, :list, "
                       ":subject, :author, :name, :change_id, :expected, 0, 'waiting', :first_seen, :now, "
                       ":patch_list) ON CONFLICT (root, revision) DO UPDATE SET updated = :now, "
                       "patch_list = :patch_list", dict(info, now=now))

    def finish(self, info: dict, status: str, msgids, findings: list[dict], comparison: dict | None,
               deliveries: list[dict], error: str | None = None, replies: list[bytes] | None = None,
               checklist: list[dict] | None = None) -> int:
        """The review and every delivery it calls for, in one transaction.
        ``replies`` and ``checklist`` None keep what was recorded before."""
        now = time.time()
        texts = None if replies is None else json.dumps([r.decode("utf-8", "replace") for r in replies])
        with self.tx() as db:
            db.execute("INSERT INTO series (root, revision, key, list, subject, author, name, change_id, expected, "
                       "complete, status, first_seen, updated, findings, comparison, error, patch_list, replies, "
                       "checklist) VALUES (:root, :revision, :key, :list, :subject, :author, :name, :change_id, "
                       ":expected, :complete, :status, :first_seen, :now, :findings, :comparison, :error, "
                       ":patch_list, :replies, :checklist) ON CONFLICT (root, revision) DO UPDATE SET "
                       "status = :status, complete = :complete, change_id = :change_id, updated = :now, "
                       "findings = :findings, comparison = :comparison, key = :key, error = :error, "
                       "name = :name, patch_list = COALESCE(:patch_list, patch_list), "
                       "replies = COALESCE(:replies, replies), checklist = COALESCE(:checklist, checklist)",
                       dict(info, status=status, now=now, findings=json.dumps(findings), error=error,
                            comparison=json.dumps(comparison) if comparison is not None else None,
                            replies=texts, checklist=None if checklist is None else json.dumps(checklist)))
            sid = db.execute("SELECT id FROM series WHERE root = ? AND revision = ?",
                             (info["root"], info["revision"])).fetchone()[0]
            for msgid in msgids:
                db.execute("INSERT INTO messages (msgid, list, first_seen, series_id) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (msgid) DO UPDATE SET series_id = excluded.series_id",
                           (msgid, info.get("list", ""), now, sid))
            for d in deliveries:
                db.execute("INSERT OR IGNORE INTO deliveries (series_id, channel, msgid, target, payload, status, "
                           "updated) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                           (sid, d["channel"], d["msgid"], d.get("target", ""), d.get("payload"), now))
        return sid

    def earlier(self, key: str, revision: int, thread_msgids) -> sqlite3.Row | None:
        """The latest reviewed revision before ``revision`` of the same series:
        same change-id / author+subject, or a root in the same thread."""
        msgids = list(thread_msgids)
        marks = ",".join("?" * len(msgids)) or "''"
        return self.db.execute(
            f"SELECT * FROM series WHERE status = 'reviewed' AND revision < ? AND (key = ? OR root IN ({marks})) "
            "ORDER BY revision DESC, updated DESC LIMIT 1", [revision, key, *msgids]).fetchone()

    # --- deliveries -----------------------------------------------------
    def pending(self):
        return self.db.execute("SELECT d.*, s.subject, s.revision FROM deliveries d JOIN series s "
                               "ON s.id = d.series_id WHERE d.status = 'pending' ORDER BY d.id").fetchall()

    def mark(self, delivery_id: int, status: str, error: str | None = None, attempt: bool = False) -> None:
        with self.tx() as db:
            db.execute("UPDATE deliveries SET status = ?, error = ?, updated = ?, attempts = attempts + ? "
                       "WHERE id = ?", (status, error, time.time(), 1 if attempt else 0, delivery_id))

    def resolve(self, msgid: str, status: str) -> int:
        """A human's word on deliveries left ``sending`` or ``failed``: ``sent``
        or ``pending`` (sent again by the next run). Returns how many."""
        with self.tx() as db:
            return db.execute("UPDATE deliveries SET status = ?, error = NULL, attempts = 0, updated = ? "
                              "WHERE msgid = ? AND status IN ('sending', 'failed')",
                              (status, time.time(), msgid)).rowcount

    # --- status ---------------------------------------------------------
    def counts(self) -> dict:
        db = self.db
        return {
            "messages": db.execute("SELECT COUNT(*) FROM messages").fetchone()[0],
            "series": dict(db.execute("SELECT status, COUNT(*) FROM series GROUP BY status").fetchall()),
            "deliveries": dict(db.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()),
        }

    def rows(self, sql: str, *args):
        return self.db.execute(sql, args).fetchall()
