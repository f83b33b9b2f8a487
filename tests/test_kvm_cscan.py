"""The C scanner of the call-graph index (reviewer.kvm.cscan), on small
snippets written for these tests."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reviewer.kvm import cscan, graph, reach


def calls(text: str) -> list[tuple[str, int, bool]]:
    return [(c.name, c.line, c.used) for c in cscan.calls_in(text)]


def functions(text: str) -> list[tuple[str, int, int]]:
    return [(f.name, f.line, f.end) for f in cscan.scan(text).functions]


def test_result_used_or_thrown_away():
    text = """\
	r = alpha(x);
	return beta(x);
	if (gamma(x))
		delta(x);
	if (!epsilon(x) && zeta(x) > 2)
		goto out;
	eta(theta(x), 1);
	v = iota(x) ? 1 : 2;
	(void)kappa(x);
	lambda(x)->field = 3;
	for (i = 0; i < mu(x); i++)
		nu(i);
	do xi(x); while (omicron(x));
"""
    assert calls(text) == [
        ("alpha", 1, True), ("beta", 2, True), ("gamma", 3, True), ("delta", 4, False),
        ("epsilon", 5, True), ("zeta", 5, True), ("eta", 7, False), ("theta", 7, True),
        ("iota", 8, True), ("kappa", 9, False), ("lambda", 10, True), ("mu", 11, True),
        ("nu", 12, False), ("xi", 13, False), ("omicron", 13, True)]


def test_labels_ternaries_and_statement_expressions():
    text = """\
	switch (x) {
	case 1:
		one(x);
		break;
	default:
		other(x);
	}
out:
	cleanup(x);
	y = c ? pick(x) : drop(x);
	z = ({ inner(x); 4; });
"""
    assert calls(text) == [
        ("one", 3, False), ("other", 6, False), ("cleanup", 9, False), ("pick", 10, True),
        ("drop", 10, True), ("inner", 11, False)]


def test_indirect_calls_name_the_ops_member():
    text = """\
	r = kvm_x86_call(set_msr)(vcpu, info);
	static_call(kvm_x86_get_cpl)(vcpu);
	kvm_pmu_call(refresh)(vcpu);
	static_call_cond(kvm_x86_pmu_reset)(vcpu);
	if (kvm_x86_ops.nested_ops->set_state(vcpu, a, b))
		return 1;
	ret = ops->probe(dev);
	vcpu->arch.complete_userspace_io(vcpu);
	kvm_x86_ops->cpuid_update(vcpu);
	handlers[reason](vcpu);
	int (*cui)(struct kvm_vcpu *) = vcpu->arch.complete_userspace_io;
	r = cui(vcpu);
"""
    found = cscan.calls_in(text)
    assert [(c.name, c.used, c.base) for c in found] == [
        ("kvm_x86_ops.set_msr", True, None), ("kvm_x86_ops.get_cpl", False, None),
        ("kvm_pmu_ops.refresh", False, None), ("kvm_pmu_ops.reset", False, None),
        (".set_state", True, "nested_ops"), (".probe", True, "ops"),
        (".complete_userspace_io", False, "arch"), ("kvm_x86_ops.cpuid_update", False, None),
        (".complete_userspace_io", True, "arch")]


def test_comments_strings_and_macros_hide_nothing_else():
    text = """\
	/* not_a_call(x); */
	pr_info("fake_call(%d)\\n", real_one(x)); // commented_out(y);
#define WRAP(x) hidden_in_macro(x)
	c = '(';
	after(c);
"""
    assert calls(text) == [("pr_info", 2, False), ("real_one", 2, True), ("after", 5, False)]


def test_function_spans_with_kr_breaks_attributes_and_prototypes():
    text = """\
static int proto(int a);

static int
split_name(struct kvm_vcpu *vcpu,
\t   u32 index)
{
	return proto(index);
}

int __attribute__((weak)) weakling(void)
{
	return 0;
}

static void locked(struct kvm *kvm)
	__must_hold(&kvm->lock)
{
	struct foo bar = { .x = 1 };
}

static const struct some_ops table = {
	.run = split_name,
};
"""
    assert functions(text) == [("split_name", 4, 8), ("weakling", 10, 13), ("locked", 15, 19)]
    data = cscan.scan(text).data
    assert [(d.name, d.type, d.members) for d in data] == [("table", "some_ops", (("run", "split_name"),))]


def test_ifdef_branches():
    text = """\
#ifdef CONFIG_A
static int stub(void)
{
	return real_a();
}
#else
static int stub(void)
{
	return fallback();
}
#endif

static int both(int x)
{
#ifdef CONFIG_B
	if (check_b(x)) {
#else
	if (check_other(x)) {
#endif
		act(x);
	}
	return 0;
}

#if 0
static int dead(void)
{
	return never();
}
#endif
"""
    scanned = cscan.scan(text)
    assert [(f.name, f.line, f.end) for f in scanned.functions] == [
        ("stub", 2, 5), ("stub", 7, 10), ("both", 13, 23)]
    assert [c.name for f in scanned.functions for c in f.calls] == [
        "real_a", "fallback", "check_b", "check_other", "act"]


def test_pasted_names_and_references():
    text = """\
#define FNAME(name) paging##64_##name
#define FNAME(name) ept_##name

static int FNAME(walk)(struct kvm_vcpu *vcpu)
{
	return FNAME(step)(vcpu) + helper(vcpu, FNAME(cb));
}

static int (*handlers[])(struct kvm_vcpu *vcpu) = {
	[0] = on_zero,
	[1] = on_one,
};

static int user(struct kvm_vcpu *vcpu, int kvm_cpuid)
{
	vcpu->arch.done = finish;
	msr_io(vcpu, do_set_msr);
	return handlers[kvm_cpuid](vcpu);
}
"""
    scanned = cscan.scan(text)
    assert [(f.name, f.macro, [c.name for c in f.calls], [r.name for r in f.refs]) for f in scanned.functions[:2]] == [
        ("paging64_walk", "FNAME", ["paging64_step", "helper"], ["paging64_cb"]),
        ("ept_walk", "FNAME", ["ept_step", "helper"], ["ept_cb"])]  # vcpu: a parameter
    user = scanned.functions[2]
    assert [(r.name, r.assigned_to) for r in user.refs] == [
        ("finish", "done"), ("do_set_msr", None), ("handlers", None)]  # parameters shadow vcpu, kvm_cpuid
    assert [(d.name, d.refs) for d in scanned.data] == [("handlers", ("on_zero", "on_one"))]


def test_switch_arms():
    text = """\
long dispatch(unsigned int ioctl)
{
	prepare();
	switch (ioctl) {
	case FIRST:
	case SECOND: {
		r = handle_pair();
		switch (sub) {
		case INNER:
			inner();
		}
		break;
	}
	case THIRD:
		r = msr_io(do_set_msr);
		break;
	default:
		r = fallback();
	}
	return r;
}
"""
    scanned = cscan.scan(text)
    arms = cscan.arms(scanned, scanned.functions[0])
    assert [(a.labels, [c.name for c in a.calls], [r.name for r in a.refs]) for a in arms] == [
        (("FIRST", "SECOND"), ["handle_pair", "inner"], ["r", "sub"]),
        (("THIRD",), ["msr_io"], ["r", "do_set_msr"]),
        ((), ["fallback"], ["r"])]


def test_reach_calls_in_on_diff_lines():
    assert reach.calls_in("\tif (kvm_check_cpuid(vcpu, e2, nent))\n\t\tkvm_update_cpuid(vcpu);\n") == [
        ("kvm_check_cpuid", True), ("kvm_update_cpuid", False)]


def test_reach_calls_in_on_a_hunk():
    hunk = """\
@@ -10,6 +10,9 @@ static int kvm_set_cpuid(struct kvm_vcpu *vcpu)
 \tr = kvm_check_cpuid(vcpu, e2, nent);
-\tif (r)
+\tif (r || new_check(vcpu))
 \t\treturn r;
+\tapply_quirks(vcpu);
"""
    assert reach.calls_in(hunk) == [
        ("kvm_check_cpuid", True), ("new_check", True), ("apply_quirks", False)]


C_PIECES = ["{", "}", "(", ")", "[", "]", ";", ",", "=", "*", "->", ".", ":", "?", "!", "&", "\n", "\t", " ",
            "#if 0\n", "#ifdef X\n", "#else\n", "#elif Y\n", "#endif\n", "#define FNAME(n) a##n\n", "\\\n",
            "/*", "*/", "//", '"', "'", "static", "int", "struct", "switch", "case", "default", "return", "if",
            "void", "foo", "bar", "FNAME", "kvm_x86_call", "static_call", "ops", "0", "__attr", "kvm_arch_vcpu_ioctl",
            "kvm_vm_ioctl_enable_cap", "KVM_X", "ioctl", ".m", " = ", "(*p)"]


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(C_PIECES), max_size=80).map("".join))
def test_scanner_takes_any_text(text):
    """A user's tree can hold anything: the scanner answers, it never raises."""
    scanned = cscan.scan(text)
    for function in scanned.functions:
        assert 1 <= function.line <= function.end <= text.count("\n") + 1
        cscan.arms(scanned, function)
    reach.calls_in(text)
    model = reach.Model(graph.assemble("x", [scanned]))
    for name in model.index.names:
        path = model.path(name)
        assert (path is None) == (model.entries(name) == [])
