"""Deterministic edits to real kernel files, and universal-ctags as the oracle.

Nothing here knows about :mod:`reviewer.kvm.context`: the edits are planned from
ctags' view of each file, applied in rounds (one commit per round), and the
answer for every changed line is read back from ctags on the file before
(removed lines) or after (added lines) the round.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

AMBIGUOUS = "<ambiguous>"
EXCLUDED = "<ctags quirk>"

# Lines where ctags itself is wrong, excluded from the comparison by the
# (file, ctags tag) that covers them. Each entry says why; the test checks
# that the quirk still shows, so a stale entry fails instead of hiding lines.
CTAGS_QUIRKS = {
    ("arch/x86/kvm/vmx/nested.c", "BUILD_NVMX_MSR_INTERCEPT_HELPER"):
        "the column-0 macro invocation BUILD_NVMX_MSR_INTERCEPT_HELPER(write) (no ';') is taken"
        " for a K&R definition whose body is the next function, nested_vmx_set_intercept_for_msr(),"
        " which ctags then does not list at all",
}


@dataclass(frozen=True)
class Tag:
    name: str
    start: int  # 1-based line of the name
    end: int  # 1-based line of the closing brace


def ctags_functions(root: Path, paths: list[str]) -> dict[str, list[Tag]]:
    """Every C function ctags finds in ``paths`` (relative to ``root``)."""
    proc = subprocess.run(
        ["ctags", "--languages=C", "--language-force=C", "--fields=+ne", "--c-kinds=f", "-o", "-", *paths],
        cwd=root, capture_output=True, text=True, check=True)
    tags: dict[str, list[Tag]] = {p: [] for p in paths}
    for row in proc.stdout.splitlines():
        parts = row.split("\t")
        fields = dict(p.split(":", 1) for p in parts[3:] if ":" in p)
        if "line" in fields and "end" in fields:
            tags[parts[1]].append(Tag(parts[0], int(fields["line"]), int(fields["end"])))
    for found in tags.values():
        found.sort(key=lambda t: t.start)
    return tags


def oracle(path: str, tags: list[Tag], nlines: int) -> list[str | None]:
    """ctags' function for every line (index 0 = line 1); None = top level."""
    answer: list[str | None] = [None] * nlines
    for tag in tags:
        quirk = (path, tag.name) in CTAGS_QUIRKS
        for i in range(tag.start - 1, min(tag.end, nlines)):
            if quirk:
                answer[i] = EXCLUDED
            elif answer[i] is None:
                answer[i] = tag.name
            elif answer[i] != EXCLUDED:
                answer[i] = AMBIGUOUS
    return answer


# ---------------------------------------------------------------- edits

@dataclass(frozen=True)
class Edit:
    index: int  # 0-based line the edit is anchored on
    op: str  # "add" (a new line after index), "del" (remove it), "chg" (replace it)
    text: str = ""


def apply_edits(lines: list[str], edits: dict[int, Edit]) -> list[str]:
    out = []
    for i, line in enumerate(lines):
        edit = edits.get(i)
        if edit is None:
            out.append(line)
        elif edit.op == "add":
            out += [line, edit.text]
        elif edit.op == "chg":
            out.append(edit.text)
    return out


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _code(line: str) -> str:
    return re.sub(r"/\*.*?\*/", "", line).split("//", 1)[0].strip()


class _Planner:
    """Chooses safe edit points in one file version (safe: the C stays C)."""

    def __init__(self, lines: list[str], tags: list[Tag], seed: int):
        self.lines = lines
        self.tags = tags
        self.edits: dict[int, Edit] = {}
        self.counter = seed * 100000
        self.in_macro = [False] * len(lines)
        self.in_comment = [False] * len(lines)
        macro = comment = False
        for i, line in enumerate(lines):
            self.in_macro[i] = macro or line.startswith("#")
            macro = (macro or line.startswith("#")) and line.rstrip().endswith("\\")
            stripped = line.strip()
            starts = stripped.startswith("/*") and "*/" not in stripped
            self.in_comment[i] = comment or stripped.startswith(("/*", "*"))
            if comment and "*/" in line:
                comment = False
            elif starts:
                comment = True

    def _probe(self) -> int:
        self.counter += 1
        return self.counter

    def _free(self, *indexes: int) -> bool:
        return all(0 <= i < len(self.lines) and i not in self.edits and i - 1 not in self.edits
                   and i + 1 not in self.edits for i in indexes)

    def _boundary(self, i: int) -> bool:
        """A statement ends at line i, inside code (not a macro or a comment)."""
        if not 0 <= i < len(self.lines) or self.in_macro[i] or self.in_comment[i]:
            return False
        code = _code(self.lines[i])
        return code.endswith((";", "{", "}")) or (code.endswith(":") and not code.startswith("?"))

    def _single_statement(self, i: int) -> bool:
        """Line i holds one whole statement (deleting it keeps the C valid)."""
        if not self._boundary(i) or not self.lines[i][:1] == "\t":
            return False
        code = _code(self.lines[i])
        if not code.endswith(";") or code.count("(") != code.count(")") or code.startswith("}"):
            return False
        return self._boundary(i - 1) and not _code(self.lines[i - 1]).startswith(("if", "else", "for", "while"))

    def add_statement(self, after: int, next_line: int | None = None) -> bool:
        closes_comment = 0 <= after < len(self.lines) and self.lines[after].strip() == "*/"
        if not self._free(after) or not (self._boundary(after) or closes_comment):
            return False
        ref = self.lines[next_line if next_line is not None else after + 1]
        indent = _indent(ref) if ref.startswith("\t") else "\t"
        self.edits[after] = Edit(after, "add", f"{indent}kvm_review_probe({self._probe()});")
        return True

    def add_comment(self, after: int, top: bool) -> bool:
        if not self._free(after) or self.in_comment[after] or self.lines[after].rstrip().endswith("\\"):
            return False
        indent = "" if top else (_indent(self.lines[after + 1]) or "\t")
        self.edits[after] = Edit(after, "add", f"{indent}/* kvm-review probe {self._probe()} */")
        return True

    def add_toplevel(self, after: int) -> bool:
        if not self._free(after) or self.lines[after].strip():
            return False
        self.edits[after] = Edit(after, "add", f"static int kvm_review_probe_{self._probe()};")
        return True

    def delete(self, i: int) -> bool:
        if not self._free(i):
            return False
        self.edits[i] = Edit(i, "del")
        return True

    def change(self, i: int, text: str) -> bool:
        if not self._free(i) or text == self.lines[i]:
            return False
        self.edits[i] = Edit(i, "chg", text)
        return True

    def body(self, tag: Tag) -> tuple[int, int] | None:
        """0-based (opening brace line, closing brace line) of a function."""
        for i in range(tag.start - 1, min(tag.end, len(self.lines))):
            if _code(self.lines[i]).endswith("{"):
                if i < tag.end - 1 and self.lines[tag.end - 1].startswith("}"):
                    return i, tag.end - 1
                return None
        return None


def plan(lines: list[str], tags: list[Tag], round_no: int) -> dict[int, Edit]:
    """Round 1: function starts and ends, the lines before a definition,
    changed definition lines, #if blocks. Round 2: middles, switch cases, after
    comment blocks, after labels. Round 3: deletions and changed statements."""
    p = _Planner(lines, tags, round_no)
    for n, tag in enumerate(tags):
        span = p.body(tag)
        if span is None:
            continue
        open_, close = span
        if round_no == 1:
            p.add_statement(open_)
            p.add_statement(close - 1, next_line=close - 1)
            if n % 2 == 0:
                blank = tag.start - 2
                while blank > 0 and lines[blank].strip() and not lines[blank].startswith("}"):
                    blank -= 1
                p.add_toplevel(blank)
            if n % 5 == 0 and lines[tag.start - 1].rstrip().endswith(")"):
                p.change(tag.start - 1, lines[tag.start - 1].rstrip()[:-1] + " /* v2 */)")
        elif round_no == 2:
            mid = (open_ + close) // 2
            for i in range(mid, close - 1):
                if p.add_statement(i):
                    break
            body = range(open_ + 1, close)
            case = next((i for i in body if re.match(r"\t+(case\b.*|default):$", lines[i].rstrip())), None)
            if case is not None:
                p.change(case, lines[case] + " /* v2 */")
                if p._boundary(case + 1):
                    p.add_statement(case + 1)
            end = next((i for i in body if lines[i].strip() == "*/"), None)
            if end is not None:
                if p._boundary(end + 1):
                    p.add_statement(end, next_line=end + 1)
                if lines[end - 1].strip().startswith("* "):
                    p.change(end - 1, lines[end - 1] + " (v2)")
            label = next((i for i in body if re.match(r"[a-z_]\w*:$", lines[i])), None)
            if label is not None and p._boundary(label + 1):
                p.add_statement(label + 1)
        else:
            if p._single_statement(open_ + 1):
                p.delete(open_ + 1)
            if p._single_statement(close - 1):
                p.delete(close - 1)
            if n % 3 == 0 and tag.start >= 2 and not lines[tag.start - 2].strip():
                p.delete(tag.start - 2)
            mid = (open_ + close) // 2
            for i in range(mid, close - 1):
                if p._single_statement(i) and p.change(i, lines[i] + " /* v2 */"):
                    break
    inside = set()
    for tag in tags:
        inside.update(range(tag.start - 1, tag.end))
    # top level: initializer entries changed, declarations added between blocks
    for i in range(round_no * 7, len(lines) - 1, 41):
        if i in inside or p.in_macro[i] or p.in_comment[i]:
            continue
        if round_no == 2 and lines[i].startswith("\t") and lines[i].rstrip().endswith(","):
            p.change(i, lines[i].rstrip() + " /* v2 */")
        elif round_no == 1 and not lines[i].strip() and i + 1 not in inside:
            p.add_toplevel(i)
    # near #if / #else / #endif, in and out of functions
    for i, line in enumerate(lines[:-1]):
        if re.match(r"#\s*(if|ifdef|ifndef|else|endif)\b", line) and (i + round_no) % 2 == 0:
            nxt = lines[i + 1]
            if round_no == 3 and i + 1 in inside and p._single_statement(i + 1) and nxt.startswith("\t"):
                p.delete(i + 1)
            elif not line.rstrip().endswith("\\") and not nxt.startswith("#"):
                p.add_comment(i, top=i not in inside)
    return p.edits


# ---------------------------------------------------------------- the series

# Each series is a chain of versions: patch n turns chain[n - 1] into chain[n].
SERIES = {
    "edits": ["v0", "v1", "v2", "v3"],  # rounds 1-3 of plan(), one commit each
    "renames": ["v0", "r1"],  # renamed definitions, plus edits far down those functions
}
DRIVERS = ("cpp", "default")  # with the kernel's `*.c diff=cpp` attribute, and git's default


@dataclass
class Built:
    """The edited versions of every file, their ctags, and the mails."""

    files: list[str]
    versions: dict[str, dict[str, list[str]]]  # "v0" = the real tree
    tags: dict[str, dict[str, list[Tag]]]
    repo: Path
    patches: dict[tuple[str, str], Path]  # (series, driver) -> directory of .patch files

    def answer(self, version: str, path: str) -> list[str | None]:
        return oracle(path, self.tags[version][path], len(self.versions[version][path]))


def git_env(home: Path) -> dict[str, str]:
    stamp = "2025-06-02T10:00:00+0000"
    return {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "Dev Eloper",
            "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_NAME": "Dev Eloper",
            "GIT_COMMITTER_EMAIL": "dev@example.com", "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp,
            "LC_ALL": "C"}


def _write(root: Path, files: dict[str, list[str]]) -> None:
    for path, lines in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines), encoding="utf-8")


def plan_renames(lines: list[str], tags: list[Tag]) -> dict[int, Edit]:
    """Every 4th function renamed, with statements added at its start and
    before its end (far from the definition in long functions: a separate
    hunk whose header git takes from the old file, with the old name)."""
    p = _Planner(lines, tags, 9)
    for tag in tags[::4]:
        span = p.body(tag)
        if span is None or f"{tag.name}(" not in lines[tag.start - 1]:
            continue
        p.change(tag.start - 1, lines[tag.start - 1].replace(f"{tag.name}(", f"{tag.name}_v2(", 1))
        p.add_statement(span[0])
        p.add_statement(span[1] - 1, next_line=span[1] - 1)
    return p.edits


def build(tree: Path, work: Path, subdir: str = "arch/x86/kvm") -> Built:
    files = sorted(str(p.relative_to(tree)) for p in (tree / subdir).rglob("*.c"))
    versions = {"v0": {f: (tree / f).read_text(encoding="utf-8").split("\n") for f in files}}
    tags = {"v0": ctags_functions(tree, files)}

    def derive(name: str, base: str, planner) -> None:
        def sane(f: str) -> list[Tag]:  # ctags' quirks are no place to edit
            return [t for t in tags[base][f] if (f, t.name) not in CTAGS_QUIRKS]

        versions[name] = {f: apply_edits(versions[base][f], planner(versions[base][f], sane(f))) for f in files}
        _write(work / name, versions[name])
        tags[name] = ctags_functions(work / name, files)

    for round_no in (1, 2, 3):
        derive(f"v{round_no}", f"v{round_no - 1}", lambda lines, t, r=round_no: plan(lines, t, r))
    derive("r1", "v0", plan_renames)

    repo = work / "repo"
    env = git_env(work)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                              text=True).stdout

    repo.mkdir()
    git("init", "-q", "-b", "edits")
    _write(repo, versions["v0"])
    git("add", "-A")
    git("commit", "-q", "-m", "base: the real 6.12 files")
    patches = {}
    for series, chain in SERIES.items():
        if series != "edits":
            git("checkout", "-q", "-b", series, f"edits~{len(SERIES['edits']) - 1}")
        for number, version in enumerate(chain[1:], 1):
            _write(repo, versions[version])
            git("add", "-A")
            git("commit", "-q", "-m", f"KVM: x86: kvm-review {series}, part {number}",
                "-m", f"Deterministic edits ({version}).\n\nSigned-off-by: Dev Eloper <dev@example.com>")
        for driver in DRIVERS:
            attributes = repo / ".git" / "info" / "attributes"
            attributes.parent.mkdir(exist_ok=True)
            attributes.write_text("*.c diff=cpp\n*.h diff=cpp\n" if driver == "cpp" else "")
            out = work / f"patches-{series}-{driver}"
            git("format-patch", "-q", "--thread", "-o", str(out), f"{series}~{len(chain) - 1}..{series}")
            patches[series, driver] = out
    return Built(files, versions, tags, repo, patches)
