"""``rules test``: every rule's examples must fire, or not fire."""

from __future__ import annotations

from reviewer import analysis, pipeline, series, sources
from reviewer.b4glue import Mail
from reviewer.errors import InputError
from reviewer.rules import Rule, RuleSet


def example_series(text: str) -> series.Series:
    """A bare diff becomes a one-patch series; a full mail goes through b4."""
    text = text.lstrip("\n")
    if text.startswith("diff --git") or text.startswith("--- "):
        mail = Mail(msg=None, msgid="example@kvm-review", subject="example", full_subject="[PATCH] example",
                    counter=1, fromname="Example", fromemail="example@example.com", date="",
                    message="example", basement=text, trailers=[])
        patch = series._patch(1, mail)
        return series.Series("example", 1, 1, True, None, [patch])
    return pipeline.load_series(sources._messages(text.encode(), "example"))


def fired(rule: Rule, rules: RuleSet, text: str) -> bool:
    model = example_series(text)
    broken = next((p.problem for p in model.patches if p.problem), None)
    if broken:  # an example must be read whole, or it proves nothing
        raise InputError(broken)
    found = analysis.analyze(model, rules)
    return any(f.rule == rule.id for f in found)


def run(rules: RuleSet) -> list[tuple[str, str]]:
    """(rule id, what went wrong) for every failing example."""
    failures = []
    for rule in rules.rules:
        for text, want, name in ((rule.fires, True, "fires"), (rule.passes, False, "passes")):
            try:
                got = fired(rule, rules, text)
            except InputError as exc:
                failures.append((rule.id, f"example {name}: {exc}"))
                continue
            if got != want:
                failures.append((rule.id, f"example {name}: rule {'did not fire' if want else 'fired'}"))
    return failures
