"""Pre-send checks for authors: ``check``, and git's sendemail-validate hook.

``kvm-review check`` reviews the commits about to be sent (a range, the b4
prep series, or ``@{upstream}..HEAD``), ``git format-patch`` files, or one
patch on stdin (``b4 prep --check``), in a terse checkpatch-like format.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from reviewer import commands, pipeline, sources
from reviewer import config as configmod
from reviewer.errors import EXIT_CLEAN, InputError

HOOK = "sendemail-validate"
BEGIN = "# >>> kvm-review >>>"
END = "# <<< kvm-review <<<"
B4_TRACKING = "--- b4-submit-tracking ---"


def git(repo: str, *args: str) -> str:
    """Run git in ``repo``; InputError with git's first line on failure."""
    try:
        proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InputError(f"cannot run git: {exc.strerror}") from None
    if proc.returncode:
        lines = proc.stderr.strip().splitlines()
        raise InputError(f"git {args[0]}: {lines[0] if lines else 'failed'}")
    return proc.stdout.strip()


def toplevel(repo: str) -> str:
    try:
        return git(repo, "rev-parse", "--show-toplevel")
    except InputError:
        raise InputError(f"{os.path.abspath(repo)}: not a git repository") from None


def _require_kernel_tree(top: str) -> None:
    if not (Path(top) / "arch" / "x86" / "kvm").is_dir():
        raise InputError(f"{top}: not a kernel tree (no arch/x86/kvm/)")


def _b4_prep_range(top: str) -> str | None:
    """``<cover commit>..HEAD`` on a b4 prep branch (cover-letter strategy
    "commit", b4's default), else None."""
    branch = subprocess.run(["git", "-C", top, "symbolic-ref", "--quiet", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    if not branch.startswith("b4/"):
        return None
    cover = git(top, "log", "--format=%H", "-n1", "--fixed-strings", f"--grep={B4_TRACKING}", "HEAD")
    return f"{cover}..HEAD" if cover else None


def default_range(top: str) -> str:
    prep = _b4_prep_range(top)
    if prep:
        return prep
    upstream = subprocess.run(["git", "-C", top, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"],
                              capture_output=True, text=True, check=False)
    if upstream.returncode == 0 and upstream.stdout.strip():
        return "@{upstream}..HEAD"
    raise InputError("no range given, and this branch is neither a b4 prep branch nor tracking an upstream: "
                     "pass one, e.g. kvm-review check origin/master..HEAD")


def _dirty(top: str) -> bool:
    return bool(git(top, "status", "--porcelain", "--untracked-files=no"))


def _is_cover(msg) -> bool:
    """b4's review-series-check-cmd pipes only the cover letter ([PATCH 0/N])."""
    from reviewer import b4glue

    info = b4glue.parse_subject(str(msg.get("Subject", "")))
    return info.patch and info.counter == 0 and not info.reply and bool(msg.get("Message-ID"))


def _thread_of(cover) -> list:
    """The whole series behind a cover letter, from lore (b4's b4.midmask)."""
    return pipeline.fetch_remote(cover.get("Message-ID", "").strip().strip("<>"))


def check(args) -> int:
    cfg = configmod.load(args.config, cwd=args.repo if os.path.isdir(args.repo) else None)
    if args.stdin:
        msgs = sources.from_path("-")
        if len(msgs) == 1 and _is_cover(msgs[0]):
            msgs = _thread_of(msgs[0])
    elif args.inputs and all(os.path.exists(p) for p in args.inputs):
        msgs = sources.gather(args.inputs)
    else:
        if len(args.inputs) > 1:
            raise InputError("check takes one git range, or patch files that exist")
        top = toplevel(args.repo)
        _require_kernel_tree(top)
        if _dirty(top):
            raise InputError(f"{top}: uncommitted changes; commit or stash them, check reviews commits")
        rev_range = args.inputs[0] if args.inputs else default_range(top)
        msgs = sources.from_git(top, rev_range)
        if not args.kernel_tree and not cfg.get("kernel_tree"):
            args.kernel_tree = top  # exact function context from the files at hand
    args.format = args.format or "checkpatch"
    args.revision = None
    return commands.run_review(args, cfg, msgs)


def hook_path(repo: str) -> Path:
    top = toplevel(repo)
    return Path(top) / git(top, "rev-parse", "--git-path", "hooks") / HOOK


def _block(fail_on: str) -> str:
    beside = Path(sys.executable).parent / "kvm-review"  # the one running now
    exe = str(beside) if beside.exists() else (shutil.which("kvm-review") or "kvm-review")
    cmd = f"{shlex.quote(exe)} check --server auto --fail-on {shlex.quote(fail_on)} \"$1\""
    refuse = "{ echo 'kvm-review: findings (send with --no-validate to override)' >&2; exit 1; }"
    return f"{BEGIN}\n{cmd} || {refuse}\n{END}\n"


def _without_block(text: str) -> str:
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.strip() == BEGIN:
            skipping = True
        elif line.strip() == END:
            skipping = False
        elif not skipping:
            out.append(line)
    return "".join(out)


def install_hook(args) -> int:
    path = hook_path(args.repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else "#!/bin/sh\n"
    text = _without_block(text)
    if not text.startswith("#!"):
        text = "#!/bin/sh\n" + text
    path.write_text(text.rstrip("\n") + "\n" + _block(args.fail_on))
    path.chmod(0o755)
    print(f"kvm-review: installed in {path}")
    return EXIT_CLEAN


def uninstall_hook(args) -> int:
    path = hook_path(args.repo)
    if not path.exists() or BEGIN not in path.read_text():
        print(f"kvm-review: not installed in {path}")
        return EXIT_CLEAN
    rest = _without_block(path.read_text())
    if rest.strip() in ("", "#!/bin/sh", "#!/bin/bash"):
        path.unlink()
    else:
        path.write_text(rest)
    print(f"kvm-review: removed from {path}")
    return EXIT_CLEAN


def main(args) -> int:
    if args.command == "check":
        return check(args)
    if args.command == "install-hook":
        return install_hook(args)
    return uninstall_hook(args)



