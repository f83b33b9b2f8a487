"""The ``kvm-review`` command. Imports stay lazy: ``--version`` and ``--help``
must not pay for b4, requests or jinja2, and a ``check`` that a running
server answers (:mod:`reviewer.client`) imports nothing else at all."""

from __future__ import annotations

import sys

from reviewer import __version__
from reviewer.errors import EXIT_CLEAN, EXIT_FINDINGS, EXIT_INPUT, EXIT_INTERNAL, BrokenPack, InputError

FORMATS = ("text", "json", "checkpatch", "b4-check", "markdown", "email")
FAIL_ON = ("info", "warning", "error", "never")

TYPE_CHECKING = False  # typing costs 4 ms to import: argparse is imported where it is used
if TYPE_CHECKING:
    import argparse

EPILOG = """exit status: 0 nothing at or above --fail-on, 1 findings at or above it,
2 usage or input error (one line on stderr), 3 internal error (a bug: please report)"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, help="output format (default: text)")
    p.add_argument("--fail-on", choices=FAIL_ON, help="lowest severity that makes the exit status 1 (default: warning)")
    p.add_argument("--rules", action="append", default=[], metavar="DIR", help="also load rule files from DIR")
    p.add_argument("--disable", action="append", default=[], metavar="ID", help="disable a rule")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--kernel-tree", metavar="PATH", help="a kernel tree: function context from whole files")
    p.add_argument("--templates", metavar="DIR", help="override reply templates (email format)")
    p.add_argument("--reply-when-clean", action="store_true", help="email format: reply to a clean series too")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")


def _seconds(text: str) -> float:
    """A positive number of seconds (argparse type)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="kvm-review", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Review KVM x86 patch series for CPUID adjustments and new rejections of userspace input.")
    parser.add_argument("--version", action="store_true", help="print the version and the rules loaded, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    review = sub.add_parser("review", help="review a series (mbox, patches, git range, Message-ID, lore URL)",
                            epilog=EPILOG)
    review.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="mbox/maildir, patch files or directory, '-' for stdin, "
                             "A..B with --repo, Message-ID or lore URL")
    review.add_argument("--repo", metavar="PATH", help="read INPUT as a git range A..B in this repository")
    review.add_argument("--revision", type=int, metavar="N", help="review vN instead of the latest revision")
    review.add_argument("--lore", metavar="URL", help="lore base URL (default: b4's b4.midmask)")
    review.add_argument("--no-cache", action="store_true", help="do not use b4's cache when fetching")
    review.add_argument("--send", action="store_true", help="email format: send the replies over SMTP")
    review.add_argument("--dry-run", action=argparse.BooleanOptionalAction, default=True,
                        help="with --send: only print what would be sent (default; --no-dry-run sends)")
    _common(review)

    check = sub.add_parser("check", help="pre-send: review commits or format-patch files before sending",
                           epilog=EPILOG)
    check.add_argument("inputs", nargs="*", metavar="RANGE|PATCH",
                       help="a git range (default: the b4 prep series, else @{upstream}..HEAD) or patch files")
    check.add_argument("--stdin", action="store_true", help="read one patch from stdin (b4 prep --check)")
    check.add_argument("--repo", metavar="PATH", default=".", help="the kernel git tree (default: .)")
    check.add_argument("--server", choices=("use", "auto", "off"),
                       help="use a running `kvm-review server` (default, or $KVM_REVIEW_SERVER), also start one "
                            "for the next checks when none runs (auto), or never (off)")
    _common(check)

    hook = sub.add_parser("install-hook", help="add kvm-review to git's sendemail-validate hook")
    hook.add_argument("--repo", metavar="PATH", default=".")
    hook.add_argument("--fail-on", choices=FAIL_ON, default="warning")
    unhook = sub.add_parser("uninstall-hook", help="remove kvm-review from git's sendemail-validate hook")
    unhook.add_argument("--repo", metavar="PATH", default=".")

    server = sub.add_parser("server", help="keep kvm-review loaded for the pre-send hooks' one-patch checks",
                            epilog="status: exit 0 running, 1 not running")
    server.add_argument("action", choices=("start", "stop", "status"))
    server.add_argument("--idle", type=_seconds, default=900.0, metavar="SECONDS",
                        help="start: exit after this long without a request (default: 900)")

    sub.add_parser("bot", help="watch lore and review new series (see: kvm-review bot --help)",
                   add_help=False).add_argument("bot_args", nargs=argparse.REMAINDER)

    where = sub.add_parser("reach", help="which ioctl reaches a KVM x86 function, and through what calls",
                           epilog=EPILOG)
    where.add_argument("functions", nargs="*", metavar="FUNCTION", help="function names (older names too)")
    where.add_argument("--stats", action="store_true", help="the index's size and what each entry point reaches")
    where.add_argument("--via", choices=("any", "result"), default="any",
                       help="result: only calls whose result the caller uses (default: any)")
    where.add_argument("--path", action="store_true", help="print the whole path")
    where.add_argument("--entries", action="store_true", help="list every entry point that reaches it")
    where.add_argument("--kernel-tree", metavar="PATH", help="index this tree instead of the shipped 6.12 index")
    where.add_argument("--index", metavar="FILE", help="read this index file")

    rules = sub.add_parser("rules", help="list, explain or test the rules")
    rules.add_argument("action", choices=("list", "explain", "test"))
    rules.add_argument("rule_id", nargs="?", metavar="ID")
    rules.add_argument("--rules", action="append", default=[], metavar="DIR")
    rules.add_argument("--disable", action="append", default=[], metavar="ID")
    rules.add_argument("--config", metavar="FILE")
    return parser


def version() -> str:
    """The version, and how many rules the built-in pack holds (loading it
    checks it: a broken installation fails here, exit 3)."""
    from reviewer import rules

    return f"kvm-review {__version__} ({len(rules.builtin()[0])} built-in rules)"


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "version", False):
        print(version())
        return EXIT_CLEAN
    if args.command == "review":
        from reviewer import commands
        return commands.review(args)
    if args.command == "rules":
        from reviewer import commands
        return commands.rules(args)
    if args.command in ("check", "install-hook", "uninstall-hook"):
        from reviewer import presend
        return presend.main(args)
    if args.command == "reach":
        from reviewer.kvm import command
        return command.main(args)
    if args.command == "server":
        from reviewer import client
        return client.main(args)
    if args.command == "bot":
        from reviewer import bot
        return bot.main(args.bot_args)
    build_parser().print_help()
    return EXIT_INPUT


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a process of its own: a running server may answer for it
        argv = sys.argv[1:]
        if argv[:1] == ["check"]:
            from reviewer import client
            try:
                status = client.forward(argv)
            except KeyboardInterrupt:
                return 130
            except BrokenPipeError:
                return EXIT_CLEAN
            if status is not None:
                return status
    parser = build_parser()
    try:
        if argv[:1] == ["bot"]:  # the bot parses its own options
            import argparse
            args = argparse.Namespace(command="bot", bot_args=argv[1:])
        else:
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or usage (2)
        return int(exc.code or 0)
    try:
        return _run(args)
    except InputError as exc:
        print(f"kvm-review: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except BrokenPack as exc:
        print(f"kvm-review: internal error: {exc} (reinstall kvm-review; please report)", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_CLEAN
    except Exception as exc:  # a bug: one line, never a traceback for the user
        print(f"kvm-review: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
              "(please report)", file=sys.stderr)
        return EXIT_INTERNAL


__all__ = ["main", "EXIT_FINDINGS"]
