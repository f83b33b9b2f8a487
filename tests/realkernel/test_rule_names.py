"""Every name a rule keys on exists in the real 6.12 tree, or the rule says
which other release used it (``older_names = { name = "release" }``).

Function names must be functions ctags finds in arch/x86/kvm (.c and .h):
a rule keyed on a function that does not exist can never fire. Literal
identifiers in patterns (KVM_X86_QUIRK_*, KVM_CAP_*, MSR names, helpers)
must occur in arch/x86/kvm or the uAPI, MSR, FPU and errno headers.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from reviewer import rules

pytestmark = pytest.mark.realkernel

SOURCES = ["arch/x86/kvm", "arch/x86/include/uapi/asm/kvm.h", "include/uapi/linux/kvm.h",
           "arch/x86/include/asm/msr-index.h", "arch/x86/include/asm/kvm_host.h",
           "arch/x86/include/asm/fpu/xstate.h", "include/uapi/asm-generic/errno-base.h",
           "include/uapi/asm-generic/errno.h", "include/linux/errno.h"]
_GROUP = re.compile(r"\((?:\?:)?(\w*(?:\|\w*)+)\)(\?)?")
_OPTIONAL_GROUP = re.compile(r"\((?:\?:)?(\w+)\)\?")
_ESCAPE = re.compile(r"\\[A-Za-z]|\\.|\[[^\]]*\]|\(\?[=!<][^)]*\)|[()^$?*+{}|.,;:&=>-]|\d+\b")
_WORD = re.compile(r"[A-Za-z_]\w*")
# too short or too generic to mean anything about a kernel release
_GENERIC = {"if", "else", "return", "break", "define", "ret", "err", "rc", "r"}


def expand(pattern: str) -> list[str]:
    """The pattern with its word alternations spelled out: a(b|c)? -> a, ab, ac."""
    match = _GROUP.search(pattern) or _OPTIONAL_GROUP.search(pattern)
    if not match:
        return [pattern]
    optional = match.re is _OPTIONAL_GROUP or bool(match.group(2))
    choices = match.group(1).split("|") + ([""] if optional else [])
    return [s for c in choices for s in expand(pattern[:match.start()] + c + pattern[match.end():])]


def literals(pattern: str) -> set[str]:
    """Identifiers (or identifier prefixes like KVM_CAP_) a pattern spells out."""
    found = set()
    for alternative in expand(pattern):
        for piece in _ESCAPE.sub(" ", alternative.replace("\\b", " ")).split():
            for word in _WORD.findall(piece):
                if len(word) >= 4 and word not in _GENERIC:
                    found.add(word)
    return found


@pytest.fixture(scope="module")
def tree_text(kernel_tree) -> str:
    paths = [p for s in SOURCES for p in ((kernel_tree / s).rglob("*") if (kernel_tree / s).is_dir()
                                          else [kernel_tree / s]) if p.is_file()]
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in paths)


@pytest.fixture(scope="module")
def defined_functions(kernel_tree) -> set[str]:
    proc = subprocess.run(["ctags", "--languages=C", "--language-force=C", "--c-kinds=f", "-o", "-", "-R",
                           "arch/x86/kvm"], cwd=kernel_tree, capture_output=True, text=True, check=True)
    return {row.split("\t", 1)[0] for row in proc.stdout.splitlines()}


def test_pattern_literals_are_read_right():
    assert literals(r"\bcpuid_entry_(change|set|clear)\s*\(") == {
        "cpuid_entry_change", "cpuid_entry_set", "cpuid_entry_clear"}
    assert literals(r"\breturn\s+KVM_MSR_RET_(INVALID|UNSUPPORTED)\b") == {
        "KVM_MSR_RET_INVALID", "KVM_MSR_RET_UNSUPPORTED"}
    assert literals(r"^#define\s+KVM_(CAP|X86_QUIRK)_\w+") == {"KVM_CAP_", "KVM_X86_QUIRK_"}
    assert literals(r"\bpr_warn(_once|_ratelimited)?\s*\(") == {"pr_warn", "pr_warn_once", "pr_warn_ratelimited"}
    assert literals(r"->\s*e[abcd]x\s*[&|^]?=(?!=)") == set()


def _problems(rule: rules.Rule, names: set[str], exists) -> list[str]:
    out = []
    for name in sorted(names):
        if exists(name) and name in rule.older_names:
            out.append(f"{rule.id}: {name} exists in 6.12 but is listed in older_names")
        elif not exists(name) and name not in rule.older_names:
            out.append(f"{rule.id}: {name} is not in the 6.12 tree and not in older_names")
    return out


def test_rule_functions_exist(defined_functions):
    problems = []
    for rule in rules.load().rules:
        if rule.matcher:
            names = set(rule.matcher.functions) | set(rule.matcher.exclude_functions)
            problems += _problems(rule, names, defined_functions.__contains__)
            regexes = rule.matcher.function_regexes
            problems += [f"{rule.id}: function regex {r.pattern} matches no 6.12 function"
                         for r in regexes if not any(r.fullmatch(f) for f in defined_functions)]
    assert not problems, "\n".join(problems)


def test_rule_pattern_names_exist(tree_text):
    problems = []
    checked = 0
    for rule in rules.load().rules:
        if not rule.matcher:
            continue
        matcher = rule.matcher
        names = set()
        texts = matcher.patterns + matcher.exclude_patterns + matcher.followed_by + [p.pattern for p in matcher.within]
        for text in texts:
            names |= literals(text)
        checked += len(names)
        problems += _problems(rule, names, lambda n: re.search(rf"\b{n}" if n.endswith("_") else rf"{n}",
                                                               tree_text) is not None)
    assert checked > 30
    assert not problems, "\n".join(problems)


def test_older_names_say_which_release():
    for rule in rules.load().rules:
        for name, release in rule.older_names.items():
            assert isinstance(release, str) and re.search(r"\d", release), (rule.id, name, release)
