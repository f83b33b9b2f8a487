"""``kvm-review bot``: watch lore, review new KVM x86 series, deliver, remember.

One cycle: search each list (Atom, ``x=A``) -> group the results into series
(by revision and thread) -> fetch each unfinished series' thread with b4 (one
``t.mbox.gz`` request) -> wait while it is incomplete and younger than the
grace period -> review -> record the review and its deliveries in one
transaction -> deliver (outbox, SMTP, patchwork), each ``sending`` before and
``sent`` after. See :mod:`reviewer.state` for what a crash leaves behind.

Usage: ``kvm-review bot [--config FILE] [--once] [status]``; its pages:
``bot web`` and ``bot export-html DIR`` (:mod:`reviewer.web`).
"""

from __future__ import annotations

import argparse
import email.parser
import json
import os
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reviewer.errors import EXIT_CLEAN, EXIT_INPUT, InputError, MaybeSent
from reviewer.findings import UNPARSED
from reviewer.state import StateError

KVM_FILES = (
    "arch/x86/kvm/cpuid.c", "arch/x86/kvm/cpuid.h", "arch/x86/kvm/x86.c", "arch/x86/kvm/vmx/vmx.c",
    "arch/x86/kvm/svm/svm.c", "arch/x86/kvm/vmx/sgx.c", "arch/x86/include/uapi/asm/kvm.h",
    "include/uapi/linux/kvm.h",
)
DEFAULT_QUERY = " OR ".join(f"dfn:{f}" for f in KVM_FILES)
DEFAULT_WINDOW = "2.weeks.ago.."
CRASH_ENV = "KVM_REVIEW_BOT_CRASH_AT"  # tests: SIGKILL ourselves at this point

# point name -> callable, for tests (in-process); CRASH_ENV for a subprocess
HOOKS: dict[str, Callable[[], None]] = {}


def _hook(point: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if point in HOOKS:
        HOOKS[point]()


@dataclass
class BotConfig:
    lore_url: str = "https://lore.kernel.org"
    lists: list[str] = field(default_factory=lambda: ["kvm"])
    query: str = DEFAULT_QUERY
    window: str = DEFAULT_WINDOW
    rate: float = 1.0
    retries: int = 3
    backoff: float = 1.0
    timeout: float = 30.0
    max_results: int = 1000
    poll_interval: float = 600.0
    grace: float = 3600.0
    state: str = ""
    min_severity: str = "warning"
    dry_run: bool = True
    sender: str = ""
    contact: str = ""
    templates: str | None = None
    rules: list[str] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)
    outbox: str | None = None
    smtp: bool = False
    smtp_settings: dict = field(default_factory=dict, repr=False)
    patchwork: bool = False
    patchwork_url: str = ""
    patchwork_project: str = ""
    patchwork_token: str = field(default="", repr=False)
    patchwork_target_url: str = ""
    source: str = "defaults"

    @property
    def search(self) -> str:
        return f"({self.query}) AND rt:{self.window}" if self.window else self.query


def _default_config_path() -> Path | None:
    if os.environ.get("KVM_REVIEW_BOT_CONFIG"):
        return Path(os.environ["KVM_REVIEW_BOT_CONFIG"])
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    path = Path(home) / "kvm-review" / "bot.toml"
    return path if path.is_file() else None


def _state_default() -> str:
    home = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return str(Path(home) / "kvm-review" / "bot.sqlite")


def load_config(path: str | None) -> BotConfig:
    cfg = BotConfig(state=_state_default())
    file = Path(path) if path else _default_config_path()
    if file is None:
        return cfg
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{file}: cannot read the bot config: {exc}") from None
    cfg.source = str(file)
    sections = {
        "lore": {"url": "lore_url", "lists": "lists", "query": "query", "window": "window", "rate": "rate",
                 "retries": "retries", "backoff": "backoff", "timeout": "timeout", "max_results": "max_results"},
        "bot": {"poll_interval": "poll_interval", "grace": "grace", "state": "state"},
        "policy": {"min_severity": "min_severity", "dry_run": "dry_run", "templates": "templates",
                   "rules": "rules", "disable": "disable"},
        "identity": {"from": "sender", "contact": "contact"},
        "delivery": {"outbox": "outbox", "smtp": "smtp", "patchwork": "patchwork"},
        "patchwork": {"url": "patchwork_url", "project": "patchwork_project", "token": "patchwork_token",
                      "target_url": "patchwork_target_url"},
    }
    known = set(sections) | {"smtp"}
    for name in data:
        if name not in known:
            raise InputError(f"{file}: unknown section [{name}] (known: {', '.join(sorted(known))})")
    for name, keys in sections.items():
        table = data.get(name, {})
        for key, value in table.items():
            if key not in keys:
                raise InputError(f"{file}: unknown key {key!r} in [{name}]")
            setattr(cfg, keys[key], value)
    cfg.smtp_settings = {f"smtp_{k}": v for k, v in data.get("smtp", {}).items()}
    if isinstance(cfg.lists, str):
        cfg.lists = [cfg.lists]
    if cfg.min_severity not in ("info", "warning", "error"):
        raise InputError(f"{file}: policy.min_severity must be info, warning or error")
    for name in ("rate", "backoff", "timeout", "poll_interval", "grace"):
        try:
            setattr(cfg, name, float(getattr(cfg, name)))
        except (TypeError, ValueError):
            raise InputError(f"{file}: {name} must be a number") from None
    if cfg.patchwork and not (cfg.patchwork_url and cfg.patchwork_project):
        raise InputError(f"{file}: delivery.patchwork needs [patchwork] url and project")
    cfg.state = os.path.expanduser(cfg.state)
    return cfg


# --- grouping search results into series -----------------------------------


@dataclass
class Group:
    list: str
    anchor: str  # a Message-ID in the series' thread: cover, patch 1 or the parent
    revision: int
    msgids: list[str]
    subject: str


def group(entries) -> list[Group]:
    """Search results -> candidate series: patches (not replies) of one
    revision that thread to the same cover letter or patch 1."""
    from reviewer import b4glue

    info = {e.msgid: (e, b4glue.parse_subject(e.subject)) for e in entries}

    def anchor(msgid: str, depth: int = 0) -> str:
        e, subj = info[msgid]
        parent = e.in_reply_to
        if subj.counter == 0 or subj.expected <= 1 or not parent or depth > 50:
            return msgid
        if parent not in info:
            return parent  # the cover letter (or patch 1): no diff of interest, or not indexed yet
        ps = info[parent][1]
        if not ps.reply and ps.patch and ps.revision == subj.revision and ps.counter < subj.counter:
            return anchor(parent, depth + 1)
        return msgid  # a new revision sent in reply to an older one

    groups: dict[tuple[str, str, int], Group] = {}
    for msgid, (e, subj) in info.items():
        if subj.reply or not subj.patch:
            continue
        key = (e.list, anchor(msgid), subj.revision)
        g = groups.setdefault(key, Group(e.list, key[1], subj.revision, [], subj.subject))
        g.msgids.append(msgid)
        if subj.counter <= 1:
            g.subject = subj.subject
    return sorted(groups.values(), key=lambda g: (g.revision, g.anchor))


def _fkey(f: dict) -> tuple:
    return (f["rule"], f.get("file") or "", f.get("function") or "")


def _describe(f: dict) -> str:
    where = " in " + f["file"] if f.get("file") else ""
    where += f" {f['function']}()" if f.get("function") else ""
    return f"{f['rule']}{where}"


def compare(earlier: list[dict], now: list[dict], min_severity: str) -> dict:
    """Findings matched by rule + file + function."""
    from reviewer.findings import severity_rank

    def keep(fs):
        out = {}
        for f in fs:
            if severity_rank(f["severity"]) >= severity_rank(min_severity):
                out.setdefault(_fkey(f), f)
        return out

    old, new = keep(earlier), keep(now)
    return {"resolved": [_describe(f) for k, f in old.items() if k not in new],
            "remaining": [_describe(f) for k, f in new.items() if k in old],
            "new": [_describe(f) for k, f in new.items() if k not in old]}


def summary_text(comparison: dict, revision: int) -> str:
    lines = [f"Compared with v{comparison['revision']} ({comparison['msgid']}), reviewed earlier:"]
    for title, name in (("resolved", "resolved"), ("still present", "remaining"), (f"new in v{revision}", "new")):
        items = comparison[name]
        lines.append(f"  {title} ({len(items)}):" if items else f"  {title}: none")
        lines += [f"    - {item}" for item in items]
    return "\n".join(lines) + "\n"


def _append(msg, text: str) -> None:
    body = msg.get_content()
    cut = body.find("\n-- \n")
    body = body + "\n" + text if cut < 0 else body[:cut + 1] + text + body[cut:]
    msg.set_content(body, subtype="plain", charset="utf-8", cte="7bit" if body.isascii() else "8bit")


# --- the bot ---------------------------------------------------------------


class Bot:
    def __init__(self, cfg: BotConfig, out=None, stop: threading.Event | None = None):
        from reviewer import lore, mail
        from reviewer import rules as rulesmod
        from reviewer import state as statemod

        self.cfg = cfg
        self.out = out or sys.stderr
        self.stop = stop or threading.Event()  # set (SIGTERM): finish the current step, then return
        self.state = statemod.State(cfg.state)
        me = mail.identity({"from": cfg.sender} if cfg.sender else {})
        self.identity = me
        contact = cfg.contact or me.email
        self.session = lore.PoliteSession(lore.Policy(rate=cfg.rate, retries=int(cfg.retries), backoff=cfg.backoff,
                                                      timeout=cfg.timeout, contact=contact))
        self.lore = lore.Lore(cfg.lore_url, self.session)
        self.ruleset = rulesmod.load(list(cfg.rules), list(cfg.disable))
        self.rules_by_id = {r.id: r for r in self.ruleset.rules}
        self._pw = None

    def log(self, text: str) -> None:
        print(f"kvm-review bot: {text}", file=self.out, flush=True)

    def close(self) -> None:
        self.session.close()
        self.state.close()

    # one cycle ---------------------------------------------------------
    def cycle(self) -> dict:
        done = {"reviewed": 0, "waiting": 0, "delivered": self.deliver_pending()}
        entries = []
        for inbox in self.cfg.lists:
            entries += self.lore.search(inbox, self.cfg.search, self.cfg.max_results)
        new = self.state.see(entries)
        todo = [g for g in group(entries) if self.state.unassigned(g.msgids)]
        if new or todo:
            self.log(f"{len(entries)} results, {new} new, {len(todo)} series to look at")
        for i, g in enumerate(todo, 1):
            if self.stop.is_set():
                self.log(f"stopping: {len(todo) - i + 1} series left for the next run")
                break
            if not self.state.unassigned(g.msgids):
                continue  # reviewed already, as part of another group of the same series
            if len(todo) > 1:
                self._progress(i, len(todo), g)
            result = self.process(g)
            done[result] = done.get(result, 0) + 1
            done["delivered"] += self.deliver_pending()
        _hook("cycle")
        return done

    def _progress(self, i: int, total: int, g: Group) -> None:
        width = 20
        filled = width * i // total
        bar = "#" * filled + "-" * (width - filled)
        subject = g.subject if len(g.subject) <= 50 else g.subject[:47] + "..."
        self.log(f"[{bar}] {i}/{total} v{g.revision} {subject}")

    def process(self, g: Group) -> str:
        from reviewer import b4glue, mail
        from reviewer import series as seriesmod

        b4glue.configure({"b4.midmask": f"{self.lore.inbox_url(g.list)}/%s"}, network=True)
        b4glue.use_session(self.session)
        first_seen = self.state.first_seen(g.msgids)
        outages = self.session.failures
        skipped: list[str] = []  # messages over the limits (reviewer/limits.py), left out
        try:
            msgs = b4glue.fetch_thread(g.anchor, nocache=True, skipped=skipped)
        except InputError as exc:
            if self.session.failures != outages:
                raise  # lore is down or refusing us: stop here, every series is tried again next run
            return self._failed(g, first_seen, exc)  # lore answered: nothing usable for this thread
        for what in skipped:
            self.log(f"thread of <{g.anchor}>: {what}")
        try:
            thread_ids = [mail.clean_msgid(m.get("Message-ID")) for m in msgs]
            thread_ids = [m for m in thread_ids if m]
            mseries = b4glue.series_from_messages(msgs, g.revision)
            model = seriesmod.build(mseries)
        except InputError as exc:
            if str(exc).startswith("no patches found"):
                info = self._info(g, g.anchor, first_seen, None)
                self.state.finish(info, "skipped", g.msgids, [], None, [])
                self.log(f"skipped {g.anchor}: {exc}")
                return "skipped"
            return self._failed(g, first_seen, exc)
        except Exception as exc:  # a message broke the parser (our bug): this series only
            return self._failed(g, first_seen, exc)
        try:
            return self._review(g, model, first_seen, thread_ids, "; ".join(skipped) or None)
        except StateError:
            raise
        except Exception as exc:  # InputError, or a message that broke the review (our bug)
            return self._failed(g, first_seen, exc, model)

    def _failed(self, g: Group, first_seen: float, exc: Exception, model=None) -> str:
        """Record the series as failed (one log line); retried only when a new
        message of it arrives."""
        why = str(exc) if isinstance(exc, InputError) else \
            f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
        info = self._info(g, model.message_id if model else g.anchor, first_seen, model)
        self.state.finish(info, "failed", g.msgids, [], None, [], error=why)
        self.log(f"failed v{info['revision']} <{info['root']}>: {why}")
        return "failed"

    def _review(self, g: Group, model, first_seen: float, thread_ids: list[str], skipped: str | None = None) -> str:
        from reviewer import mail, pipeline

        info = self._info(g, model.message_id, first_seen, model)
        known = self.state.series(info["root"], info["revision"])
        if known is not None and known["status"] in ("reviewed", "skipped"):
            self.state.finish(dict(info, complete=known["complete"]), known["status"], g.msgids,
                              json.loads(known["findings"] or "[]"),
                              json.loads(known["comparison"]) if known["comparison"] else None, [],
                              error=known["error"])
            return "known"
        if not model.complete and time.time() - first_seen < self.cfg.grace:
            self.state.wait(info)
            have = len(model.patches)
            self.log(f"waiting for v{model.revision} {model.subject!r}: {have}/{model.expected} patches")
            return "waiting"
        review = pipeline.review(model, self.ruleset)
        _hook("after-review")
        findings = [f.as_dict() for f in review.findings]
        comparison = None
        prior = self.state.earlier(info["key"], model.revision, thread_ids)
        if prior is not None:
            comparison = compare(json.loads(prior["findings"] or "[]"), findings, self.cfg.min_severity)
            comparison.update(revision=prior["revision"], msgid=f"<{prior['root']}>")
        # a revision that resolves everything the last one was told about
        # still gets a (short) reply, so the thread shows it
        resolved_all = comparison is not None and bool(comparison["resolved"])
        replies = mail.replies(review, self.identity, self.cfg.templates, min_severity=self.cfg.min_severity,
                               rules_by_id=self.rules_by_id, reply_when_clean=resolved_all)
        if comparison is not None and replies:
            _append(replies[0].msg, summary_text(comparison, model.revision))
        deliveries = []
        for reply in replies:
            payload = mail.as_bytes(reply.msg)
            rid = reply.msg["Message-ID"].strip("<>")
            if self.cfg.outbox:
                deliveries.append({"channel": "outbox", "msgid": rid, "payload": payload})
            if self.cfg.smtp:
                deliveries.append({"channel": "smtp", "msgid": rid, "payload": payload})
        if self.cfg.patchwork:
            deliveries += self._checks(model, review.findings, g.list)
        msgids = set(g.msgids) | {p.message_id for p in model.patches}
        if model.cover is not None:
            msgids.add(model.cover.message_id)
        self.state.finish(info, "reviewed", sorted(msgids), findings, comparison, deliveries, error=skipped,
                          replies=[mail.as_bytes(r.msg) for r in replies],
                          checklist=mail.checklist(mail.at_least(review, self.cfg.min_severity), self.rules_by_id))
        _hook("after-record")
        shown = sum(1 for r in replies)
        extra = ""
        if comparison is not None:
            extra = (f"; since v{comparison['revision']}: {len(comparison['resolved'])} resolved, "
                     f"{len(comparison['remaining'])} remaining, {len(comparison['new'])} new")
        self.log(f"reviewed v{model.revision} {model.subject!r}: {len(findings)} findings, "
                 f"{shown} repl{'y' if shown == 1 else 'ies'}{extra}")
        return "reviewed"

    def _info(self, g: Group, root: str, first_seen: float, model) -> dict:
        author = model.patches[0].author_email.lower() if model else ""
        subject = model.subject if model else g.subject
        change_id = model.change_id if model else None
        key = f"change-id:{change_id}" if change_id else f"{author}|{' '.join(subject.lower().split())}"
        return {"root": root, "revision": model.revision if model else g.revision, "key": key, "list": g.list,
                "subject": subject, "author": author, "change_id": change_id,
                "name": model.patches[0].author_name if model else "",
                "patch_list": json.dumps([{"index": p.index, "subject": p.subject, "msgid": p.message_id}
                                          for p in model.patches]) if model else None,
                "expected": model.expected if model else 0, "complete": int(bool(model and model.complete)),
                "first_seen": first_seen}

    def _checks(self, model, findings, inbox: str) -> list[dict]:
        from reviewer import patchwork

        out = []
        for patch in model.patches:
            mine = [f for f in findings if f.patch == patch.index or patch.index in f.related]
            severities = [f.severity for f in mine]
            verdict = patchwork.state_for(severities)
            shown = sorted({f.rule for f in mine if f.severity in ("warning", "error")})
            description = (f"{len(shown)} concern(s): {', '.join(shown)}" if shown
                           else "no CPUID or userspace-ABI concerns")
            template = self.cfg.patchwork_target_url or f"{self.lore.inbox_url(inbox)}/{{msgid}}/"
            target = template.replace("{msgid}", patch.message_id)
            out.append({"channel": "patchwork", "msgid": patch.message_id,
                        "target": json.dumps({"state": verdict, "description": description, "target_url": target})})
        return out

    # delivery ------------------------------------------------------------
    def deliver_pending(self) -> int:
        n = 0
        for row in self.state.pending():
            if self.stop.is_set():
                break  # still pending: sent by the next run
            self.state.mark(row["id"], "sending", attempt=True)
            _hook("before-send")
            try:
                status = self._deliver(row)
            except MaybeSent as exc:  # left "sending": reported by `bot status`, never resent
                self.state.mark(row["id"], "sending", str(exc))
                self.log(f"{row['channel']} delivery of <{row['msgid']}> may have gone out, not resent "
                         f"(see: kvm-review bot status): {exc}")
                continue
            except InputError as exc:
                failed = row["attempts"] + 1 >= 3
                self.state.mark(row["id"], "failed" if failed else "pending", str(exc))
                self.log(f"{row['channel']} delivery of <{row['msgid']}> failed"
                         f"{'' if failed else ' (will retry)'}: {exc}")
                continue
            _hook("after-send")
            self.state.mark(row["id"], status)
            n += 1
        return n

    def _deliver(self, row) -> str:
        from reviewer import deliver, mail
        from reviewer.mail import Reply

        if row["channel"] == "patchwork":
            return self._post_check(row)
        msg = email.parser.BytesParser(policy=mail.MBOX_POLICY).parsebytes(row["payload"])
        if row["channel"] == "outbox":
            deliver.to_outbox([Reply(0, msg)], self.cfg.outbox)
            return "sent"
        from reviewer.config import Config

        settings = deliver.smtp_settings(Config(dict(self.cfg.smtp_settings)))
        deliver.send([Reply(0, msg)], settings, dry_run=self.cfg.dry_run, out=self.out)
        return "dry-run" if self.cfg.dry_run else "sent"

    def _post_check(self, row) -> str:
        from reviewer import patchwork

        check = json.loads(row["target"])
        if self.cfg.dry_run:
            self.log(f"dry run: would post check {check['state']} for <{row['msgid']}> to {self.cfg.patchwork_url}")
            return "dry-run"
        if self._pw is None:
            self._pw = patchwork.Patchwork(self.cfg.patchwork_url, self.cfg.patchwork_project,
                                           self.cfg.patchwork_token, timeout=self.cfg.timeout)
        patch_id = self._pw.find_patch(row["msgid"])
        if patch_id is None:
            raise InputError(f"patchwork: no patch with Message-ID <{row['msgid']}> in {self.cfg.patchwork_project}")
        self._pw.post_check(patch_id, check["state"], check["description"], check["target_url"])
        return "sent"


# --- status ----------------------------------------------------------------


def status(cfg: BotConfig, out=None) -> int:
    from reviewer import state as statemod

    out = out or sys.stdout
    if not Path(cfg.state).exists():
        print(f"no state yet ({cfg.state}): the bot has not run", file=out)
        return EXIT_CLEAN
    st = statemod.State(cfg.state)
    try:
        c = st.counts()
        print(f"state: {cfg.state}", file=out)
        print(f"messages seen: {c['messages']}", file=out)
        print("series: " + (", ".join(f"{k} {v}" for k, v in sorted(c["series"].items())) or "none"), file=out)
        print("deliveries: " + (", ".join(f"{k} {v}" for k, v in sorted(c["deliveries"].items())) or "none"),
              file=out)
        for row in st.rows("SELECT * FROM series WHERE status = 'waiting' ORDER BY first_seen"):
            print(f"  waiting: v{row['revision']} {row['subject']!r} <{row['root']}> "
                  f"(first seen {time.strftime('%Y-%m-%d %H:%M', time.gmtime(row['first_seen']))} UTC)", file=out)
        for row in st.rows("SELECT * FROM series WHERE status = 'failed' ORDER BY updated DESC LIMIT 20"):
            print(f"  failed: v{row['revision']} {row['subject']!r} <{row['root']}>: {row['error']} "
                  "(not retried until a new message of it arrives)", file=out)
        for row in st.rows("SELECT * FROM series WHERE status = 'reviewed' ORDER BY updated DESC LIMIT 20"):
            findings = json.loads(row["findings"] or "[]")
            line = f"  reviewed: v{row['revision']} {row['subject']!r} <{row['root']}>: {len(findings)} findings"
            if row["comparison"]:
                cmp = json.loads(row["comparison"])
                line += (f"; since v{cmp['revision']}: {len(cmp['resolved'])} resolved, "
                         f"{len(cmp['remaining'])} remaining, {len(cmp['new'])} new")
            unparsed = [f["message"] for f in findings if f["rule"] == UNPARSED]
            if unparsed:
                line += "; " + "; ".join(unparsed)
            if row["error"]:  # messages of its thread left out
                line += f"; {row['error']}"
            print(line, file=out)
        stuck = st.rows("SELECT d.*, s.subject FROM deliveries d JOIN series s ON s.id = d.series_id "
                        "WHERE d.status IN ('sending', 'failed') ORDER BY d.id")
        for row in stuck:
            what = (f"failed: {row['error']}" if row["status"] == "failed" else
                    f"may or may not have gone out ({row['error'] or 'interrupted while sending'})")
            print(f"  NEEDS A HUMAN: {row['channel']} <{row['msgid']}> ({row['subject']!r}): {what}; "
                  f"once checked: kvm-review bot resolve {row['msgid']} --as sent|resend", file=out)
    finally:
        st.close()
    return EXIT_CLEAN


def resolve(cfg: BotConfig, msgid: str | None, verdict: str | None, out=None) -> int:
    """A human's word on a delivery that needs one: it went out (``sent``),
    or send it again on the next run (``resend``)."""
    from reviewer import state as statemod

    if not msgid or not verdict:
        raise InputError("bot resolve needs a Message-ID and --as sent or --as resend")
    if not Path(cfg.state).exists():
        raise InputError(f"no state yet ({cfg.state}): the bot has not run")
    msgid = msgid.strip().strip("<>")
    status = "sent" if verdict == "sent" else "pending"
    st = statemod.State(cfg.state)
    try:
        n = st.resolve(msgid, status)
    finally:
        st.close()
    if not n:
        raise InputError(f"no delivery of <{msgid}> needs a human (see: kvm-review bot status)")
    what = "marked sent" if status == "sent" else "queued: the next run sends it"
    print(f"<{msgid}>: {what} ({n} deliver{'y' if n == 1 else 'ies'})", file=out or sys.stdout)
    return EXIT_CLEAN


# --- command line ----------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kvm-review bot", description="Watch lore, review new KVM x86 series, "
                                "reply (dry run unless configured), post patchwork checks.")
    p.add_argument("--config", metavar="FILE", help="bot configuration (TOML; default: $KVM_REVIEW_BOT_CONFIG "
                   "or ~/.config/kvm-review/bot.toml)")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (for cron)")
    p.add_argument("action", nargs="?", choices=("run", "status", "resolve", "web", "export-html"), default="run")
    p.add_argument("msgid", nargs="?", metavar="MSGID|DIR",
                   help="resolve: the Message-ID `bot status` names; export-html: the directory to write")
    p.add_argument("--listen", metavar="HOST:PORT", help="web: the address to serve on (default 127.0.0.1:8080)")
    p.add_argument("--as", dest="verdict", choices=("sent", "resend"),
                   help="resolve: it went out (sent), or send it again on the next run (resend)")
    return p


def run(cfg: BotConfig, once: bool, stop: threading.Event | None = None, out=None) -> int:
    """Poll until ``stop`` is set (SIGTERM/SIGINT): the step under way is
    finished and recorded, then exit 0. A state file that cannot be written
    ends the bot (exit 2) even without ``once``: nothing it did would be kept."""
    import sqlite3

    stop = stop or threading.Event()
    bot = Bot(cfg, out=out, stop=stop)
    try:
        while not stop.is_set():
            try:
                bot.cycle()
            except StateError:
                raise
            except sqlite3.Error as exc:  # a read outside any transaction
                raise bot.state.error(exc, "read") from None
            except InputError as exc:
                if once:
                    raise
                bot.log(f"error (will retry in {cfg.poll_interval:g}s): {exc}")
            if once or stop.wait(cfg.poll_interval):
                break
        return EXIT_CLEAN
    finally:
        bot.close()


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_intermixed_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.action not in ("resolve", "export-html") and (args.msgid or args.verdict):
        raise InputError(f"bot {args.action} takes no Message-ID or --as (they are for: bot resolve)")
    if args.listen and args.action != "web":
        raise InputError(f"bot {args.action} takes no --listen (it is for: bot web)")
    cfg = load_config(args.config)
    if args.action == "status":
        return status(cfg)
    if args.action == "resolve":
        return resolve(cfg, args.msgid, args.verdict)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    if args.action in ("web", "export-html"):
        from reviewer import web

        return web.main(cfg, args.action, args.msgid, args.listen, stop)
    return run(cfg, args.once, stop)


__all__ = ["main", "run", "status", "resolve", "load_config", "EXIT_INPUT"]
