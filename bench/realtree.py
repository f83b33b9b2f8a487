"""Series built from the real kernel: edits to the real arch/x86/kvm files, exported with git.

Where the tree comes from, in order: ``--kernel-tree PATH`` (a kernel checkout or
an unpacked source tree); else Debian's ``/usr/src/linux-source-6.12.tar.xz``,
of which only what the benchmark needs is unpacked (about 9 s, once) into
``bench/results/linux-source-6.12/`` (git-ignored; nothing from the kernel is ever
committed); with ``--install``, as root, ``apt-get install linux-source-6.12`` first.

A series is made in a throwaway git repo holding a copy of ``arch/x86/kvm/``
(with the kernel's ``diff=cpp`` attribute), one commit per patch of deterministic
edits inside real function bodies (statements added, removed and changed; every
fifth patch adds an edit the rules flag in ``cpuid.c``), then
``git format-patch --cover-letter --thread=shallow``: real hunk headers, real context.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from generate import BLOCKS, STATEMENTS

TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
PACKAGE = "linux-source-6.12"
CACHE = Path(__file__).resolve().parent / "results" / "linux-source-6.12"
MEMBERS = ("scripts/checkpatch.pl", "scripts/spelling.txt", "scripts/const_structs.checkpatch",
           "arch/x86/kvm/", "arch/x86/include/uapi/asm/kvm.h", "include/uapi/linux/kvm.h",
           "Documentation/virt/kvm/api.rst")
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Priya Raman", "GIT_AUTHOR_EMAIL": "priya.raman@example.com",
           "GIT_COMMITTER_NAME": "Priya Raman", "GIT_COMMITTER_EMAIL": "priya.raman@example.com",
           "GIT_AUTHOR_DATE": "2025-03-01T12:00:00+0000", "GIT_COMMITTER_DATE": "2025-03-01T12:00:00+0000"}

_DEF = re.compile(r"^[A-Za-z_][\w \t*]*?\b([A-Za-z_]\w*)\s*\(")
_FLAG_ADJUST = ["\tbest = kvm_find_cpuid_entry_index(vcpu, 7, 0);", "\tif (best)",
                "\t\tbest->ecx &= ~feature_bit(LA57);"]
_FLAG_REJECT = ["\tbest = kvm_find_cpuid_entry(vcpu, 0x80000008);",
                "\tif (best && (best->eax & 0xff) > 52)", "\t\treturn -EINVAL;"]


@dataclass
class Tree:
    path: Path
    source: str  # how it was found


def find_tree(explicit: str | None, install: bool, log=print) -> Tree | None:
    """The kernel tree to use, or None (then the generator is used)."""
    if explicit:
        path = Path(explicit)
        if not (path / "arch/x86/kvm/cpuid.c").is_file():
            raise SystemExit(f"--kernel-tree {explicit}: no arch/x86/kvm/cpuid.c there")
        return Tree(path, f"--kernel-tree {explicit}")
    if (CACHE / "arch/x86/kvm/cpuid.c").is_file() and (CACHE / "scripts/checkpatch.pl").is_file():
        return Tree(CACHE, f"{TARBALL} (unpacked in {CACHE})")
    if not TARBALL.is_file():
        if not install:
            log(f"no kernel tree: {TARBALL} missing (pass --install as root to apt-get install {PACKAGE},"
                " or --kernel-tree PATH); using the generator")
            return None
        if os.geteuid() != 0:
            log(f"no kernel tree: --install needs root to apt-get install {PACKAGE}; using the generator")
            return None
        log(f"installing {PACKAGE} (apt-get, about 150 MB)...")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", PACKAGE], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    log(f"unpacking the needed files of {TARBALL} into {CACHE} (once, about 10 s)...")
    tmp = Path(tempfile.mkdtemp(dir=CACHE.parent if CACHE.parent.exists() else None))
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(TARBALL, "r:xz") as tar:
        prefix = "linux-source-6.12/"
        wanted = [m for m in tar if m.name.startswith(prefix)
                  and any(m.name[len(prefix):].startswith(w) for w in MEMBERS) and (m.isfile() or m.isdir())]
        tar.extractall(tmp, members=wanted, filter="data")
    if CACHE.exists():
        shutil.rmtree(CACHE)
    (tmp / "linux-source-6.12").rename(CACHE)
    shutil.rmtree(tmp)
    return Tree(CACHE, f"{TARBALL} (unpacked in {CACHE})")


def checkpatch_of(tree: Tree) -> Path | None:
    script = tree.path / "scripts/checkpatch.pl"
    data = [tree.path / "scripts/spelling.txt", tree.path / "scripts/const_structs.checkpatch"]
    return script if script.is_file() and all(p.is_file() for p in data) else None


def _bodies(lines: list[str]) -> list[tuple[str, int, int]]:
    """(function, first body line, closing brace line) of every function, kernel style."""
    out, name = [], None
    start = None
    for i, line in enumerate(lines):
        if start is None:
            m = _DEF.match(line)
            if m and not line.rstrip().endswith(";") and not line.startswith(("typedef", "struct", "union", "enum")):
                name = m.group(1)
            elif line == "{" and name:
                start = i + 1
            elif line and not line[0].isspace() and not line.startswith(("{", "#")) and not _DEF.match(line):
                name = None if line.rstrip().endswith(";") else name
        elif line.startswith("}"):
            out.append((name, start, i))
            start = name = None
    return out


def _safe(lines: list[str], body: tuple[str, int, int]) -> list[int]:
    """Lines in a body that are one whole statement at depth one: safe to change, remove or insert after."""
    _, lo, hi = body
    ok = []
    for i in range(lo + 1, hi):
        line, prev = lines[i], lines[i - 1].rstrip()
        if (line.startswith("\t") and not line.startswith("\t\t") and line.rstrip().endswith(";")
                and (prev.endswith((";", "{", "}")) or prev == "") and not line.lstrip().startswith(("case", "/*", "*"))
                and "\\" not in line):
            ok.append(i)
    return ok


def _edit(rng: random.Random, lines: list[str], budget: int, flag: list[str] | None, flag_fn: str | None) -> None:
    bodies = [b for b in _bodies(lines) if b[2] - b[1] > 8]
    if flag:
        target = next(b for b in bodies if b[0] == flag_fn)
        at = _safe(lines, target) or [target[1]]
        lines[at[len(at) // 2] + 1:at[len(at) // 2] + 1] = flag
        budget -= len(flag)
        bodies = _bodies(lines)
        bodies = [b for b in bodies if b[2] - b[1] > 8]
    picks = sorted(rng.sample(bodies, min(len(bodies), rng.randint(2, 5))), key=lambda b: -b[1])
    per = max(3, budget // max(1, len(picks)))
    for body in picks:  # bottom-up, so earlier line numbers stay valid
        safe = _safe(lines, body)
        if not safe:
            continue
        done = 0
        for at in sorted(rng.sample(safe, min(len(safe), 3)), reverse=True):
            roll = rng.random()
            if roll < 0.2:
                del lines[at]
                done += 1
                continue
            if roll < 0.45:
                lines[at] = rng.choice(STATEMENTS)
                done += 2
            block = rng.choice(BLOCKS)
            lines[at + 1:at + 1] = block
            done += len(block)
        while done < per:  # the rest of the budget: more blocks after the body's first safe statement
            block = rng.choice(BLOCKS)
            lines[safe[0] + 1:safe[0] + 1] = block
            done += len(block)


def _git(repo: Path, *args: str, **kw) -> str:
    env = dict(os.environ, **GIT_ENV)
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env, **kw).stdout


def build_series(tree: Tree, patches: int, out_dir: Path, seed: int = 1, lines_per_patch: int = 100) -> Path:
    """An mbox of ``patches`` patches of real-file edits, written under ``out_dir``."""
    rng = random.Random(f"real-{seed}-{patches}")
    repo = Path(tempfile.mkdtemp(prefix="kvm-bench-git-"))
    try:
        shutil.copytree(tree.path / "arch/x86/kvm", repo / "arch/x86/kvm")
        _git(repo, "init", "-q", "-b", "main")
        (repo / ".git/info").mkdir(exist_ok=True)
        (repo / ".git/info/attributes").write_text("*.c diff=cpp\n*.h diff=cpp\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "base")
        files = sorted(p for p in (repo / "arch/x86/kvm").rglob("*.c") if p.stat().st_size > 20000)
        cpuid = repo / "arch/x86/kvm/cpuid.c"
        for i in range(1, patches + 1):
            flag = flag_fn = None
            if i % 5 == 0:
                flag, flag_fn = (_FLAG_ADJUST, "kvm_vcpu_after_set_cpuid") if (i // 5) % 2 else \
                    (_FLAG_REJECT, "kvm_check_cpuid")
            targets = [cpuid] if flag else []
            targets += rng.sample(files, rng.choice((1, 1, 2)))
            for n, path in enumerate(dict.fromkeys(targets)):
                lines = path.read_text().split("\n")
                _edit(rng, lines, lines_per_patch // len(targets), flag if n == 0 else None,
                      flag_fn if n == 0 else None)
                path.write_text("\n".join(lines))
            rel = targets[-1].relative_to(repo / "arch/x86/kvm")
            area = "x86" if len(rel.parts) == 1 else rel.parts[0].upper().replace("MMU", "x86/mmu")
            msg = (f"KVM: {area}: Rework {rel.stem} step {i}\n\nDeterministic benchmark edit {i} of {patches} to"
                   f" real kernel code.\n\nSigned-off-by: Priya Raman <priya.raman@example.com>\n")
            _git(repo, "commit", "-q", "-a", "-m", msg)
        base = _git(repo, "rev-parse", f"HEAD~{patches}").strip()
        _git(repo, "format-patch", "-q", "--cover-letter", "--thread=shallow", f"--base={base}",
             "-o", str(repo / "out"), f"{base}..HEAD")
        parts = []
        for p in sorted((repo / "out").glob("*.patch")):
            text = p.read_text()
            if p.name.startswith("0000-"):
                text = text.replace("*** SUBJECT HERE ***", "KVM: x86: Benchmark series on real code")
                text = text.replace("*** BLURB HERE ***", "Deterministic edits to the real arch/x86/kvm files.")
            parts.append(text)
        out_dir.mkdir(parents=True, exist_ok=True)
        dest = out_dir / f"real-{patches}.mbox"
        dest.write_text("\n".join(parts))
        return dest
    finally:
        shutil.rmtree(repo, ignore_errors=True)

