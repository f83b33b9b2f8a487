"""``kvm-review reach FUNCTION...``: which ioctl reaches a KVM x86 function, and how."""

from __future__ import annotations

import argparse

from reviewer.kvm import reach


def main(args: argparse.Namespace) -> int:
    model = reach.load(args.kernel_tree, args.index)
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
