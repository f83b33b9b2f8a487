"""Rules cannot blow up or run code: patterns are checked when the rule file
loads, lines are matched with a length cap, a rule file is data, and user
templates render in jinja2's sandbox."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from reviewer import analysis, cli, rules, series
from reviewer.errors import InputError

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

RULE = '''
[[rule]]
id = "{id}"
title = "a test rule"
category = "cpuid-adjust"
severity = "warning"
message = """{message}"""
why = "because"
references = ["https://example.org"]
[rule.match]
files = ["*.c"]
side = "added"
patterns = [{patterns}]
predicates = [{predicates}]
[rule.examples]
fires = "x"
passes = "y"
'''


def rule_dir(tmp_path: Path, rule_id: str = "test-rule", patterns: str = "'x'", message: str = "m",
             predicates: str = "") -> Path:
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    (directory / "test.toml").write_text(RULE.format(id=rule_id, patterns=patterns, message=message,
                                                     predicates=predicates), encoding="utf-8")
    return directory


def cli_error(capsys, *argv: str) -> str:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.removeprefix("kvm-review: error: ").rstrip("\n")


# -- load-time checks ----------------------------------------------------------

@pytest.mark.parametrize("pattern", [r"(a+)+", r"(a*)*", r"(?:\w+)+", r"(\s*x*)*y", r"(a+){2,}", r"(a+)*$"])
def test_nested_quantifiers_rejected(pattern):
    with pytest.raises(InputError, match="nests quantifiers"):
        rules.compile_pattern(pattern, "here")


@pytest.mark.parametrize("pattern, detail", [
    ("(", "missing ), unterminated subpattern at position 0"),
    ("[a-", "unterminated character set at position 0"),
    ("a{2,1}", "min repeat greater than max repeat at position 2"),
])
def test_bad_regex_rejected_clearly(pattern, detail):
    with pytest.raises(InputError) as exc:
        rules.compile_pattern(pattern, "r.toml: rule x")
    assert str(exc.value) == f"r.toml: rule x: bad pattern {pattern!r}: {detail}"


def test_overlong_pattern_rejected():
    with pytest.raises(InputError, match=f"longer than {rules.MAX_PATTERN} characters"):
        rules.compile_pattern("a" * (rules.MAX_PATTERN + 1), "here")


def test_bad_pattern_in_a_rule_file_is_one_line_exit_2(tmp_path, capsys):
    directory = rule_dir(tmp_path, patterns=r"'(\w+)+$'")
    message = cli_error(capsys, "rules", "list", "--rules", str(directory))
    assert message == (f"{directory / 'test.toml'}: rule test-rule: pattern '(\\\\w+)+$' nests quantifiers "
                       "(catastrophic backtracking)")


def test_broken_rule_file_is_one_line_exit_2(tmp_path, capsys):
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "bad.toml").write_text("[[rule]\nid = ", encoding="utf-8")
    message = cli_error(capsys, "rules", "list", "--rules", str(directory))
    assert message.startswith(f"{directory / 'bad.toml'}: cannot load rule file: ")


@pytest.mark.parametrize("pattern", [r"((a+))+$", r"(a+b?)+$", r"(a|aa)*$"])
def test_other_catastrophic_shapes_rejected(pattern):
    with pytest.raises(InputError):
        rules.compile_pattern(pattern, "here")


# -- a rule file is data ---------------------------------------------------------

def test_rule_module_runs_nothing_from_a_rule_file():
    tree = ast.parse(Path(rules.__file__).read_text(encoding="utf-8"))
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)
              and isinstance(node.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__", "getattr", "open"}
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names}
    assert not imported & {"pickle", "marshal", "importlib", "subprocess", "yaml"}


@pytest.mark.parametrize("predicate", ["'__import__(\"os\").system'", "'os.system'", "'__class__'"])
def test_unknown_predicate_is_an_error_not_a_lookup(tmp_path, capsys, predicate):
    directory = rule_dir(tmp_path, predicates=predicate)
    message = cli_error(capsys, "rules", "list", "--rules", str(directory))
    assert "unknown predicate" in message


@pytest.mark.parametrize("old, new, error", [
    ("patterns = [", "pattern = [", "[rule.match]: unknown key 'pattern' (known: files, functions, "
     "exclude_functions, side, patterns, exclude_patterns, predicates, followed_by, followed_by_kind, within, "
     "reachable_from, reach_via, writes)"),
    ('severity = "warning"', 'severity = "warning"\nseverty = "error"', "unknown key 'severty' (known: id, "
     "title, category, severity, message, why, references, acknowledgeable, checklist, older_names, examples, "
     "match, predicate, params)"),
])
def test_a_misspelt_key_is_refused_not_ignored(tmp_path, capsys, old, new, error):
    directory = rule_dir(tmp_path)
    path = directory / "test.toml"
    path.write_text(path.read_text().replace(old, new, 1))
    assert cli_error(capsys, "rules", "list", "--rules", str(directory)) == f"{path}: rule test-rule: {error}"


def test_message_placeholders_are_not_format_strings(tmp_path, capsys):
    """{file} and {function} are replaced as text: no attribute or index lookup."""
    directory = rule_dir(tmp_path, patterns=r"'best->edx &= '",
                         message="{function.__globals__} {file.__class__} {0} {function}")
    status = cli.main(["review", str(SAMPLES / "02-add-adjustment.mbox"), "--rules", str(directory),
                       "--format", "json", "--fail-on", "never"])
    out, err = capsys.readouterr()
    assert status == 0 and err == ""
    assert "{function.__globals__} {file.__class__} {0} kvm_vcpu_after_set_cpuid()" in out


def test_user_template_runs_in_the_sandbox(tmp_path, capsys):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "patch_reply.txt.j2").write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}\n", encoding="utf-8")
    message = cli_error(capsys, "review", str(SAMPLES / "02-add-adjustment.mbox"), "--format", "email",
                        "--templates", str(templates))
    assert message.startswith("template patch_reply.txt.j2: SecurityError: ")


# -- lines are matched with a length cap --------------------------------------------

def _hunk_with(text: str) -> series.Hunk:
    return series.Hunk("@@ -1,1 +1,2 @@ void kvm_vcpu_after_set_cpuid(struct kvm_vcpu *vcpu)",
                       "void kvm_vcpu_after_set_cpuid(struct kvm_vcpu *vcpu)", 1, 1,
                       [series.DiffLine(" ", "{", 1, 1, "kvm_vcpu_after_set_cpuid", "function"),
                        series.DiffLine("+", text, None, 2, "kvm_vcpu_after_set_cpuid", "function")])


@pytest.mark.parametrize("pattern, line", [
    (r"\s+$", "\t" + " " * 100_000 + "x"),  # quadratic without the cap
    (r"(\w|\d)+;$", "a" * 100_000 + "!"),
    (r"best->\w+\s*&=.*\bfeature_bit\(\w+\)\s*;", "best->ecx &= " + "feature_bit(X) | " * 6_000),
])
def test_hostile_line_matched_under_the_cap(tmp_path, pattern, line):
    directory = rule_dir(tmp_path, patterns=repr(pattern))
    ruleset = rules.load([str(directory)])
    rule = ruleset.get("test-rule")
    fdiff = series.FileDiff("arch/x86/kvm/cpuid.c", "arch/x86/kvm/cpuid.c", "arch/x86/kvm/cpuid.c", False,
                            [_hunk_with(line)])
    patch = series.Patch(1, "s", "s", "a", "a@b", "2024-01-01", "id@x", "", [], [fdiff], mail=None)
    start = time.monotonic()
    analysis.line_findings(rule, patch)
    assert time.monotonic() - start < 2
    assert len(line) > 50 * analysis.MAX_LINE


@pytest.mark.parametrize("pattern, needs", [
    (r"\breturn\s+-E(INVAL|BUSY)\b", ["return"]),  # the longest run wins over the shorter alternatives
    (r"\b(r|ret)\s*=\s*-E(INVAL|NOTSUPP)\b", ["INVAL", "NOTSUPP"]),  # every branch long enough
    (r"(WARN_ON|KVM_BUG_ON)\s*\(", ["KVM_BUG_ON", "WARN_ON"]),
    (r"(foo)?ba\s+x", None),  # an optional group requires nothing; "ba" is too short
    (r"(?i)cpuid_entry", None),  # case-blind: a literal would miss CPUID_ENTRY
    (r"(?i:cpuid)_entry_set", ["_entry_set"]),
    (r"->\s*e[abcd]x\s*=", None),  # classes and two-character runs only
    (r"(kvm_(set|get)_msr|msr_data)+", ["kvm_", "msr_data"]),
])
def test_required_literals(pattern, needs):
    assert rules.required_literals(pattern) == needs


def test_the_literal_filter_never_hides_a_match_of_a_shipped_rule():
    """Every line of every shipped rule's examples (and of the samples) that
    the rule's patterns match holds one of its required strings."""
    texts = [line[1:] for rule in rules.load().rules for example in (rule.fires, rule.passes)
             for line in example.splitlines() if line[:1] in "+- "]
    texts += [line[1:] for mbox in SAMPLES.glob("*.mbox")
              for line in mbox.read_text(encoding="utf-8", errors="replace").splitlines() if line[:1] in "+- "]
    checked = 0
    for rule in rules.load().rules:
        matcher = rule.matcher
        if matcher is None or matcher.any_literal is None:
            continue
        for text in texts:
            if matcher.any_pattern.search(text):
                checked += 1
                assert any(n in text for n in matcher.any_literal), (rule.id, text)
    assert checked > 100
