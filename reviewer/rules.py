"""Rules are data: load, validate and look up ``rules/*.toml``.

A rule file holds ``[[rule]]`` tables (see README, "Writing a rule"). Line
rules carry a ``[rule.match]`` table; series rules name a predicate from
:mod:`reviewer.predicates` and its ``params``. Nothing in a rule file runs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from reviewer import __version__, pack, predicates
from reviewer.errors import BrokenPack, InputError
from reviewer.findings import CATEGORIES, SEVERITIES

SIDES = ("added", "removed", "modified", "any")
MAX_PATTERN = 500
MAX_REPEAT = 10  # a repeat up to this many times is not "unbounded"


@dataclass
class Matcher:
    files: list[str]
    functions: list[str] = field(default_factory=list)
    function_regexes: list[re.Pattern] = field(default_factory=list)
    exclude_functions: list[str] = field(default_factory=list)
    side: str = "added"
    # the texts: each rule's are compiled once, as one alternation (any_pattern)
    patterns: list[str] = field(default_factory=list)
    exclude_patterns: list[str] = field(default_factory=list)
    predicates: list[str] = field(default_factory=list)
    # the line must be followed, within FOLLOW_WINDOW lines of its side, by a
    # line matching one of these (of kind followed_by_kind: context/added/any)
    followed_by: list[str] = field(default_factory=list)  # texts too: compiled once, as any_followed
    followed_by_kind: str = "any"
    # the line must sit inside a top-level definition whose opening line
    # (``static const u32 msr_based_features[] = {``) matches one of these
    within: list[re.Pattern] = field(default_factory=list)
    # the line's function must be reached (reviewer.kvm.reach) from an entry
    # point matching one of these globs ("KVM_SET_MSRS", "KVM_ENABLE_CAP*"),
    # over any call ("any") or only calls whose result the caller uses ("result")
    reachable_from: list[str] = field(default_factory=list)
    reach_via: str = "any"
    # what the line must write: "vcpu-cpuid", the vCPU's stored CPUID table
    writes: str | None = None
    _functions_seen: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # one alternation each, multi-line so a hunk can be tested in one search
        self.any_pattern = _alternation(self.patterns)
        self.any_exclude = _alternation(self.exclude_patterns)
        self.any_followed = _alternation(self.followed_by)
        # strings one of which any match holds (None: no such set): a hunk
        # without any of them is skipped before the regular expression runs
        needs = [required_literals(p) for p in self.patterns]
        self.any_literal = None if not needs or None in needs else tuple(sorted({n for ns in needs for n in ns}))

    def may_match(self, text: str) -> bool:
        """Can ``text`` (a line, or a hunk's changed lines) hold a match?"""
        if self.any_pattern is None:
            return True
        if self.any_literal is not None:
            for needed in self.any_literal:  # a loop: this runs for every changed line
                if needed in text:
                    break
            else:
                return False
        return self.any_pattern.search(text) is not None

    def file_matches(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, glob) for glob in self.files)

    def function_matches(self, name: str | None) -> bool:
        known = self._functions_seen.get(name)
        if known is None:
            known = self._functions_seen[name] = self._function_matches(name)
        return known

    def _function_matches(self, name: str | None) -> bool:
        if name is not None and name in self.exclude_functions:
            return False
        if not self.functions and not self.function_regexes:
            return True
        if name is None:
            return False
        return name in self.functions or any(r.fullmatch(name) for r in self.function_regexes)


@dataclass
class Rule:
    id: str
    title: str
    category: str
    severity: str
    message: str
    why: str
    references: list[str]
    fires: str
    passes: str
    source: str
    matcher: Matcher | None = None  # line rules
    predicate: str | None = None  # series rules
    params: dict = field(default_factory=dict)
    acknowledgeable: bool = False
    checklist: str | None = None  # the series reply's "[ ]" item
    older_names: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "line" if self.matcher else "series"


@dataclass
class RuleSet:
    rules: list[Rule]
    acknowledge_patterns: list[re.Pattern]

    def get(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise InputError(f"no rule with id {rule_id!r} (see: kvm-review rules list)")


def _alternation(patterns: list[str]) -> re.Pattern | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.M)


def _backtracks(items, inside_repeat: bool = False) -> bool:
    """A repeated group holding another repeat or an alternation: the shapes
    ((a+)+, (a|aa)*, (a+b?)+ ...) that backtrack exponentially."""
    from re import _constants as c  # the parsed form of a pattern (sre)

    for op, arg in items:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            low, high, sub = arg
            unbounded = high == c.MAXREPEAT or high > MAX_REPEAT
            if inside_repeat and high > 1:
                return True
            if _backtracks(sub, inside_repeat or (unbounded and op != c.POSSESSIVE_REPEAT)):
                return True
        elif op == c.BRANCH:
            if inside_repeat:
                return True
            if any(_backtracks(branch, inside_repeat) for branch in arg[1]):
                return True
        elif op == c.SUBPATTERN:
            if _backtracks(arg[-1], inside_repeat):
                return True
        elif op in (c.ASSERT, c.ASSERT_NOT):
            if _backtracks(arg[1], inside_repeat):
                return True
    return False


MIN_LITERAL = 3  # shorter strings are in most lines: no use as a filter
_needs_memo: dict[str, list[str] | None] = {}  # pattern -> required_literals(), kept in the pack's cache


def required_literals(text: str) -> list[str] | None:
    """Strings one of which every match of the pattern ``text`` contains
    (``return -E(INVAL|BUSY)`` -> ``["return"]``), or None when the parsed
    pattern gives none as long as MIN_LITERAL (a class, a wildcard, a
    case-blind pattern)."""
    if text not in _needs_memo:
        from re import _parser

        parsed = _parser.parse(text)
        _needs_memo[text] = None if parsed.state.flags & re.IGNORECASE else _needs(parsed)
    return _needs_memo[text]


def _needs(items) -> list[str] | None:
    """:func:`required_literals` of a parsed sequence: its best run of
    literal characters, or the best set a mandatory group or an alternation
    of such sequences requires (the longest shortest string wins)."""
    from re import _constants as c

    best: list[str] | None = None
    run: list[str] = []

    def consider(found: list[str] | None) -> None:
        nonlocal best
        if found and min(map(len, found)) >= MIN_LITERAL and (
                best is None or min(map(len, found)) > min(map(len, best))):
            best = sorted(set(found))

    for op, arg in [*items, (None, None)]:
        if op == c.LITERAL:
            run.append(chr(arg))
            continue
        consider(["".join(run)] if run else None)
        run = []
        if op == c.SUBPATTERN and not arg[1] & re.IGNORECASE:  # (?i:...) matches other cases
            consider(_needs(arg[-1]))
        elif op == c.BRANCH:
            branches = [_needs(branch) for branch in arg[1]]
            if all(branches):
                consider([n for branch in branches for n in branch])
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and arg[0] >= 1:
            consider(_needs(arg[2]))
    return best


def compile_pattern(text: str, where: str, check: bool = True) -> re.Pattern:
    """``text`` compiled; with ``check``, refused when too long, bad, or
    shaped to backtrack (a pack checked before, cached, skips the checks)."""
    if not check:
        return re.compile(text)
    if len(text) > MAX_PATTERN:
        raise InputError(f"{where}: pattern longer than {MAX_PATTERN} characters")
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise InputError(f"{where}: bad pattern {text!r}: {exc}") from None
    from re import _parser

    if _backtracks(_parser.parse(text)):
        raise InputError(f"{where}: pattern {text!r} nests quantifiers (catastrophic backtracking)")
    return compiled


def _checked(texts: list[str], where: str, check: bool) -> list[str]:
    """Pattern texts, each checked (:func:`compile_pattern`) unless the pack was before."""
    for text in texts if check else ():
        compile_pattern(text, where)
    return texts


def _strings(table: dict, key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: {key} must be a list of strings")
    return value


def _choice(table: dict, key: str, choices: tuple[str, ...], where: str) -> str:
    value = table.get(key, choices[0])
    if value not in choices:
        raise InputError(f"{where}: {key} must be one of {', '.join(choices)}")
    return value


MATCH_KEYS = ("files", "functions", "exclude_functions", "side", "patterns", "exclude_patterns", "predicates",
              "followed_by", "followed_by_kind", "within", "reachable_from", "reach_via", "writes")
WRITES = ("vcpu-cpuid",)
RULE_KEYS = ("id", "title", "category", "severity", "message", "why", "references", "acknowledgeable",
             "checklist", "older_names", "examples", "match", "predicate", "params")


def _known_keys(table: dict, keys: tuple[str, ...], where: str) -> None:
    """A misspelt key would silently match everything or nothing: refuse it."""
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")


def _matcher(table: dict, where: str, check: bool = True) -> Matcher:
    _known_keys(table, MATCH_KEYS, f"{where}: [rule.match]")
    side = _choice(table, "side", SIDES, where)
    functions = _strings(table, "functions", where)
    names = [f for f in functions if not f.startswith("re:")]
    regexes = [compile_pattern(f[3:], where, check) for f in functions if f.startswith("re:")]
    preds = _strings(table, "predicates", where)
    for name in preds:
        if name not in predicates.LINE_PREDICATES:
            raise InputError(f"{where}: unknown predicate {name!r}")
    files = _strings(table, "files", where)
    if not files:
        raise InputError(f"{where}: match.files is required")
    return Matcher(
        files=files,
        functions=names,
        function_regexes=regexes,
        exclude_functions=_strings(table, "exclude_functions", where),
        side=side,
        patterns=_checked(_strings(table, "patterns", where), where, check),
        exclude_patterns=_checked(_strings(table, "exclude_patterns", where), where, check),
        predicates=preds,
        followed_by=_checked(_strings(table, "followed_by", where), where, check),
        followed_by_kind=_choice(table, "followed_by_kind", ("any", "context", "changed"), where),
        within=[compile_pattern(p, where, check) for p in _strings(table, "within", where)],
        reachable_from=_strings(table, "reachable_from", where),
        reach_via=_choice(table, "reach_via", ("any", "result"), where),
        writes=_choice(table, "writes", WRITES, where) if "writes" in table else None,
    )


REQUIRED = ("id", "title", "category", "severity", "message", "why", "references")


def _rule(table: dict, source: str, check: bool = True) -> Rule:
    where = f"{source}: rule {table.get('id', '?')}"
    _known_keys(table, RULE_KEYS, where)
    for key in REQUIRED:
        if key not in table:
            raise InputError(f"{where}: missing {key!r}")
    if table["category"] not in CATEGORIES:
        raise InputError(f"{where}: category must be one of {', '.join(CATEGORIES)}")
    if table["severity"] not in SEVERITIES:
        raise InputError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    examples = table.get("examples", {})
    if not examples.get("fires") or not examples.get("passes"):
        raise InputError(f"{where}: examples.fires and examples.passes are required")
    rule = Rule(
        id=table["id"],
        title=table["title"],
        category=table["category"],
        severity=table["severity"],
        message=table["message"].strip(),
        why=table["why"].strip(),
        references=_strings(table, "references", where),
        fires=examples["fires"],
        passes=examples["passes"],
        source=source,
        acknowledgeable=bool(table.get("acknowledgeable", False)),
        checklist=table.get("checklist"),
        older_names=table.get("older_names", {}),
    )
    if "match" in table:
        rule.matcher = _matcher(table["match"], where, check)
    elif "predicate" in table:
        if table["predicate"] not in predicates.SERIES_PREDICATES:
            raise InputError(f"{where}: unknown predicate {table['predicate']!r}")
        rule.predicate = table["predicate"]
        rule.params = table.get("params", {})
    else:
        raise InputError(f"{where}: needs a [rule.match] table or a series predicate")
    return rule


def _toml(where: str, text: str) -> dict:
    import tomllib  # here: a cached pack needs no TOML parser

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: cannot load rule file: {exc}") from None


def _parse_file(where: str, data: dict, check: bool = True) -> tuple[list[Rule], list[re.Pattern]]:
    ack = [compile_pattern(p, where, check) for p in _strings(data, "acknowledge_patterns", where)]
    return [_rule(table, where, check) for table in data.get("rule", [])], ack


def _user_files(directory: str) -> list[tuple[str, str]]:
    path = Path(directory)
    if not path.is_dir():
        raise InputError(f"{directory}: --rules needs a directory of .toml files")
    out = []
    for f in sorted(path.glob("*.toml")):
        try:
            out.append((str(f), f.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError) as exc:
            raise InputError(f"{f}: cannot load rule file: {exc}") from None
    return out


CACHE_FORMAT = 2


def _cache_path() -> Path:
    home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(home) / "kvm-review" / "builtin-rules.json"


def _cache_key(files: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT} {__version__}".encode())
    for where, text in files:
        digest.update(b"\0" + where.encode() + b"\0" + text.encode())
    return digest.hexdigest()


def _cached(key: str) -> list[dict] | None:
    """The built-in pack's tables as checked by an earlier run, if the files
    are the same (``key``); a cache that cannot be read is no cache."""
    try:
        cached = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(cached, dict) and cached.get("key") == key):
        return None
    _needs_memo.update(cached.get("needs", {}))
    return cached["tables"]


def _remember(key: str, tables: list[dict]) -> None:
    path = _cache_path()
    try:
        text = json.dumps({"key": key, "tables": tables, "needs": _needs_memo})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # whole or not at all, whoever writes at the same time
    except (OSError, TypeError, ValueError):
        pass  # no cache: the next run checks the pack again


def builtin() -> tuple[list[Rule], list[re.Pattern]]:
    """The built-in pack, checked: a file that does not load, or a pack
    without a rule, is a broken installation (:class:`BrokenPack`). The
    parsed, checked files are cached (``~/.cache/kvm-review``) by their
    content: the next run skips parsing TOML and checking patterns."""
    files = pack.rule_files()
    key = _cache_key(files)
    tables = _cached(key)
    check = tables is None
    rules: list[Rule] = []
    ack: list[re.Pattern] = []
    try:
        if tables is None:
            tables = [_toml(where, text) for where, text in files]
        for (where, _text), data in zip(files, tables):
            found, patterns = _parse_file(where, data, check)
            rules += found
            ack += patterns
        if not rules:
            raise BrokenPack(f"no rules in {pack.root() / 'rules'}")
        _unique(rules)
    except InputError as exc:
        raise BrokenPack(str(exc)) from None
    if check:
        _remember(key, tables)
    return rules, ack


def _unique(rules: list[Rule]) -> set[str]:
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise InputError(f"{rule.source}: duplicate rule id {rule.id!r}")
        seen.add(rule.id)
    return seen


def load(extra_dirs: list[str] = (), disabled: list[str] = ()) -> RuleSet:
    """The built-in rules, plus the user's, minus the disabled ones."""
    rules, ack = builtin()
    for directory in extra_dirs:
        for where, text in _user_files(directory):
            found, patterns = _parse_file(where, _toml(where, text))
            rules += found
            ack += patterns
    seen = _unique(rules)
    unknown = set(disabled) - seen
    if unknown:
        raise InputError(f"--disable: no rule with id {sorted(unknown)[0]!r}")
    return RuleSet([r for r in rules if r.id not in disabled], ack)
