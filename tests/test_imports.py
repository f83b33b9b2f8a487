"""Imports: no module of reviewer/ imports itself back through another (at
the top or inside a function), and a review of a local patch loads only what
it needs (what each costs: README, "Benchmark")."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT, SAMPLES


def imports_of(path) -> set[str]:
    """The reviewer modules a file imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "reviewer":
            if node.module == "reviewer":
                found |= {f"reviewer.{a.name}" for a in node.names
                          if (ROOT / "reviewer" / f"{a.name}.py").exists()}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "reviewer"}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    found.append(path + [start])
                elif nxt not in path and nxt > start:  # each circle once, from its least module
                    stack.append((nxt, path + [nxt]))
    return found


def test_cycles_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_circles():
    graph = {f"reviewer.{p.stem}": imports_of(p) - {f"reviewer.{p.stem}"}
             for p in (ROOT / "reviewer").glob("*.py") if p.stem != "__init__"}
    assert cycles(graph) == []


def test_a_local_review_loads_no_network_mail_or_template_code(tmp_path):
    code = ("import sys, io, contextlib\nfrom reviewer.cli import main\n"
            "for _ in range(2):  # the second run reads the rule pack from the cache\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            f"        main(['review', {str(SAMPLES / '02-add-adjustment.mbox')!r}, '--format', 'json'])\n"
            "    real = sorted(m for m in ('requests', 'urllib3', 'ssl', 'smtplib', 'dkim', 'patatt', 'jinja2', "
            "'tomllib') if m in sys.modules and type(sys.modules[m]).__name__ != '_Deferred')\n"
            "    print(real)\n"
            "    sys.modules.pop('tomllib', None)\n")
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env=env).stdout
    assert out.splitlines() == ["['tomllib']", "[]"]
