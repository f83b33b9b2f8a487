"""The conditions each line of kernel-style C sits under (reviewer/kvm/guards.py)."""

from __future__ import annotations

from reviewer.kvm.guards import guards, negated

CODE = "".join(line + "\n" for line in [  # kernel style: tabs, then spaces to align a condition
    "\tif (x2apic) {",
    "\t\tif (*id != vcpu->vcpu_id)",
    "\t\t\treturn -EINVAL;",
    "\t} else if (legacy) {",
    "\t\t*id >>= 24;",
    "\t} else {",
    "\t\tif (set)  /* a comment */",
    "\t\t\t*id >>= 24;",
    "\t\telse",
    "\t\t\t*id <<= 24;",
    "\t}",
    "\tswitch (msr) {",
    "\tcase MSR_A:",
    "\t\tif (a &&",
    "\t\t    (b || c))",
    "\t\t\treturn 1;",
    "\t\tbreak;",
    "\tcase MSR_B: {",
    "\t\tif (c) return -EINVAL;",
    "\t}",
    "\tdefault:",
    "\t\tr = -EINVAL;",
    "\t}",
    "\treturn 0;",
])


def test_guards_follow_kernel_indentation():
    lines = CODE.splitlines()
    assert list(zip([t.strip() for t in lines], guards(lines))) == [
        ("if (x2apic) {", ()),
        ("if (*id != vcpu->vcpu_id)", ("x2apic",)),
        ("return -EINVAL;", ("x2apic", "*id != vcpu->vcpu_id")),
        ("} else if (legacy) {", ("!x2apic",)),
        ("*id >>= 24;", ("!x2apic", "legacy")),
        ("} else {", ("!x2apic", "!legacy")),
        ("if (set)  /* a comment */", ("!x2apic", "!legacy")),
        ("*id >>= 24;", ("!x2apic", "!legacy", "set")),
        ("else", ("!x2apic", "!legacy", "!set")),
        ("*id <<= 24;", ("!x2apic", "!legacy", "!set")),
        ("}", ()),
        ("switch (msr) {", ()),
        ("case MSR_A:", ()),
        ("if (a &&", ("case MSR_A",)),
        ("(b || c))", ("case MSR_A",)),
        ("return 1;", ("case MSR_A", "a && (b || c)")),
        ("break;", ("case MSR_A",)),
        ("case MSR_B: {", ()),
        ("if (c) return -EINVAL;", ("case MSR_B", "c")),
        ("}", ()),
        ("default:", ()),
        ("r = -EINVAL;", ("default",)),
        ("}", ()),
        ("return 0;", ()),
    ]


def test_an_else_whose_if_is_above_the_hunk_guards_nothing_known():
    assert guards(["\t} else {", "\t\treturn -EINVAL;", "\t}"]) == [(), (), ()]


def test_negated_spells_the_other_side_as_kernel_code_does():
    assert [negated(c) for c in ("host", "!host", "a->b", "f(x, y)", "!f(x, y)", "data & mask", "!(data & mask)",
                                 "!(a) && (b)", "a == b")] == [
        "!host", "host", "!a->b", "!f(x, y)", "f(x, y)", "!(data & mask)", "data & mask", "!(!(a) && (b))",
        "!(a == b)"]
