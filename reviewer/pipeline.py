"""source -> series model -> analysis -> findings, for any input.

The CLI, the pre-send check and the bot all call :func:`load_series` and
:func:`review`; rendering and delivery happen after, elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage

from reviewer import analysis, b4glue, series, sources
from reviewer.errors import InputError
from reviewer.findings import Finding
from reviewer.rules import RuleSet

SLOW_RULE_SECONDS = 1.0


@dataclass
class Review:
    series: series.Series
    findings: list[Finding]
    slow_rules: list[tuple[str, float]] = field(default_factory=list)  # (rule id, seconds)


def messages_for(inputs: list[str], repo: str | None = None, lore: str | None = None,
                 nocache: bool = False) -> list[EmailMessage]:
    """Every message the inputs name, fetched or read."""
    if repo is not None:
        if len(inputs) != 1:
            raise InputError("--repo takes exactly one git range (A..B)")
        return sources.from_git(repo, inputs[0])
    msgs: list[EmailMessage] = []
    for arg in inputs:
        remote = None if arg == "-" else sources.parse_remote(arg)
        if remote is None:
            msgs += sources.from_path(arg)
        else:
            msgs += fetch_remote(remote.msgid, lore or remote.base_url, nocache)
    return msgs


_sessions: dict = {}


def _session():
    """One polite session per policy: rate limit, bounded retries, one-line errors."""
    from reviewer import lore

    policy = lore.Policy.from_env()
    key = repr(policy)
    if key not in _sessions:
        _sessions[key] = lore.PoliteSession(policy)
    return _sessions[key]


def fetch_remote(msgid: str, base: str | None = None, nocache: bool = False) -> list[EmailMessage]:
    """The thread holding ``msgid`` from lore: ``base``, else b4's b4.midmask."""
    b4glue.configure({"b4.midmask": f"{base}/%s"} if base else {}, network=True)
    b4glue.use_session(_session())
    return b4glue.fetch_thread(msgid, nocache)


def load_series(msgs: list[EmailMessage], revision: int | None = None) -> series.Series:
    return series.build(b4glue.series_from_messages(msgs, revision))


def review(model: series.Series, rules: RuleSet) -> Review:
    timings: dict[str, float] = {}
    findings = analysis.analyze(model, rules, timings)
    slow = sorted(((rule, t) for rule, t in timings.items() if t > SLOW_RULE_SECONDS), key=lambda x: -x[1])
    return Review(model, findings, slow)
