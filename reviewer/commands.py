"""What each subcommand does, wiring the pipeline steps together."""

from __future__ import annotations

import argparse
import functools
import sys
import textwrap

from reviewer import config as configmod
from reviewer import pipeline, render
from reviewer import rules as rulesmod
from reviewer.analysis import worst
from reviewer.errors import EXIT_CLEAN, EXIT_FINDINGS, InputError
from reviewer.findings import severity_rank


def _ruleset(args: argparse.Namespace, cfg: configmod.Config) -> rulesmod.RuleSet:
    dirs = list(cfg.get("rules", [])) + args.rules
    disabled = list(cfg.get("disable", [])) + args.disable
    return rulesmod.load(dirs, disabled)


def exit_status(findings, fail_on: str) -> int:
    top = worst(findings)
    if fail_on == "never" or top is None:
        return EXIT_CLEAN
    return EXIT_FINDINGS if severity_rank(top) >= severity_rank(fail_on) else EXIT_CLEAN


def write(text: str, output: str | None) -> None:
    if output:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise InputError(f"{output}: {exc.strerror}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _replies(review: pipeline.Review, args, cfg, ruleset: rulesmod.RuleSet):
    from reviewer import mail

    return mail.replies(review, mail.identity(cfg), args.templates or cfg.get("templates"),
                        args.reply_when_clean, rules_by_id={r.id: r for r in ruleset.rules})


def format_review(review: pipeline.Review, fmt: str, fail_on: str, replies, colour: bool = False) -> str:
    if fmt == "json":
        return render.as_json(review)
    if fmt == "checkpatch":
        return render.checkpatch(review, "info" if fail_on == "info" else "warning")
    if fmt == "b4-check":
        return render.b4_check(review, fail_on if fail_on != "never" else "error")
    if fmt == "markdown":
        return render.markdown(review)
    if fmt == "email":
        from reviewer import mail
        return mail.as_mbox(replies())
    return render.text(review, colour=colour)


def run_review(args, cfg, msgs) -> int:
    ruleset = _ruleset(args, cfg)
    model = pipeline.load_series(msgs, getattr(args, "revision", None))
    tree = args.kernel_tree or cfg.get("kernel_tree")
    if tree:
        from reviewer.kvm import tree as kerneltree
        kerneltree.apply(model, tree)
    review = pipeline.review(model, ruleset)
    for rule_id, seconds in review.slow_rules:
        print(f"kvm-review: warning: rule {rule_id} is slow ({seconds:.1f} s on this series)", file=sys.stderr)
    fail_on = args.fail_on or cfg.get("fail_on", "warning")
    # built once, and only if the format or --send needs them
    replies = functools.cache(lambda: _replies(review, args, cfg, ruleset))

    colour = sys.stdout.isatty() and not args.output
    text = format_review(review, args.format or "text", fail_on, replies, colour)
    write(text, args.output)
    if getattr(args, "send", False):
        from reviewer import deliver
        deliver.send(replies(), deliver.smtp_settings(cfg), dry_run=args.dry_run)
    return exit_status(review.findings, fail_on)


def review(args: argparse.Namespace) -> int:
    cfg = configmod.load(args.config)
    msgs = pipeline.messages_for(args.inputs, args.repo, args.lore, args.no_cache)
    return run_review(args, cfg, msgs)


def _explain(rule: rulesmod.Rule) -> str:
    def block(title: str, body: str) -> list[str]:
        return [title, *("    " + line for line in body.strip("\n").splitlines()), ""]

    out = [f"{rule.id}: {rule.title}", "",
           f"category: {rule.category}    severity: {rule.severity}    kind: {rule.kind}"
           f"    source: {rule.source}", ""]
    out += block("What it does:", textwrap.fill(" ".join(rule.message.split()), 72))
    out += block("Why it matters:", textwrap.fill(" ".join(rule.why.split()), 72))
    out += block("References:", "\n".join(rule.references))
    out += block("Example that fires:", rule.fires)
    out += block("Example that does not fire:", rule.passes)
    return "\n".join(out)


def rules(args: argparse.Namespace) -> int:
    cfg = configmod.load(args.config)
    ruleset = _ruleset(args, cfg)
    if args.action == "list":
        for rule in ruleset.rules:
            print(f"{rule.id:32} {rule.severity:8} {rule.category:17} {rule.title}")
        return EXIT_CLEAN
    if args.action == "explain":
        if not args.rule_id:
            raise InputError("rules explain needs a rule ID (see: kvm-review rules list)")
        print(_explain(ruleset.get(args.rule_id)))
        return EXIT_CLEAN
    from reviewer import ruletest
    failures = ruletest.run(ruleset)
    for rule in ruleset.rules:
        bad = [msg for rid, msg in failures if rid == rule.id]
        print(f"{'FAIL' if bad else 'ok  '} {rule.id}" + "".join(f"\n     {m}" for m in bad))
    print(f"{len(ruleset.rules) - len({r for r, _ in failures})} passed, "
          f"{len({r for r, _ in failures})} failed")
    return EXIT_FINDINGS if failures else EXIT_CLEAN
