"""The command line: every input kind, formats, exit statuses, rule commands."""

from __future__ import annotations

import json
import mailbox
import subprocess
import sys
from pathlib import Path

import pytest

from reviewer import sources
from reviewer.cli import main
from tests.conftest import SAMPLES

SGX = str(SAMPLES / "01-sgx-xcr0-abi.mbox")
ADD = str(SAMPLES / "02-add-adjustment.mbox")
REJECT = str(SAMPLES / "04-check-cpuid-einval.mbox")


def run_json(capsys, *args) -> tuple[int, dict]:
    status = main(["review", *args, "--format", "json"])
    return status, json.loads(capsys.readouterr().out)


def findings(doc: dict) -> list[tuple]:
    return [(f["patch"], f["rule"], f["file"], f["line"], f["function"]) for f in doc["findings"]]


def test_version_and_help_do_not_import_heavy_modules():
    code = ("import sys\nfrom reviewer.cli import main\n"
            "for argv in (['--version'], ['--help'], ['review', '--help']):\n"
            "    main(argv)\n"
            "print(sorted(m for m in ('b4', 'requests', 'jinja2', 'unidiff') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"
    assert "kvm-review 0.1.0" in out


def test_json_shape(capsys):
    status, doc = run_json(capsys, REJECT)
    assert status == 1
    assert doc["tool"] == "kvm-review" and doc["version"] == "0.1.0"
    assert doc["series"] == {"subject": "KVM: x86: Reject MAXPHYADDR > 52 in KVM_SET_CPUID2", "revision": 1,
                             "message_id": "20250114112009.1207335-1-priya.raman@example.com", "patches": 2,
                             "expected": 2, "complete": True}
    f = doc["findings"][-1]
    assert {k: f[k] for k in ("rule", "category", "severity", "patch", "message_id", "file", "line",
                              "function")} == {
        "rule": "userspace-reject-added", "category": "userspace-reject", "severity": "warning", "patch": 1,
        "message_id": "20250114112010.1207335-2-priya.raman@example.com", "file": "arch/x86/kvm/cpuid.c",
        "line": 167, "function": "kvm_check_cpuid"}
    assert f["excerpt"][-1] == "+\t\treturn -EINVAL;"
    assert f["message"].startswith("This adds an error return to kvm_check_cpuid()")


def split_into(directory: Path, mbox: str) -> list[Path]:
    directory.mkdir()
    paths = []
    for i, raw in enumerate(sources.split_mbox(Path(mbox).read_bytes()), start=1):
        path = directory / f"{i:04d}.patch"
        path.write_bytes(raw)
        paths.append(path)
    return paths


def test_every_input_kind_gives_the_same_findings(capsys, tmp_path, monkeypatch):
    _, want = run_json(capsys, ADD)
    patches = split_into(tmp_path / "dir", ADD)
    assert findings(run_json(capsys, str(tmp_path / "dir"))[1]) == findings(want)
    assert findings(run_json(capsys, *map(str, patches))[1]) == findings(want)
    md = mailbox.Maildir(str(tmp_path / "maildir"))
    for msg in mailbox.mbox(ADD):
        md.add(msg)
    assert findings(run_json(capsys, str(tmp_path / "maildir"))[1]) == findings(want)
    proc = subprocess.run([sys.executable, "-m", "reviewer", "review", "-", "--format", "json"],
                          input=Path(ADD).read_bytes(), capture_output=True, check=False)
    assert proc.returncode == 1
    assert findings(json.loads(proc.stdout)) == findings(want)


def test_git_range_input(capsys, tmp_path):
    repo = tmp_path / "linux"
    (repo / "arch/x86/kvm").mkdir(parents=True)
    src = "static int kvm_check_cpuid(struct kvm_vcpu *vcpu)\n{\n\tint x = 1;\n\n\treturn 0;\n}\n"
    (repo / "arch/x86/kvm/cpuid.c").write_text(src)

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "base")
    (repo / "arch/x86/kvm/cpuid.c").write_text(src.replace("\n\treturn 0;", "\n\tif (x)\n\t\treturn -EINVAL;\n"
                                                                            "\treturn 0;"))
    git("commit", "-qam", "KVM: x86: Reject x")
    status, doc = run_json(capsys, "--repo", str(repo), "HEAD~1..HEAD")
    assert status == 1
    assert ("userspace-reject-added", "arch/x86/kvm/cpuid.c", 6, "kvm_check_cpuid") in \
        [(r, f, n, fn) for _, r, f, n, fn in findings(doc)]


@pytest.mark.parametrize("fail_on, status", [("info", 1), ("warning", 0), ("error", 0), ("never", 0)])
def test_fail_on_with_only_info_findings(capsys, fail_on, status):
    assert main(["review", SGX, "--fail-on", fail_on]) == status


def test_fail_on_warning_default(capsys):
    assert main(["review", ADD]) == 1
    assert main(["review", str(SAMPLES / "08-not-kvm.mbox")]) == 0
    assert capsys.readouterr().out.endswith("no CPUID/ABI concerns found\n")


def test_text_output_has_no_colour_off_a_tty(capsys):
    main(["review", ADD])
    out = capsys.readouterr().out
    assert "\033[" not in out
    assert "1/1 arch/x86/kvm/cpuid.c:389 (kvm_vcpu_after_set_cpuid()): warning [cpuid-adjust-added]\n" in out


@pytest.mark.parametrize("argv, message", [
    (["review", "/nonexistent/x.mbox"], "kvm-review: error: /nonexistent/x.mbox: no such file, and not a "
                                        "Message-ID or lore URL"),
    (["review", ADD, "--disable", "no-such-rule"], "kvm-review: error: --disable: no rule with id "
                                                    "'no-such-rule'"),
    (["review", ADD, "--rules", "/nonexistent"], "kvm-review: error: /nonexistent: --rules needs a directory "
                                                 "of .toml files"),
    (["rules", "explain", "nope"], "kvm-review: error: no rule with id 'nope' (see: kvm-review rules list)"),
    (["review", "--repo", ".", "HEAD"], "kvm-review: error: HEAD: not a git range (expected A..B)"),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    assert capsys.readouterr().err == message + "\n"


def test_argparse_usage_error_is_exit_2(capsys):
    assert main(["review", ADD, "--format", "html"]) == 2
    assert "invalid choice: 'html'" in capsys.readouterr().err


def test_remote_syntax():
    assert sources.parse_remote("20230503184219.2961044-3-kgallagher@example.com").msgid == \
        "20230503184219.2961044-3-kgallagher@example.com"
    assert sources.parse_remote("<a.b@c.d>").msgid == "a.b@c.d"
    url = sources.parse_remote("https://lore.kernel.org/kvm/20230503184219.2961044-3-kgallagher@example.com/")
    assert (url.msgid, url.base_url) == ("20230503184219.2961044-3-kgallagher@example.com",
                                         "https://lore.kernel.org/kvm")
    raw = sources.parse_remote("https://lore.kernel.org/all/x.y@z.w/raw")
    assert (raw.msgid, raw.base_url) == ("x.y@z.w", "https://lore.kernel.org/all")
    assert sources.parse_remote("samples/x.mbox") is None


def test_disable_and_config_file(capsys, tmp_path):
    assert main(["review", ADD, "--disable", "cpuid-adjust-added", "--disable", "changelog-abi-unacknowledged",
                 "--disable", "stable-on-abi-change", "--format", "json"]) == 0
    rules_seen = {f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert "cpuid-adjust-added" not in rules_seen
    cfg = tmp_path / "kvm-review.toml"
    cfg.write_text('disable = ["cpuid-adjust-added"]\nfail_on = "error"\n')
    assert main(["review", ADD, "--config", str(cfg), "--format", "json"]) == 0
    assert "cpuid-adjust-added" not in {f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]}


def test_git_config_section(capsys, tmp_path, monkeypatch):
    subprocess.run(["git", "config", "--global", "kvm-review.failOn", "error"], check=True)
    subprocess.run(["git", "config", "--global", "--add", "kvm-review.disable", "selftests-missing"], check=True)
    assert main(["review", ADD, "--format", "json"]) == 0
    assert "selftests-missing" not in {f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]}


USER_RULE = '''
[[rule]]
id = "local-no-kvm-bug-on"
title = "No new KVM_BUG_ON in cpuid.c"
category = "process"
severity = "error"
message = "This adds a KVM_BUG_ON to {function}."
why = "House rule of this user."
references = ["https://example.org/house-rules"]
[rule.match]
files = ["arch/x86/kvm/cpuid.c"]
side = "added"
patterns = ['\\bcpuid_entry_clear\\(']
[rule.examples]
fires = """
diff --git a/arch/x86/kvm/cpuid.c b/arch/x86/kvm/cpuid.c
--- a/arch/x86/kvm/cpuid.c
+++ b/arch/x86/kvm/cpuid.c
@@ -1,2 +1,3 @@ void f(void)
 {
+	cpuid_entry_clear(best, X86_FEATURE_AVX);
 }
"""
passes = """
diff --git a/arch/x86/kvm/cpuid.c b/arch/x86/kvm/cpuid.c
--- a/arch/x86/kvm/cpuid.c
+++ b/arch/x86/kvm/cpuid.c
@@ -1,2 +1,3 @@ void f(void)
 {
+	cpuid_entry_set(best, X86_FEATURE_AVX);
 }
"""
'''


def test_user_rules_directory(capsys, tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "house.toml").write_text(USER_RULE)
    assert main(["review", ADD, "--rules", str(tmp_path / "rules"), "--fail-on", "error", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [(f["rule"], f["line"], f["function"]) for f in doc["findings"] if f["rule"].startswith("local")] == [
        ("local-no-kvm-bug-on", 389, "kvm_vcpu_after_set_cpuid")]
    assert main(["rules", "test", "--rules", str(tmp_path / "rules")]) == 0
    assert "ok   local-no-kvm-bug-on" in capsys.readouterr().out


def test_rules_list_explain_test(capsys):
    assert main(["rules", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert len(listed) >= 19 and "cpuid-adjust-added" in listed
    for rule_id in listed:
        assert main(["rules", "explain", rule_id]) == 0
        text = capsys.readouterr().out
        for heading in ("What it does:", "Why it matters:", "References:", "Example that fires:",
                        "Example that does not fire:"):
            assert heading in text, (rule_id, heading)
    assert main(["rules", "test"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{len(listed)} passed, 0 failed"


def test_rules_test_reports_a_broken_example(capsys, tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.toml").write_text(USER_RULE.replace("cpuid_entry_set", "cpuid_entry_clear"))
    assert main(["rules", "test", "--rules", str(tmp_path / "rules")]) == 1
    out = capsys.readouterr().out
    assert "FAIL local-no-kvm-bug-on\n     example passes: rule fired" in out


def test_colour_only_on_a_tty(tmp_path):
    import os
    import pty

    master, slave = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "reviewer", "review", ADD], stdout=slave, stderr=subprocess.PIPE,
                          check=False)
    os.close(slave)
    out = os.read(master, 1 << 16)
    os.close(master)
    assert proc.returncode == 1
    assert b"\x1b[1;33mwarning\x1b[0m [cpuid-adjust-added]" in out
    report = tmp_path / "report.txt"
    assert main(["review", ADD, "-o", str(report)]) == 1
    assert "\033[" not in report.read_text() and "warning [cpuid-adjust-added]" in report.read_text()


def test_a_500_patch_series_is_reviewed(capsys, tmp_path):
    """Size alone is no error (speed is measured by make bench, not here)."""
    sys.path.insert(0, str(SAMPLES.parent / "bench"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    big = generate.series(500, lines_per_patch=20)
    path = tmp_path / "big.mbox"
    path.write_text(big.mbox)
    status, doc = run_json(capsys, str(path))
    assert status == 1
    assert doc["series"]["patches"] == 500 and doc["series"]["complete"] is True
    flagged = {f["patch"] for f in doc["findings"] if f["rule"] in ("cpuid-adjust-added", "userspace-reject-added")}
    assert flagged == set(range(5, 501, 5))


def test_review_does_not_load_dkim_or_requests_but_b4_still_can():
    """b4 imports dkim (and dnspython) for attestation, which is off, and
    requests (with urllib3 and ssl) although a local review sends nothing:
    both are loaded on first use only, and then work as before."""
    code = ("import sys\nfrom reviewer.cli import main\n"
            f"main(['review', {ADD!r}, '--format', 'json', '-o', '/dev/null'])\n"
            "print(sorted(m for m in ('dns.resolver', 'requests.sessions', 'urllib3') if m in sys.modules))\n"
            "import b4\nprint(callable(b4.dkim.verify), 'dns.resolver' in sys.modules)\n"
            "import requests.adapters\n"
            "print(type(b4.get_requests_session()) is requests.sessions.Session, 'urllib3' in sys.modules)\n"
            "print(b4.requests.exceptions.RequestException is requests.RequestException,\n"
            "      requests.adapters.HTTPAdapter is sys.modules['requests.adapters'].HTTPAdapter)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "True True", "True True", "True True"]


def test_threads_first_using_a_stand_in_get_one_module():
    code = ("import sys, threading\nimport reviewer.b4glue, b4\ngot = []\n"
            "threads = [threading.Thread(target=lambda: got.append(b4.requests.exceptions)) for _ in range(8)]\n"
            "[t.start() for t in threads]\n[t.join() for t in threads]\nimport requests\n"
            "print(len(got), all(g is requests.exceptions for g in got), type(sys.modules['requests']).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["8", "True", "module"]


def test_a_header_is_parsed_once_however_often_it_is_read():
    from reviewer import b4glue

    raw = (b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\nTo: kvm@vger.kernel.org, "
           b"Sean <s@example.com>\nSubject: [PATCH] x\n\nbody\n")
    one, two = b4glue.parse_bytes(raw), b4glue.parse_bytes(raw)
    assert one["From"] is two["From"] is one["From"]
    assert str(one["From"]) == "J\u00f6rg <j@example.org>"
    assert [a.addr_spec for a in two["To"].addresses] == ["kvm@vger.kernel.org", "s@example.com"]


def test_another_b4_version_is_one_line_exit_2(capsys, monkeypatch):
    import b4

    monkeypatch.setattr(b4, "__VERSION__", "0.15.2")
    assert main(["review", ADD]) == 2
    assert capsys.readouterr().err == ("kvm-review: error: b4 0.15.2 is installed; kvm-review needs b4 0.16.0 "
                                       "(pip install b4==0.16.0)\n")
