"""The built-in pack is checked when loaded: a pack that is missing, empty or
broken ends the run with exit 3 and one line naming what is wrong, never a
review with fewer rules."""

from __future__ import annotations

import shutil
import tomllib

import pytest

from reviewer import pack
from reviewer.cli import main
from tests.conftest import ROOT, SAMPLES

SGX = str(SAMPLES / "01-sgx-xcr0-abi.mbox")


def rule_count() -> int:
    """The [[rule]] tables in rules/*.toml, counted without our loader."""
    return sum(len(tomllib.loads(p.read_text(encoding="utf-8")).get("rule", []))
               for p in (ROOT / "rules").glob("*.toml"))


@pytest.fixture
def broken(tmp_path, monkeypatch):
    """A copy of the pack, read instead of the real one: break it, then run."""
    copy = tmp_path / "builtin"
    shutil.copytree(ROOT / "rules", copy / "rules")
    shutil.copytree(ROOT / "templates", copy / "templates")
    monkeypatch.setattr(pack, "root", lambda: copy)
    return copy


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_the_links_in_the_package_are_the_top_level_directories():
    assert (ROOT / "reviewer" / "builtin" / "rules").resolve() == ROOT / "rules"
    assert (ROOT / "reviewer" / "builtin" / "templates").resolve() == ROOT / "templates"


def test_version_names_the_rules_loaded(capsys):
    status, out, err = run(capsys, "--version")
    assert (status, err) == (0, "")
    assert out == f"kvm-review 0.1.0 ({rule_count()} built-in rules)\n"


def test_a_copy_of_the_pack_reviews_as_the_real_one(broken, capsys):
    """The fixture alone breaks nothing (or the tests below prove nothing)."""
    status, out, err = run(capsys, "review", SGX, "--format", "json")
    assert (status, err) == (0, "")  # its findings are acknowledged in the cover letter: info
    assert out == (ROOT / "tests" / "golden" / "01-sgx-xcr0-abi.json").read_text(encoding="utf-8")


def _remove_rules(copy):
    shutil.rmtree(copy / "rules")
    return f"no rule directory {copy / 'rules'}"


def _empty_rules(copy):
    for f in (copy / "rules").iterdir():
        f.unlink()
    return f"no rule files (*.toml) in {copy / 'rules'}"


def _no_rule_tables(copy):
    for f in (copy / "rules").iterdir():
        f.write_text("# nothing here\n", encoding="utf-8")
    return f"no rules in {copy / 'rules'}"


def _bad_toml(copy):
    path = copy / "rules" / "reject.toml"
    path.write_text("[[rule]\n", encoding="utf-8")
    return f"{path}: cannot load rule file: Expected ']]' at the end of an array declaration (at line 1, column 7)"


def _bad_rule(copy):
    path = copy / "rules" / "cpuid.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('severity = "warning"', 'severity = "loud"', 1),
                    encoding="utf-8")
    first = tomllib.loads(path.read_text(encoding="utf-8"))["rule"][0]["id"]
    return f"{path}: rule {first}: severity must be one of info, warning, error"


def _missing_template(copy):
    (copy / "templates" / "finding.txt.j2").unlink()
    return f"template finding.txt.j2 missing from {copy / 'templates'}"


@pytest.mark.parametrize("breakage", [_remove_rules, _empty_rules, _no_rule_tables, _bad_toml, _bad_rule,
                                      _missing_template])
@pytest.mark.parametrize("argv", [["review", SGX], ["rules", "list"], ["--version"]])
def test_a_broken_pack_is_exit_3_and_one_line(broken, capsys, breakage, argv):
    what = breakage(broken)
    status, out, err = run(capsys, *argv)
    assert (status, out) == (3, "")
    assert err == (f"kvm-review: internal error: the built-in rule pack is broken: {what} "
                   "(reinstall kvm-review; please report)\n")


def test_a_broken_user_rule_file_is_still_an_input_error(tmp_path, capsys):
    (tmp_path / "mine.toml").write_text("[[rule]\n", encoding="utf-8")
    status, out, err = run(capsys, "review", SGX, "--rules", str(tmp_path))
    assert (status, out) == (2, "")
    assert err.startswith(f"kvm-review: error: {tmp_path / 'mine.toml'}: cannot load rule file: ")


def test_checked_pack_is_cached_by_content(tmp_path, monkeypatch):
    """The second load reads the cache, not the TOML (and checks no pattern
    again); other content, or a cache that does not parse, is a miss."""
    from reviewer import rules

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = rules.load()
    cache = tmp_path / "kvm-review" / "builtin-rules.json"
    assert cache.is_file()

    def no_toml(where, text):
        raise AssertionError(f"{where} parsed again")

    monkeypatch.setattr(rules, "_toml", no_toml)
    monkeypatch.setattr(rules, "_backtracks", no_toml)
    again = rules.load()
    assert [(r.id, r.matcher and r.matcher.patterns) for r in again.rules] == \
        [(r.id, r.matcher and r.matcher.patterns) for r in first.rules]
    cache.write_text("{not json", encoding="utf-8")
    with pytest.raises(AssertionError, match="parsed again"):
        rules.load()


def test_a_broken_pack_is_not_served_from_the_cache(broken, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert run(capsys, "--version")[0] == 0  # cached
    _bad_rule(broken)
    assert run(capsys, "--version")[0] == 3
