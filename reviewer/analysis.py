"""Apply the rules to a series: line rules hunk by hunk, then series rules."""

from __future__ import annotations

import time
from itertools import groupby

from reviewer import predicates
from reviewer.findings import UNPARSED, Finding, lower, severity_rank
from reviewer.rules import Matcher, Rule, RuleSet
from reviewer.series import MAX_LINE, DiffLine, FileDiff, Hunk, Patch, Series

MAX_MAIL_TEXT = 100_000  # and this much of a changelog or cover letter
FOLLOW_WINDOW = 4
EXCERPT_BEFORE = 3
EXCERPT_AFTER_MAX = 4  # lines to finish a statement split over several


def _follows(matcher: Matcher, hunk: Hunk, index: int) -> bool:
    kind = hunk.lines[index].kind
    seen = 0
    for line in hunk.lines[index + 1:]:
        if line.kind not in (" ", kind):
            continue
        seen += 1
        if seen > FOLLOW_WINDOW:
            return False
        wanted = matcher.followed_by_kind
        if wanted == "context" and line.kind != " ":
            continue
        if wanted == "changed" and line.kind == " ":
            continue
        text = line.text[:MAX_LINE]
        if any(p.search(text) for p in matcher.followed_by):
            return not any(p.search(text) for p in matcher.exclude_patterns)
    return False


def _candidates(matcher: Matcher, patch: Patch, hunk: Hunk) -> list[int]:
    if not any(matcher.function_matches(f) for f in hunk.changed_functions):
        return []
    if matcher.any_pattern is not None and not matcher.any_pattern.search(hunk.changed_text):
        return []  # the common case: nothing in this hunk can match
    found = []
    for i in hunk.changed:
        line = hunk.lines[i]
        if not matcher.function_matches(line.function):
            continue
        text = line.text[:MAX_LINE]
        if matcher.any_pattern is not None and not matcher.any_pattern.search(text):
            continue
        if matcher.any_exclude is not None and matcher.any_exclude.search(text):
            continue
        if matcher.followed_by and not _follows(matcher, hunk, i):
            continue
        if matcher.within and not any(p.search(hunk.opener(i)[0][:MAX_LINE]) for p in matcher.within):
            continue
        if not all(predicates.LINE_PREDICATES[n](matcher, patch, hunk, i) for n in matcher.predicates):
            continue
        found.append(i)
    return found


def _anchor(side: str, hunk: Hunk, indexes: list[int]) -> int | None:
    added = [i for i in indexes if hunk.lines[i].added]
    removed = [i for i in indexes if hunk.lines[i].removed]
    if side == "added":
        return added[0] if added and not removed else None
    if side == "removed":
        return removed[0] if removed and not added else None
    if side == "modified":
        return added[0] if added and removed else None
    return (added or removed)[0]


def excerpt(hunk: Hunk, first: int, last: int) -> list[str]:
    """The hunk lines around a finding, as a diff shows them: a little
    context before, and through the end of the last statement."""
    start = max(0, first - EXCERPT_BEFORE)
    end = last
    while end + 1 < len(hunk.lines) and end - last < EXCERPT_AFTER_MAX \
            and not hunk.lines[end].text.rstrip().endswith((";", "{", "}")):
        end += 1
    return [ln.kind + ln.text for ln in hunk.lines[start:end + 1]]


def _line_no(line: DiffLine) -> int | None:
    return line.old_lineno if line.removed else line.new_lineno


def _fill(text: str, fdiff: FileDiff | None, function: str | None) -> str:
    if fdiff is not None:
        text = text.replace("{file}", fdiff.path)
    return text.replace("{function}", f"{function}()" if function else "this code")


def line_findings(rule: Rule, patch: Patch) -> list[Finding]:
    matcher = rule.matcher
    out = []
    for fdiff in patch.files:
        if not matcher.file_matches(fdiff.path):
            continue
        for hunk in fdiff.hunks:
            indexes = _candidates(matcher, patch, hunk)
            for function, group in groupby(indexes, key=lambda i: hunk.lines[i].function):
                group = list(group)
                anchor = _anchor(matcher.side, hunk, group)
                if anchor is None:
                    continue
                line = hunk.lines[anchor]
                out.append(Finding(
                    rule=rule.id, category=rule.category, severity=rule.severity,
                    patch=patch.index, message_id=patch.message_id,
                    message=_fill(rule.message, fdiff, function),
                    file=fdiff.path, line=_line_no(line), function=function,
                    excerpt=excerpt(hunk, group[0], group[-1]), hunk_header=hunk.header,
                    related=[patch.index], trimmed=group[0] > EXCERPT_BEFORE,
                ))
    return out


def _acknowledges(rules: RuleSet, text: str) -> bool:
    text = text[:MAX_MAIL_TEXT]
    return any(p.search(text) for p in rules.acknowledge_patterns)


def series_findings(rule: Rule, series: Series, findings: list[Finding]) -> list[Finding]:
    predicate = predicates.SERIES_PREDICATES[rule.predicate]
    out = []
    for index, related in predicate(series, findings, rule.params):
        msgid = next((p.message_id for p in series.patches if p.index == index), series.message_id)
        out.append(Finding(rule=rule.id, category=rule.category, severity=rule.severity,
                           patch=index, message_id=msgid, message=_fill(rule.message, None, None),
                           related=related))
    return out


def unparsed(patch: Patch) -> Finding:
    """A patch whose diff could not be read is an error of its own; the
    rest of the series is reviewed as usual."""
    return Finding(rule=UNPARSED, category="process", severity="error", patch=patch.index,
                   message_id=patch.message_id, message=f"patch {patch.index} could not be parsed: {patch.problem}",
                   related=[patch.index])


def analyze(series: Series, rules: RuleSet, timings: dict[str, float] | None = None) -> list[Finding]:
    """All findings for ``series``, in patch, file and line order.

    ``timings``, when given, receives the seconds each rule took.
    """
    clock = timings if timings is not None else {}
    findings: list[Finding] = [unparsed(p) for p in series.patches if p.problem]
    cover_acks = series.cover is not None and _acknowledges(rules, series.cover.text)
    line_rules = [r for r in rules.rules if r.kind == "line"]
    for patch in series.patches:
        acked = None  # the changelog is searched only if a finding needs it
        for rule in line_rules:
            start = time.perf_counter()
            found = line_findings(rule, patch)
            clock[rule.id] = clock.get(rule.id, 0.0) + time.perf_counter() - start
            for finding in found:
                finding.original_severity = finding.severity
                if rule.acknowledgeable:
                    if acked is None:
                        acked = cover_acks or _acknowledges(rules, patch.message)
                    if acked:
                        finding.acknowledged = True
                        finding.severity = lower(finding.severity)
                findings.append(finding)
    for rule in rules.rules:
        if rule.kind == "series":
            findings += series_findings(rule, series, findings)
    findings.sort(key=lambda f: (f.patch, f.file or "", f.line or 0, f.rule))
    return findings


def worst(findings: list[Finding]) -> str | None:
    if not findings:
        return None
    return max((f.severity for f in findings), key=severity_rank)
