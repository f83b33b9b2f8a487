"""Apply the rules to a series: line rules hunk by hunk, then series rules."""

from __future__ import annotations

import fnmatch
import functools
import re
import time
from dataclasses import dataclass, field
from itertools import groupby

from reviewer import predicates
from reviewer.findings import UNPARSED, Finding, lower, severity_rank
from reviewer.kvm import context, cpuidtable, patchgraph
from reviewer.rules import Matcher, Rule, RuleSet
from reviewer.series import MAX_LINE, DiffLine, FileDiff, Hunk, Patch, Series

MAX_MAIL_TEXT = 100_000  # and this much of a changelog or cover letter
FOLLOW_WINDOW = 4
EXCERPT_BEFORE = 3
EXCERPT_AFTER_MAX = 4  # lines to finish a statement split over several


_TABLE_WORDS = ("eax", "ebx", "ecx", "edx", "cpuid_entry_", "guest_cpuid_clear")
_models: dict = {}  # kernel tree (None: the shipped index) -> loaded model
_STORED = re.compile(r"^\s*\.(\w+)\s*=\s*([a-z_]\w*)\s*,")  # .set_msr = vmx_set_msr,


class Scope:
    """What the rules know of KVM's code for one series: the reachability
    model (loaded on first use), extended by the calls the series adds."""

    def __init__(self, series: Series | None) -> None:
        self.series = series
        self._base = None
        self._model = None
        self._entries: dict = {}
        self._paths: dict = {}
        self._nearest: dict = {}
        self._writers: tuple | None = None
        self._writes: dict = {}  # (hunk, line) -> what the line writes (hunks live as long as the scope)
        self._writer_names: set[str] | None = None
        self._may_write: dict = {}
        self._rejects: dict = {}
        self._bodies: dict | None = None

    def base(self):
        """The shipped (or the user's tree's) model, without the series' calls."""
        if self._base is None:
            from reviewer.kvm import reach

            tree = self.series.kernel_tree if self.series else None
            if tree not in _models:
                _models[tree] = reach.load(tree)
            self._base = _models[tree]
        return self._base

    def model(self):
        """The model extended by the calls the series adds (built on first use)."""
        if self._model is None:
            from reviewer.kvm import reach

            added = patchgraph.added_calls(self.series, reach.calls_in) if self.series else []
            self._model = self.base().with_calls(added)
        return self._model

    def _added_bodies(self) -> dict[str, list[str]]:
        """Function -> the lines the series adds to it; ops member -> the
        functions the series stores in it (``.m = f``)."""
        if self._bodies is None:
            bodies: dict[str, list[str]] = {}
            for patch in self.series.patches if self.series else []:
                for line in patch.added_lines:
                    if line.function:
                        bodies.setdefault(line.function, []).append(line.text)
                    stored = _STORED.match(line.text)
                    if stored:
                        bodies.setdefault("." + stored.group(1), []).append(stored.group(2))
            self._bodies = bodies
        return self._bodies

    def may_reject(self, func: str, seen: frozenset[str] = frozenset()) -> bool | None:
        """Can ``func`` (a function or an ops member ``T.m``) fail its caller
        on bad input, after the series? Yes if the series adds it an exit
        that refuses, or a used call to a function that can; else what the
        index says; a function or member only the series defines can refuse
        only by what the series adds to it. None: nobody knows it."""
        if func in self._rejects:
            return self._rejects[func]
        from reviewer.kvm import exits, reach

        bodies = self._added_bodies()
        member = "." + func.partition(".")[2] if "." in func else None
        implementations = bodies.get(member, []) if member else []
        added = bodies.get(func, [])
        verdict = None
        if any(exits.fails(text) for text in added):
            verdict = True
        elif added and any(self.may_reject(callee, seen | {func}) is not False
                           for callee, used in reach.calls_in("\n".join(added)) if used and callee not in seen):
            verdict = True
        elif any(self.may_reject(impl, seen | {func}) for impl in implementations if impl not in seen):
            verdict = True
        else:
            verdict = self.base().can_reject(func)
            if verdict is None and (added or member):  # new to the series, and nothing it adds refuses
                verdict = False
        self._rejects[func] = verdict
        return verdict

    def _table_facts(self) -> tuple:
        """(functions writing the table after the series, before it, defined
        by the series, called by its added lines), from the series' hunks.
        Only hunks that name a CPUID register or entry helper can write; of
        the added calls, only those of a function the series defines count."""
        if self._writers is None:
            after, before, defined, called = set(), set(), set(), set()
            added_text = []
            for fdiff in (f for p in (self.series.patches if self.series else []) for f in p.files):
                if not fdiff.path.endswith((".c", ".h")):
                    continue
                for hunk in fdiff.hunks:
                    texts = [ln.text[:MAX_LINE] for ln in hunk.lines]
                    joined = "\n".join(texts)
                    if any(w in joined for w in _TABLE_WORDS):
                        for side, into in (("+", after), ("-", before)):
                            lines = [(ln.function, t) for ln, t in zip(hunk.lines, texts) if ln.kind in (" ", side)]
                            for function, group in groupby(lines, key=lambda pair: pair[0]):
                                if function and cpuidtable.writes_in([t for _, t in group]):
                                    into.add(function)
                    for ln, text in zip(hunk.lines, texts):
                        if ln.added:
                            name = context.definition_name(text) if text[:1].isalpha() or text[:1] == "_" else None
                            if name:
                                defined.add(name)
                            else:
                                added_text.append(text)
            if defined:
                called = {n for text in added_text for n in patchgraph.called(text) if n in defined}
            self._writers = (after, before, defined, called)
        return self._writers

    def table_write(self, hunk: Hunk, index: int) -> cpuidtable.Origin | None:
        """Does line ``index`` write the vCPU's CPUID table, and through what:
        an entry pointer (with its origin) or a call of a function that
        writes it (what the index knows, and what the series' hunks show).
        The body of a helper the series adds and calls is judged where it
        is called."""
        key = (id(hunk), index)
        if key not in self._writes:
            self._writes[key] = self._table_write(hunk, index)
        return self._writes[key]

    def _table_write(self, hunk: Hunk, index: int) -> cpuidtable.Origin | None:
        line = hunk.lines[index]
        text = line.text[:MAX_LINE]
        after, before, defined, called = self._table_facts()
        pointer = cpuidtable.written_pointer(text)
        if pointer is not None:
            if line.function in defined and line.function in called:
                return None
            return cpuidtable.origin(_before(hunk, index), pointer)
        writers = after if line.added else before
        for name in patchgraph.called(text):
            if name != line.function and (name in writers or self.base().writes_cpuid(name)):
                return cpuidtable.Origin(cpuidtable.VCPU, name, helper=True)
        return None

    def arm(self, hunk: Hunk, index: int) -> str | None:
        """For a line inside an ioctl dispatcher: the entry point of the
        ``case`` arm it sits in, when the hunk shows the label."""
        function = hunk.lines[index].function
        model = self.base()
        if function is None or function not in model.index.dispatchers:
            return None
        return model.case_entry(function, _before(hunk, index))

    def may_write(self, hunk: Hunk) -> bool:
        """Can a line of this hunk write the table (a cheap look first)?"""
        key = id(hunk)
        if key not in self._may_write:
            if self._writer_names is None:
                after, before, _, _ = self._table_facts()
                index = self.base().index
                self._writer_names = after | before | {index.names[n] for n in index.cpuid_writers}
            text = hunk.changed_text
            self._may_write[key] = any(reg in text for reg in _TABLE_WORDS) or \
                not self._writer_names.isdisjoint(patchgraph.called(text))
        return self._may_write[key]

    def reached(self, function: str | None, globs: tuple[str, ...], via: str) -> list[str]:
        """The entries matching ``globs`` that reach ``function``, the
        preferred first (the earliest glob they match, then by name). The
        series' own calls are followed only when the tree's graph alone does
        not reach it (they only ever add entries)."""
        if function is None:
            return []
        key = (function, globs, via)
        if key not in self._entries:
            found = self._ranked(self.base(), function, globs, via)
            self._entries[key] = found or self._ranked(self.model(), function, globs, via)
        return self._entries[key]

    @staticmethod
    def _ranked(model, function: str, globs: tuple[str, ...], via: str) -> list[str]:
        ranked = [(rank, e) for e in (model.entries(function, via) if model.known(function) else [])
                  if (rank := entry_rank(e, globs)) is not None]
        return [e for _, e in sorted(ranked)]

    def nearest(self, function: str | None, globs: tuple[str, ...], via: str) -> set[str]:
        """The entries matching ``globs`` with the shortest path to ``function``:
        the ioctl it serves, not one the over-approximated graph also finds."""
        key = (function, globs, via)
        if key not in self._nearest:
            def wanted(entry: str) -> bool:
                return entry_rank(entry, globs) is not None

            found = set()
            if function is not None and self.reached(function, globs, via):
                found = self.base().nearest(function, via, wanted) or self.model().nearest(function, via, wanted)
            self._nearest[key] = found
        return self._nearest[key]

    def path(self, function: str | None, globs: tuple[str, ...], via: str) -> list[str] | None:
        """The shortest path to ``function`` from the first preferred entry,
        for a finding's why."""
        key = (function, globs, via)
        if key not in self._paths:
            self._paths[key] = self._path(function, globs, via)
        return self._paths[key]

    def _path(self, function: str | None, globs: tuple[str, ...], via: str) -> list[str] | None:
        entries = self.reached(function, globs, via)
        if not entries:
            return None
        return self.base().path_from(function, via, entries[0]) or self.model().path_from(function, via, entries[0])


def _before(hunk: Hunk, index: int) -> list[str]:
    """The texts of the lines above ``index`` on its side of the hunk."""
    kind = hunk.lines[index].kind
    return [ln.text for ln in hunk.lines[:index] if ln.kind in (" ", kind)]


@functools.cache
def entry_rank(entry: str, globs: tuple[str, ...]) -> int | None:
    """The index of the first glob ``entry`` matches, None if it matches none
    or a ``!glob``: ``["*", "!KVM_RUN"]`` is any entry but KVM_RUN."""
    if any(fnmatch.fnmatchcase(entry, g[1:]) for g in globs if g.startswith("!")):
        return None
    wanted = [g for g in globs if not g.startswith("!")]
    return next((i for i, g in enumerate(wanted) if fnmatch.fnmatchcase(entry, g)), None)


@dataclass
class Watch:
    """A rule's matcher bound to the series' scope: the functions it watches
    are those it names and, for ``reachable_from``, those userspace reaches."""

    matcher: Matcher
    scope: Scope
    _seen: dict = field(default_factory=dict)

    def __getattr__(self, name):  # the matcher's data, for predicates
        return getattr(self.matcher, name)

    def function_matches(self, name: str | None) -> bool:
        if name not in self._seen:
            self._seen[name] = self.matcher.function_matches(name) and (
                not self.matcher.reachable_from or bool(self.scope.reached(
                    name, tuple(self.matcher.reachable_from), self.matcher.reach_via)))
        return self._seen[name]

    def dispatches(self, name: str | None) -> bool:
        return name is not None and self.scope.base().dispatches(name)

    def may_reject(self, func: str) -> bool | None:
        return self.scope.may_reject(func)

    def entries(self, name: str | None) -> list[str]:
        """The entry points the rule watches that reach ``name``."""
        if name is None or not self.matcher.reachable_from:
            return []
        return self.scope.reached(name, tuple(self.matcher.reachable_from), self.matcher.reach_via)

    def shares_entry(self, one: str | None, other: str | None) -> bool:
        if one == other or not self.matcher.reachable_from:
            return True
        globs, via = tuple(self.matcher.reachable_from), self.matcher.reach_via
        first, second = self.scope.nearest(one, globs, via), self.scope.nearest(other, globs, via)
        return not first or not second or not first.isdisjoint(second)

    def reach_path(self, name: str | None) -> list[str] | None:
        return self.scope.path(name, tuple(self.matcher.reachable_from), self.matcher.reach_via)


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
        if matcher.any_followed.search(text):
            return matcher.any_exclude is None or not matcher.any_exclude.search(text)
    return False


def _candidates(matcher: Watch, patch: Patch, hunk: Hunk) -> list[int]:
    rule = matcher.matcher  # its data, read directly: this loop runs for every changed line
    # a writes rule's patterns name direct writes; a call may write too
    calls_count = rule.writes is not None
    if calls_count and not matcher.scope.may_write(hunk):
        return []
    if not calls_count and not rule.may_match(hunk.changed_text):
        return []  # the common case: nothing in this hunk can match
    if rule.any_followed is not None and not rule.any_followed.search(hunk.text):
        return []  # nothing in the hunk can be the line that must follow
    if not calls_count and not any(matcher.function_matches(f) for f in hunk.changed_functions):
        return []
    found = []
    for i in hunk.changed:
        line = hunk.lines[i]
        text = line.text[:MAX_LINE]
        table = None
        if calls_count:
            table = matcher.scope.table_write(hunk, i)
            if table is None or table.kind in cpuidtable.NOT_THE_TABLE:
                continue
        elif not rule.may_match(text):
            continue
        if rule.any_exclude is not None and rule.any_exclude.search(text):
            continue
        # an entry found in the vCPU's table is that table wherever the write
        # is (a function older or newer than the index too); else the rule's
        # functions and reachability decide
        sure = table is not None and table.kind == cpuidtable.VCPU and line.function is not None \
            and line.function not in rule.exclude_functions
        if not sure and not matcher.function_matches(line.function):
            continue
        if rule.reachable_from and not sure:
            arm = matcher.scope.arm(hunk, i)
            if arm is not None and entry_rank(arm, tuple(rule.reachable_from)) is None:
                continue  # the arm of an entry the rule does not watch
        if rule.followed_by and not _follows(rule, hunk, i):
            continue
        if rule.within and not any(p.search(hunk.opener(i)[0][:MAX_LINE]) for p in rule.within):
            continue
        if not all(predicates.LINE_PREDICATES[n](matcher, patch, hunk, i) for n in rule.predicates):
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


def _evidence(matcher: Watch, hunk: Hunk, anchor: int) -> list[str]:
    """Why the rule holds, for a maintainer to check in seconds."""
    out = []
    if matcher.writes is not None:
        table = matcher.scope.table_write(hunk, anchor)
        if table is not None:
            out.append(table.describe())
    arm = matcher.scope.arm(hunk, anchor) if matcher.reachable_from else None
    if arm is not None:
        out.append(f"in the {arm} arm of {hunk.lines[anchor].function}()")
    elif matcher.reachable_from:
        path = matcher.reach_path(hunk.lines[anchor].function)
        if path:
            from reviewer.kvm import reach
            out.append(reach.describe(path))
    return out


def line_findings(rule: Rule, patch: Patch, scope: Scope | None = None, watch: Watch | None = None) -> list[Finding]:
    """``watch``: the rule's matcher already bound to the series' scope (what it
    learnt of functions serves every patch)."""
    matcher = watch or Watch(rule.matcher, scope or Scope(None))
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
                evidence = _evidence(matcher, hunk, anchor)
                message = _fill(rule.message, fdiff, function)
                if evidence:
                    message += "\nWhy: " + "; ".join(evidence) + "."
                out.append(Finding(
                    rule=rule.id, category=rule.category, severity=rule.severity,
                    patch=patch.index, message_id=patch.message_id,
                    message=message,
                    file=fdiff.path, line=_line_no(line), function=function,
                    excerpt=excerpt(hunk, group[0], group[-1]), hunk_header=hunk.header,
                    related=[patch.index], trimmed=group[0] > EXCERPT_BEFORE,
                    evidence=evidence,
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
    scope = Scope(series)
    watches = {r.id: Watch(r.matcher, scope) for r in line_rules}
    for patch in series.patches:
        acked = None  # the changelog is searched only if a finding needs it
        for rule in line_rules:
            start = time.perf_counter()
            found = line_findings(rule, patch, scope, watches[rule.id])
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
