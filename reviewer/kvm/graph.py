"""The call graph of KVM x86, its ioctl entry points, and the index file.

Built from a kernel tree (``arch/x86/kvm``, ``virt/kvm`` and the two
``kvm_host.h``): one node per function name (definitions of the same name
merge), one edge per caller and callee with whether the caller uses the
result. Indirect calls are over-approximated: a call through member ``m`` of
an ops table (``kvm_x86_call(m)``, ``ops->m(``) goes to every function a
designated initializer (``.m = vmx_m``) or an assignment (``x->m = f;``)
stores in that member; a function named without a call (``msr_io(...,
do_set_msr, ...)``, ``vcpu->arch.complete_userspace_io = f``) is called by
the function that names it; a table of function pointers indexed in a
function (``kvm_vmx_exit_handlers[reason](vcpu)``) calls all of its entries.

Entry points are named by what userspace does: every ``case KVM_XXX:`` arm of
the ioctl dispatchers, ``KVM_ENABLE_CAP(KVM_CAP_XXX)`` for the arms of the
enable-cap dispatchers. An arm's roots are what it calls (plus what the
dispatcher calls outside its switch).

The result is an :class:`reviewer.kvm.index.Index`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from reviewer.errors import InputError
from reviewer.kvm import cpuidtable, cscan, exits
from reviewer.kvm.index import NO_ROOT, Index, make

SCANNED = ("arch/x86/kvm", "virt/kvm", "arch/x86/include/asm/kvm_host.h", "include/linux/kvm_host.h")
# dispatcher -> how its arms' labels name the entry
DISPATCHERS = {
    "kvm_dev_ioctl": "{}",
    "kvm_vm_ioctl": "{}",
    "kvm_vcpu_ioctl": "{}",
    "kvm_arch_dev_ioctl": "{}",
    "kvm_arch_vm_ioctl": "{}",
    "kvm_arch_vcpu_ioctl": "{}",
    "kvm_vm_ioctl_enable_cap_generic": "KVM_ENABLE_CAP({})",
    "kvm_vm_ioctl_enable_cap": "KVM_ENABLE_CAP({})",
    "kvm_vcpu_ioctl_enable_cap": "KVM_ENABLE_CAP({})",
}
REF = "&"  # the label of an edge to a function named, not called


# -- building ---------------------------------------------------------------------------------

def source_files(tree: Path) -> list[str]:
    """The scanned files of ``tree``, relative, sorted."""
    found = []
    for part in SCANNED:
        path = tree / part
        if path.is_file():
            found.append(part)
        elif path.is_dir():
            found += [p.relative_to(tree).as_posix() for p in path.rglob("*") if p.suffix in (".c", ".h")]
    return sorted(found)


def kernel_version(tree: Path) -> str:
    try:
        text = (tree / "Makefile").read_text(errors="replace")[:2000]
    except OSError:
        return "unknown"
    numbers = dict(re.findall(r"^(VERSION|PATCHLEVEL)\s*=\s*(\d+)", text, re.M))
    return f"{numbers['VERSION']}.{numbers['PATCHLEVEL']}" if len(numbers) == 2 else "unknown"


class _Resolver:
    """Where a call site or a reference goes, over all scanned files."""

    def __init__(self, scans: list[cscan.FileScan]):
        self.functions = {fn.name for scan in scans for fn in scan.functions}
        self.members: dict[str, set[str]] = defaultdict(set)
        tables: dict[str, set[str]] = defaultdict(set)
        for scan in scans:
            for data in scan.data:
                if not data.members:  # an ops table is reached through its members, not as a whole
                    tables[data.name].update(data.refs)
                for member, value in data.members:
                    if value in self.functions:
                        self.members[f"{data.type or ''}.{member}"].add(value)
            for fn in scan.functions:
                for ref in fn.refs:
                    if ref.assigned_to and ref.name in self.functions:
                        self.members[f".{ref.assigned_to}"].add(ref.name)
        self.tables = {name: self._closure(name, tables) for name in tables}
        self.tables = {name: fns for name, fns in self.tables.items() if fns and name not in self.functions}
        self.by_member: dict[str, list[str]] = defaultdict(list)
        for key in self.members:
            self.by_member[key.partition(".")[2]].append(key)
        types = {key.partition(".")[0] for key in self.members} - {""}
        self.decls: dict[str, set[str]] = defaultdict(set)
        for scan in scans:
            for name, structs in scan.decls.items():
                self.decls[name].update(structs & types)

    def _closure(self, name: str, tables: dict[str, set[str]]) -> set[str]:
        seen, todo, out = {name}, [name], set()
        while todo:
            for ref in tables[todo.pop()]:
                if ref in self.functions:
                    out.add(ref)
                elif ref in tables and ref not in seen:
                    seen.add(ref)
                    todo.append(ref)
        return out

    def member(self, name: str, base: str | None = None) -> set[str]:
        """Implementations of ``T.m`` or ``.m`` (through ``base``'s declared type when known)."""
        table, _, member = name.partition(".")
        if table:
            return self.members.get(name) or self.members.get(f".{member}", set())
        keys = [f"{t}.{member}" for t in sorted(self.decls.get(base or "", ())) if f"{t}.{member}" in self.members]
        keys = keys or self.by_member.get(member, [])
        return set().union(*(self.members[key] for key in keys)) if keys else set()

    def call(self, call: cscan.Call) -> list[tuple[str, str]]:
        """(callee, label) for one call site."""
        if call.name in self.functions:
            return [(call.name, "")]
        if "." in call.name:
            label = "." + call.name.partition(".")[2]
            return [(name, label) for name in sorted(self.member(call.name, call.base))]
        return []

    def ref(self, ref: cscan.Ref) -> list[tuple[str, str]]:
        if ref.member_access or ref.assigned_to:
            return []  # stored in a member: called where that member is
        if ref.name in self.functions:
            return [(ref.name, REF)]
        return [(name, ref.name) for name in sorted(self.tables.get(ref.name, ()))]

    def targets(self, calls, refs) -> list[tuple[str, bool, str]]:
        """(callee, result used, label) for calls and references."""
        out = [(callee, call.used, label) for call in calls for callee, label in self.call(call)]
        return out + [(callee, True, label) for ref in refs for callee, label in self.ref(ref)]


def _arm_entries(scan: cscan.FileScan, fn: cscan.Function, template: str,
                 resolve: _Resolver) -> dict[str, list[tuple[str, bool]]]:
    """entry -> roots for one dispatcher definition."""
    arms = cscan.arms(scan, fn)
    inside = {call for arm in arms for call in arm.calls} | {ref for arm in arms for ref in arm.refs}
    common = resolve.targets([c for c in fn.calls if c not in inside], [r for r in fn.refs if r not in inside])
    out: dict[str, list[tuple[str, bool]]] = {}
    for arm in arms:
        targets = resolve.targets(arm.calls, arm.refs)
        if not arm.labels or any(callee in DISPATCHERS for callee, _, _ in targets):
            continue  # default: the next dispatcher; an arm handing over to a sub-dispatcher: its arms
        roots = sorted({(callee, used) for callee, used, _ in targets + common if callee != fn.name})
        for label in arm.labels:
            out.setdefault(template.format(label), []).extend(roots)
    return out


def build(tree: str | Path, files: list[str] | None = None) -> Index:
    """The index of the tree (a kernel source directory)."""
    root = Path(tree)
    paths = files if files is not None else source_files(root)
    if not paths:
        raise InputError(f"{tree}: no arch/x86/kvm or virt/kvm sources in this kernel tree")
    scans = []
    writers: set[str] = set()
    rejecters: set[str] = set()
    for path in paths:
        try:
            text = (root / path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"{root / path}: {exc.strerror}") from None
        scans.append(cscan.scan(text, path))
        lines = text.split("\n")
        writers |= cpuid_writers(scans[-1], lines)
        rejecters |= {fn.name for fn in scans[-1].functions if exits.rejects_in(lines[fn.line - 1:fn.end])}
    return assemble(kernel_version(root), scans, writers, rejecters)


def cpuid_writers(scan: cscan.FileScan, lines: list[str]) -> set[str]:
    """The functions of a file whose body writes the vCPU's CPUID table."""
    return {fn.name for fn in scan.functions if cpuidtable.writes_in(lines[fn.line - 1:fn.end])}


def assemble(kernel: str, scans: list[cscan.FileScan], writers: set[str] = frozenset(),
             rejecters: set[str] = frozenset()) -> Index:
    """The index of scanned files."""
    resolve = _Resolver(scans)
    names = sorted(resolve.functions)
    position = {name: number for number, name in enumerate(names)}
    files = [scan.path for scan in scans]
    where: dict[str, tuple[int, int]] = {}
    edges: dict[tuple[int, int], bool] = {}
    labels: dict[tuple[int, int], str] = {}
    entries: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for number, scan in enumerate(scans):
        for fn in scan.functions:
            where.setdefault(fn.name, (number, fn.line))
            caller = position[fn.name]
            for callee, used, label in resolve.targets(fn.calls, fn.refs):
                key = (caller, position[callee])
                if callee == fn.name:
                    continue
                edges[key] = edges.get(key, False) or used
                if not label or key not in labels:
                    labels[key] = label  # a direct call wins over an indirect one
            if fn.name in DISPATCHERS:
                for entry, roots in _arm_entries(scan, fn, DISPATCHERS[fn.name], resolve).items():
                    entries[entry].update((caller, position[root] * 2 + used) for root, used in roots)
                    if not roots:
                        entries[entry].add((caller, NO_ROOT))  # an arm that calls nothing still is an entry
    callees: list[list[int]] = [[] for _ in names]
    callers: list[list[int]] = [[] for _ in names]
    for (caller, callee), used in sorted(edges.items()):
        callees[caller].append(callee * 2 + used)
        callers[callee].append(caller * 2 + used)
    members = {key: sorted(position[f] for f in fns) for key, fns in sorted(resolve.members.items())}
    return make(kernel, files, names, [where[name] for name in names], callees, callers,
                {key: label for key, label in sorted(labels.items()) if label},
                {entry: sorted(roots) for entry, roots in sorted(entries.items())}, members,
                [position[name] for name in writers if name in position],
                [position[name] for name in rejecters if name in position])
