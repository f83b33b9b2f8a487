"""``kvm-review reach FUNCTION...``: which ioctl reaches a KVM x86 function, and how."""

from __future__ import annotations

import argparse

from reviewer.errors import InputError
from reviewer.kvm import reach


def stats(model: reach.Model) -> list[str]:
    """The index's size and, per entry point, how many functions it reaches (any call / result used)."""
    index = model.index
    lines = [f"kernel {index.kernel}: {len(index.names)} functions, {index.edge_count} calls,"
             f" {len(index.entries)} entry points", "functions reached (any call / result used):"]
    rows = sorted(((len(model.reached(e)), len(model.reached(e, "result")), e) for e in index.entries),
                  key=lambda row: (-row[0], row[2]))
    return lines + [f"{any_:6} {result:6}  {entry}" for any_, result, entry in rows]


def main(args: argparse.Namespace) -> int:
    if not args.functions and not args.stats:
        raise InputError("reach: name a FUNCTION, or ask for --stats")
    model = reach.load(args.kernel_tree, args.index)
    if args.stats:
        print("\n".join(stats(model)))
    for func in args.functions:
        if not model.known(func):
            print(f"{func}: not a function of the index (kernel {model.index.kernel})")
            continue
        path = model.path(func, args.via)
        print(f"{func}: {reach.describe(path) if path else 'not reached from userspace'}")
        if path and args.path:
            print(f"  path: {' -> '.join(path)}")
        if path and args.entries:
            print(f"  entries: {', '.join(model.entries(func, args.via))}")
    return 0
