"""``make kvm-index``: write the shipped index from Debian's linux-source-6.12.

Installs the package when root and its tarball is missing, unpacks only the
scanned files into a temporary directory (never into the repository), builds
the index and writes ``reviewer/kvm/data/index-6.12.txt``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from reviewer.errors import InputError
from reviewer.kvm import graph, reach
from reviewer.kvm.index import dumps

PACKAGE = "linux-source-6.12"
TARBALL = Path(f"/usr/src/{PACKAGE}.tar.xz")
TOP = PACKAGE
DATA = Path(__file__).resolve().parent / "data" / reach.SHIPPED


def members() -> list[str]:
    """The tarball members the index needs (the Makefile for the version)."""
    return [f"{TOP}/{part}/*" if "." not in Path(part).name else f"{TOP}/{part}" for part in graph.SCANNED] + [
        f"{TOP}/Makefile"]


def ensure_tarball(tarball: Path) -> None:
    if tarball.is_file():
        return
    if os.geteuid() != 0:
        raise InputError(f"{tarball} is missing: apt-get install {PACKAGE} (as root), or pass --tree")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", PACKAGE],
                          env=env, check=False, capture_output=True, text=True)
    if proc.returncode or not tarball.is_file():
        raise InputError(f"apt-get install {PACKAGE} failed: {proc.stderr.strip()[-200:]}")


def unpack(tarball: Path, dest: Path) -> Path:
    subprocess.run(["tar", "-xJf", str(tarball), "-C", str(dest), "--wildcards", *members()],
                   check=True, capture_output=True)
    return dest / TOP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reviewer.kvm.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--tarball", type=Path, default=TARBALL, help=f"default: {TARBALL}")
    parser.add_argument("--tree", type=Path, help="an unpacked kernel tree instead of the tarball")
    parser.add_argument("-o", "--output", type=Path, default=DATA, help="default: the shipped index")
    args = parser.parse_args(argv)
    try:
        if args.tree:
            index = graph.build(args.tree)
        else:
            ensure_tarball(args.tarball)
            with tempfile.TemporaryDirectory(prefix="kvm-index-") as tmp:
                index = graph.build(unpack(args.tarball, Path(tmp)))
    except InputError as exc:
        print(f"kvm-index: error: {exc}", file=sys.stderr)
        return exc.exit_status
    args.output.write_text(dumps(index), encoding="utf-8")
    print(f"{args.output}: kernel {index.kernel}, {len(index.names)} functions, {index.edge_count} edges,"
          f" {len(index.entries)} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
