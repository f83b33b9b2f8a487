"""The named predicates on small diffs of the shapes real patches have
(tests/diffs/, written for these tests)."""

from __future__ import annotations

from pathlib import Path

from reviewer import analysis, rules
from reviewer.ruletest import example_series

RULES = rules.load()
DIFFS = Path(__file__).with_name("diffs")


def diff(name: str) -> str:
    return (DIFFS / name).read_text(encoding="utf-8")


def found(text: str) -> list[tuple[str, int | None, str | None]]:
    return [(f.rule, f.line, f.function) for f in analysis.analyze(example_series(text), RULES) if f.file]


def test_a_check_moved_into_the_ioctl_is_not_a_new_rejection():
    moved = diff("moved-check.diff")
    assert found(moved) == []
    # the same addition without the removal is a new rejection
    head, rest = moved.split("@@ -4660", 1)
    alone = head + "@@ -5029" + rest.split("@@ -5029", 1)[1]
    assert found(alone) == [("userspace-reject-added", 5029, "kvm_arch_vm_ioctl")]


def test_not_host_initiated_on_one_side_of_an_or_still_fails_userspace():
    either = diff("host-or.diff")
    assert found(either) == [("userspace-reject-msr", 3807, "kvm_set_msr_common")]
    assert found(either.replace(" ||\n", " &&\n")) == []  # guest-only: a #GP, not a userspace error


def test_a_widened_msr_write_condition():
    assert found(diff("hv-widened.diff")) == [("userspace-reject-msr-condition", 671, "stimer_set_config")]


def test_a_blanket_rejection_narrowed_to_a_new_helper():
    assert found(diff("narrowed-to-helper.diff")) == [
        ("userspace-reject-relaxed", 5233, "kvm_arch_vcpu_ioctl")]
