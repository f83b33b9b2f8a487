"""Findings -> review replies as mail: inline per-patch replies and a series
checklist, rendered from jinja2 templates and built with the stdlib ``email``
package. Nothing taken from a patch can reach a header unneutralised."""

from __future__ import annotations

import datetime
import email.utils
import re
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage

from reviewer import __version__, pack
from reviewer.findings import UNPARSED, Finding, severity_rank
from reviewer.pipeline import Review
from reviewer.series import Patch

WIDTH = 72
MAX_QUOTED = 900  # a quoted line longer than this is cut (SMTP allows 998)
MBOX_POLICY = policy.default.clone(linesep="\n", max_line_length=78)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_MSGID = re.compile(r"^[!-;=?-~]+@[!-;=?-~]+$")  # printable, no < > or space
_RE_PREFIX = re.compile(r"^(\s*(re|aw|sv)\s*:\s*)+", re.I)


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


@dataclass
class Reply:
    patch: int  # 0 = the cover letter
    msg: EmailMessage


def clean(text: str | None) -> str:
    """A header value with every control character (CR, LF...) neutralised."""
    return " ".join(_CONTROL.sub(" ", str(text or "")).split())


def clean_msgid(text: str | None) -> str | None:
    value = clean(text).strip("<>")
    return value if _MSGID.match(value) else None


def _address(name: str, addr: str) -> Address | None:
    try:
        user, _, domain = clean(addr).rpartition("@")
        if not user or not domain:
            return None
        return Address(display_name=clean(name), username=user, domain=domain)
    except (ValueError, IndexError, TypeError):
        return None


def identity(cfg) -> Identity:
    """Our From: the config's ``from``, else git's user.name/user.email."""
    configured = cfg.get("from")
    if configured:
        name, addr = email.utils.parseaddr(clean(configured))
        if addr:
            return Identity(name, addr)

    def git(key: str) -> str:
        try:
            out = subprocess.run(["git", "config", key], capture_output=True, text=True, check=False)
        except OSError:
            return ""
        return out.stdout.strip()

    addr = git("user.email")
    return Identity(git("user.name") or "kvm-review", addr or "kvm-review@localhost")


def wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(" ".join(str(text).split()), WIDTH, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)


def _environment(user_dir: str | None):
    from jinja2 import ChoiceLoader, FileSystemLoader, FunctionLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    loaders = ([FileSystemLoader(user_dir)] if user_dir else []) + [FunctionLoader(pack.template)]
    env = SandboxedEnvironment(loader=ChoiceLoader(loaders), trim_blocks=True, lstrip_blocks=True,
                               keep_trailing_newline=True, autoescape=False, undefined=StrictUndefined)
    env.filters["wrap"] = wrap
    return env


def _render(env, name: str, context: dict) -> str:
    from jinja2 import TemplateError

    from reviewer.errors import InputError

    try:
        body = env.get_template(name).render(**context)
    except TemplateError as exc:
        raise InputError(f"template {name}: {type(exc).__name__}: {exc}") from None
    return _fit(body)


def _fit(body: str) -> str:
    """Lines of ours fit 72 columns; quoted lines ("> ...") are left alone."""
    out = []
    for line in body.split("\n"):
        if len(line) > WIDTH and not line.startswith(">") and line != "-- ":
            out += textwrap.wrap(line, WIDTH, break_long_words=False, break_on_hyphens=False) or [""]
        else:
            out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def _patches(indexes: list[int], total: int) -> str:
    indexes = sorted(set(indexes))
    if not indexes or indexes == [0]:
        return "the series"
    named = ", ".join(f"{i}/{total}" for i in indexes if i)
    return ("patch " if len(indexes) == 1 else "patches ") + named


def checklist(review: Review, rules_by_id: dict) -> list[dict]:
    """One "[ ]" item per distinct rule checklist text, weightiest first."""
    order = {rule_id: i for i, rule_id in enumerate(rules_by_id)}
    items: dict[str, list[int]] = {}
    ranked = sorted(review.findings, key=lambda f: (-severity_rank(f.original_severity or f.severity),
                                                    order.get(f.rule, len(order))))
    for f in ranked:
        text = rules_by_id[f.rule].checklist if f.rule in rules_by_id else None
        if text:
            items.setdefault(text, []).extend(f.related or [f.patch])
    total = review.series.expected
    return [{"text": text, "patches": _patches(p, total)} for text, p in items.items()]


def at_least(review: Review, min_severity: str) -> Review:
    """The review cut to the findings a reply shows: ``min_severity`` and up,
    but for a patch we could not read (the report and the bot's record carry it)."""
    return Review(review.series, [f for f in review.findings
                                  if severity_rank(f.severity) >= severity_rank(min_severity) and f.rule != UNPARSED])


def _item(f: Finding, rules_by_id: dict) -> dict:
    rule = rules_by_id.get(f.rule)
    return {
        "file": f.file, "hunk_header": f.hunk_header, "trimmed": f.trimmed,
        "quote": [line[:MAX_QUOTED] for line in f.excerpt],
        "comment": f.message, "why": rule.why if rule else "",
        "references": rule.references if rule else [], "acknowledged": f.acknowledged,
        "rule": f.rule, "severity": f.severity,
    }


def _opening(text: str, most: int = 6) -> list[str]:
    """The cover letter's first paragraph, as a reply quotes it."""
    paragraph = text.strip("\n").split("\n\n", 1)[0].splitlines()
    lines = [_CONTROL.sub(" ", line)[:MAX_QUOTED] for line in paragraph[:most]]
    return lines + (["[...]"] if len(paragraph) > most else [])


def _date(iso: str) -> str:
    try:
        return email.utils.format_datetime(datetime.datetime.fromisoformat(iso))
    except ValueError:
        return clean(iso)


def _headers(parent: EmailMessage | None, author: tuple[str, str], subject: str,
             me: Identity, now: datetime.datetime, make_msgid: Callable[[], str]) -> EmailMessage:
    msg = EmailMessage(policy=MBOX_POLICY)
    sender = _address(me.name, me.email)
    to = _address(*author)
    msg["From"] = sender if sender is not None else me.email
    if to is not None:
        msg["To"] = to
    seen = {a.addr_spec.lower() for a in (sender, to) if a is not None}
    cc = []
    if parent is not None:
        fields = [clean(v) for h in ("To", "Cc") for v in parent.get_all(h, [])]
        for name, addr in email.utils.getaddresses(fields):
            a = _address(name, addr)
            if a is not None and a.addr_spec.lower() not in seen:
                seen.add(a.addr_spec.lower())
                cc.append(a)
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = "Re: " + _RE_PREFIX.sub("", clean(subject))
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = make_msgid()
    if parent is not None:
        parent_id = clean_msgid(parent.get("Message-ID"))
        refs = [r for r in (clean_msgid(x) for x in clean(parent.get("References")).split()) if r]
        if parent_id:
            msg["In-Reply-To"] = f"<{parent_id}>"
            refs = [r for r in refs if r != parent_id] + [parent_id]
        if refs:
            msg["References"] = " ".join(f"<{r}>" for r in refs)
    msg["X-Mailer"] = f"kvm-review {__version__}"
    return msg


def _body(msg: EmailMessage, text: str) -> None:
    cte = "7bit" if text.isascii() else "8bit"
    msg.set_content(text, subtype="plain", charset="utf-8", cte=cte)


def replies(review: Review, me: Identity, templates: str | None = None, reply_when_clean: bool = False,
            min_severity: str = "info", rules_by_id: dict | None = None,
            now: datetime.datetime | None = None, make_msgid: Callable[[], str] | None = None) -> list[Reply]:
    """The replies a reviewer would send for ``review``: one per patch with
    findings, and the checklist to the cover letter (or in patch 1's reply)."""
    if rules_by_id is None:
        from reviewer import rules as rulesmod
        rules_by_id = {r.id: r for r in rulesmod.load().rules}
    now = now or datetime.datetime.now(datetime.UTC)
    domain = me.email.rpartition("@")[2] or "localhost"
    make_msgid = make_msgid or (lambda: email.utils.make_msgid("kvm-review", domain=domain))
    env = _environment(templates)
    series = review.series
    shown_review = at_least(review, min_severity)
    shown = shown_review.findings
    if not shown and not reply_when_clean:
        return []
    items = checklist(shown_review, rules_by_id)
    common = {"tool": "kvm-review", "version": __version__}
    out: list[Reply] = []
    if series.cover is not None:
        cover = series.cover
        context = dict(common, date=_date(cover.date), author=clean(cover.author_name or cover.author_email),
                       quote=_opening(cover.mail.message) or [clean(cover.full_subject)],
                       checklist=items, acknowledged=any(f.acknowledged for f in shown),
                       rules=sorted({f.rule for f in shown if f.patch == 0}))
        body = _render(env, "series_reply.txt.j2", context)
        msg = _headers(cover.mail.msg, (cover.author_name, cover.author_email),
                       cover.mail.msg.get("Subject", cover.full_subject), me, now, make_msgid)
        _body(msg, body)
        out.append(Reply(0, msg))
    for patch in series.patches:
        line_findings = [f for f in shown if f.patch == patch.index and f.file]
        carries_checklist = series.cover is None and patch is series.patches[0]
        if not line_findings and not (carries_checklist and (items or reply_when_clean)):
            continue
        context = dict(common, date=_date(patch.date), author=clean(patch.author_name or patch.author_email),
                       findings=[_item(f, rules_by_id) for f in line_findings],
                       checklist=items if carries_checklist else [],
                       rules=sorted({f.rule for f in line_findings}))
        body = _render(env, "patch_reply.txt.j2", context)
        out.append(Reply(patch.index, _message(patch, body, me, now, make_msgid)))
    return out


def _message(patch: Patch, body: str, me: Identity, now, make_msgid) -> EmailMessage:
    parent = patch.mail.msg
    subject = parent.get("Subject", patch.full_subject) if parent is not None else patch.full_subject
    msg = _headers(parent, (patch.author_name, patch.author_email), subject, me, now, make_msgid)
    _body(msg, body)
    return msg


def as_bytes(msg: EmailMessage, linesep: str = "\n") -> bytes:
    return msg.as_bytes(policy=MBOX_POLICY.clone(linesep=linesep))


def as_mbox(replies: list[Reply]) -> str:
    """An mbox of the replies, for git send-email or mutt."""
    out = []
    for reply in replies:
        raw = as_bytes(reply.msg).decode("utf-8")
        raw = re.sub(r"^(>*From )", r">\1", raw, flags=re.M)
        out.append("From kvm-review Thu Jan  1 00:00:00 1970\n" + raw.rstrip("\n") + "\n\n")
    return "".join(out)
