"""What userspace reaches in KVM x86: entry points, paths, and the names
older kernels used.

``load()`` reads the shipped index (lazily, once) or builds one from a
user's tree; ``Model.path(func)`` is the shortest path from an entry point
(``["KVM_SET_MSRS", "kvm_arch_vcpu_ioctl", "do_set_msr", ..., func]``),
``via="result"`` keeps only the calls whose result the caller uses (an error
that reaches the ioctl's return). ``Model.with_calls()`` adds the calls a
patch makes.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reviewer.errors import InputError
from reviewer.kvm.index import NO_ROOT, VIA, Index, closure, closures, dumps, loads

SHIPPED = "index-6.12.txt"
_ARM = re.compile(r"^\t(?:case\s+(\w+)|default)\s*:")

# names older kernels used -> the 6.12 function (or ops member) that does their job
ALIASES = {
    "kvm_update_cpuid": "kvm_vcpu_after_set_cpuid",  # before 5.9 (then split off kvm_update_cpuid_runtime)
    "kvm_x86_ops.cpuid_update": "kvm_x86_ops.vcpu_after_set_cpuid",  # before 5.9
    ".cpuid_update": "kvm_x86_ops.vcpu_after_set_cpuid",
    "svm_cpuid_update": "svm_vcpu_after_set_cpuid",
    "vmx_cpuid_update": "vmx_vcpu_after_set_cpuid",
    "kvm_x86_ops.set_nested_state": "kvm_x86_nested_ops.set_state",  # before 5.9 nested_ops
    ".set_nested_state": "kvm_x86_nested_ops.set_state",
    "kvm_x86_ops.get_nested_state": "kvm_x86_nested_ops.get_state",
    ".get_nested_state": "kvm_x86_nested_ops.get_state",
    "kvm_x86_ops.mem_enc_op": "kvm_x86_ops.mem_enc_ioctl",  # before 6.x
    ".mem_enc_op": "kvm_x86_ops.mem_enc_ioctl",
    "svm_mem_enc_op": "sev_mem_enc_ioctl",
    "kvm_find_cpuid_entry2": "cpuid_entry2_find",  # the later name
    "kvm_set_apic_base": "kvm_apic_set_base",  # x86.c before its move to lapic.c
    "kvm_lapic_set_base": "__kvm_apic_set_base",
    "__set_sregs2": "kvm_vcpu_ioctl_x86_set_sregs2",
    "vmx_compute_secondary_exec_control": "vmx_secondary_exec_control",  # 5.x
    "kvm_apply_cpuid_pv_features_quirk": "kvm_update_pv_runtime",  # trees after 6.12
    "kvm_x86_vcpu_pre_run": "kvm_arch_vcpu_ioctl_run",  # split out of it after 6.12
    "kvm_valid_sregs": "kvm_is_valid_sregs",  # 5.x
    "kvm_valid_cr4": "kvm_is_valid_cr4",
    "vmx_create_vcpu": "vmx_vcpu_create",  # before 5.x's vcpu_create rename
    "svm_create_vcpu": "svm_vcpu_create",
    "vmx_vcpu_setup": "init_vmcs",
    "kvm_get_msr_feature": "kvm_get_feature_msr",  # before 6.10
    "vmx_feature_control_msr_valid": "is_vmx_feature_control_msr_valid",
    "vcpu_get_supported_xcr0": "cpuid_get_supported_xcr0",  # 6.2 - 6.5
    "svm_vm_copy_asid_from": "sev_vm_copy_enc_context_from",  # 5.14 - 5.15
    "svm_vm_migrate_from": "sev_vm_move_enc_context_from",
}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kvm-review"


@dataclass(frozen=True)
class Model:
    """Reachability queries over an index, plus the calls a patch adds."""

    index: Index
    extra_callees: dict[str, tuple[tuple[str, bool], ...]] = field(default_factory=dict)
    extra_callers: dict[str, tuple[tuple[str, bool], ...]] = field(default_factory=dict)
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    # -- names ------------------------------------------------------------------------------
    def _canonical(self, func: str) -> str:
        """The graph's name for ``func`` (an older name through the alias table)."""
        if func in self.index.position or func in self.extra_callers or func in self.extra_callees:
            return func
        return ALIASES.get(func, func)

    def known(self, func: str) -> bool:
        name = self._canonical(func)
        return name in self.index.position or name in self.extra_callers or name in self.extra_callees

    def _implementations(self, name: str) -> list[str]:
        """``T.m`` / ``.m`` -> the functions stored in that member; a function name -> itself."""
        name = ALIASES.get(name, name) if name not in self.index.position else name
        if "." not in name:
            return [name]
        table, _, member = name.partition(".")
        keys = [name] if table and name in self.index.members else \
            [k for k in self.index.members if k.partition(".")[2] == member]
        return sorted({self.index.names[i] for key in keys for i in self.index.members[key]})

    def _vendor(self, name: str) -> str | None:
        vendors = self.cache.setdefault("vendor", {})
        if name not in vendors:
            number = self.index.position.get(name)
            path = self.index.files[self.index.row(number).file] if number is not None else ""
            vendors[name] = next((vendor for vendor in ("vmx", "svm") if f"/{vendor}/" in path), None)
        return vendors[name]

    # -- edges ------------------------------------------------------------------------------
    def _callers(self, name: str) -> list[tuple[str, bool]]:
        extra = self.extra_callers.get(name)
        return self.index.callers_of(name) + list(extra) if extra else self.index.callers_of(name)

    def _callees(self, name: str) -> list[tuple[str, bool]]:
        """Sorted (the index's own rows are)."""
        extra = self.extra_callees.get(name)
        return sorted(self.index.callees_of(name) + list(extra)) if extra else self.index.callees_of(name)

    def dispatches(self, func: str) -> bool:
        """Is ``func`` (or the function an older name stands for) an ioctl dispatcher?"""
        return self._canonical(func) in self.index.dispatchers

    def callers(self, func: str) -> list[str]:
        return sorted({name for name, _ in self._callers(self._canonical(func))})

    def callees(self, func: str) -> list[str]:
        return sorted({name for name, _ in self._callees(self._canonical(func))})

    def writes_cpuid(self, func: str) -> bool:
        """Does ``func`` write the vCPU's CPUID table (an entry from
        kvm_find_cpuid_entry*() or vcpu->arch.cpuid_entries)?"""
        if "writers" not in self.cache:
            self.cache["writers"] = {self.index.names[n] for n in self.index.cpuid_writers}
        return self._canonical(func) in self.cache["writers"]

    def can_reject(self, func: str) -> bool | None:
        """Can ``func`` (a name, an older name, or an ops member ``T.m``/``.m``)
        fail its caller on bad input: an exit of its own that refuses
        (:mod:`reviewer.kvm.exits`), or the result of one that can, used?
        None when the index does not know it."""
        if "rejecting" not in self.cache:
            found = {self.index.names[n] for n in self.index.rejecters}
            todo = list(found)
            while todo:
                for caller, used in self.index.callers_of(todo.pop()):
                    if used and caller not in found:
                        found.add(caller)
                        todo.append(caller)
            self.cache["rejecting"] = found
        names = [self._canonical(name) for name in self._implementations(func)]
        known = [name for name in names if name in self.index.position]
        if not known:
            return None
        return any(name in self.cache["rejecting"] for name in known)

    def label(self, caller: str, callee: str) -> str:
        """How ``caller`` reaches ``callee``: "" a direct call, ".m" through an ops member,
        "&" named as a value, else the table of function pointers it indexes."""
        return self.index.label(caller, callee)

    def with_calls(self, edges: Iterable[tuple[str, str, bool]]) -> Model:
        """This model plus the calls ``(caller, callee, result used)`` a patch adds; callees
        may be ops members (``kvm_x86_ops.set_msr``, ``.set_msr``) or older names."""
        callees = {k: list(v) for k, v in self.extra_callees.items()}
        callers = {k: list(v) for k, v in self.extra_callers.items()}
        for caller, callee, used in edges:
            source = self._canonical(caller)
            for target in self._implementations(callee):
                if target != source:
                    callees.setdefault(source, []).append((target, used))
                    callers.setdefault(target, []).append((source, used))
        return Model(self.index, {k: tuple(v) for k, v in callees.items()},
                     {k: tuple(v) for k, v in callers.items()})

    # -- reachability ---------------------------------------------------------------------------
    def _roots(self) -> dict[str, list[tuple[str, str, bool]]]:
        """root function -> [(entry, dispatcher, used)]."""
        if "roots" not in self.cache:
            roots: dict[str, list[tuple[str, str, bool]]] = {}
            names = self.index.names
            for entry, pairs in self.index.entries.items():
                for dispatcher, code in pairs:
                    if code != NO_ROOT:
                        roots.setdefault(names[code >> 1], []).append((entry, names[dispatcher], bool(code & 1)))
            self.cache["roots"] = roots
        return self.cache["roots"]

    def _dispatched(self, name: str) -> list[str]:
        """Entries whose dispatcher is ``name``."""
        if "dispatched" not in self.cache:
            by: dict[int, set[str]] = {}
            for entry, pairs in self.index.entries.items():
                for dispatcher, _ in pairs:
                    by.setdefault(dispatcher, set()).add(entry)
            self.cache["dispatched"] = {number: sorted(found) for number, found in by.items()}
        return self.cache["dispatched"].get(self.index.position.get(name, -1), [])

    def _walk(self, func: str, via: str, parent: dict[str, str | None]) -> Iterator[tuple[int, str]]:
        """Breadth-first over callers from ``func``: yields (level, node); fills ``parent``."""
        if via not in VIA:
            raise ValueError(f"via must be one of {VIA}, not {via!r}")
        parent[func] = None
        prefer = self._vendor(func) or "vmx"

        def order(name: str) -> tuple[bool, str]:  # paths stay in the function's vendor, else VMX
            return self._vendor(name) not in (None, prefer), name

        level = [func]
        depth = 0
        while level:
            for node in level:
                yield depth, node
            following = []
            for node in level:
                if node in self.index.dispatchers:
                    continue  # reached only through its arms
                for caller, used in sorted(self._callers(node), key=lambda pair: order(pair[0])):
                    if caller not in parent and (used or via == "any"):
                        parent[caller] = node
                        following.append(caller)
            level = sorted(following, key=order)
            depth += 1

    def nearest(self, func: str, via: str, wanted: Callable[[str], bool]) -> set[str]:
        """The ``wanted`` entries with the shortest paths to ``func``: the ioctl it serves,
        not one the over-approximated graph finds the long way round."""
        name = self._canonical(func)
        found = {e for e in self._dispatched(name) if wanted(e)} if name in self.index.dispatchers else set()
        if found:
            return found
        roots = self._roots()
        reached_at = None
        for depth, node in self._walk(name, via, {}):
            if reached_at is not None and depth > reached_at:
                break
            for start, _, used in roots.get(node, ()):
                if (used or via == "any") and wanted(start):
                    found.add(start)
                    reached_at = depth
        return found

    def path(self, func: str, via: str = "any", entry: str | None = None) -> list[str] | None:
        """The shortest path from an entry point (``entry`` if given) to ``func``: entry name
        first; None if not reached."""
        name = self._canonical(func)
        dispatched = [e for e in self._dispatched(name) if entry in (None, e)]
        if name in self.index.dispatchers and dispatched:
            return [dispatched[0], func]
        roots = self._roots()
        best: tuple[int, str, str, str] | None = None
        parent: dict[str, str | None] = {}
        for depth, node in self._walk(name, via, parent):
            if best is not None and depth > best[0]:
                break
            for start, dispatcher, used in roots.get(node, ()):
                if entry not in (None, start) or not (used or via == "any"):
                    continue
                if best is None or (start, node) < (best[1], best[3]):
                    best = (depth, start, dispatcher, node)
        if best is None:
            return None
        _, start, dispatcher, node = best
        chain = [node]
        while parent[chain[-1]] is not None:
            chain.append(parent[chain[-1]])
        chain[-1] = func
        return [start, dispatcher, *chain]

    def path_from(self, func: str, via: str, entry: str) -> list[str] | None:
        """A shortest path from ``entry`` to ``func`` (entry name first), read off one
        breadth-first walk from the entry that serves every function it reaches: the
        cheap way to name paths for many functions from a few entries."""
        key = ("tree", entry, via)
        if key not in self.cache:
            parent: dict[str, str | None] = {}
            level = []
            names = self.index.names
            for dispatcher, code in sorted(self.index.entries.get(entry, []), key=lambda p: (names[p[0]], p[1])):
                root = names[code >> 1] if code != NO_ROOT else None
                parent.setdefault(names[dispatcher], None)
                if root is not None and root not in parent and (code & 1 or via == "any"):
                    parent[root] = names[dispatcher]
                    level.append(root)
            while level:
                following = []
                for node in level:
                    if node in self.index.dispatchers:
                        continue
                    for callee, used in self._callees(node):
                        if callee not in parent and (used or via == "any"):
                            parent[callee] = node
                            following.append(callee)
                level = following
            self.cache[key] = parent
        parent = self.cache[key]
        name = self._canonical(func)
        if name not in parent:
            return None
        chain = [name]
        while parent[chain[-1]] is not None:
            chain.append(parent[chain[-1]])
        chain.reverse()
        chain[-1] = func
        return [entry, *chain]

    def entries(self, func: str, via: str = "any") -> list[str]:
        """Every entry point that reaches ``func``, sorted."""
        if via not in VIA:
            raise ValueError(f"via must be one of {VIA}, not {via!r}")
        key = ("entries", self._canonical(func), via)
        if key not in self.cache:
            self.cache[key] = sorted(self._entries(key[1], via))
        return self.cache[key]

    def _entries(self, name: str, via: str) -> set[str]:
        """The table's answer for ``name`` and for every function that reaches it through
        the calls the patch adds (their callers, transitively)."""
        found = self.index.reaching(name, via) | set(self._dispatched(name))
        below, entries, onward = self._upstream(via)
        reach = pending = below.get(name, 0)  # the patch's callees that reach ``name``, as bits
        while pending:
            bit = pending & -pending
            pending ^= bit
            number = bit.bit_length() - 1
            found |= entries[number]
            more = onward[number] & ~reach
            reach |= more
            pending |= more
        return found

    def _upstream(self, via: str) -> tuple[dict[str, int], list[set[str]], list[int]]:
        """For the patch's calls that bring their callee an entry it lacks (see :meth:`_widens`),
        the callees numbered: (function -> a bit mask of the callees that reach it, by number
        the entries that reach the callee's new callers, by number a mask of the callees that
        reach those callers)."""
        key = ("upstream", via)
        if key not in self.cache:
            wider = {}
            for target, callers in self.extra_callers.items():
                chosen = {caller for caller, used in callers if self._widens(caller, target, used, via)}
                if chosen:
                    wider[target] = chosen
            below = closures(list(wider), self._callees, via, self.index.dispatchers)
            entries = [set().union(*(self.index.reaching(c, via) | set(self._dispatched(c)) for c in callers))
                       for callers in wider.values()]
            onward = [functools.reduce(operator.or_, (below.get(c, 0) for c in callers), 0)
                      for callers in wider.values()]
            self.cache[key] = (below, entries, onward)
        return self.cache[key]

    def _widens(self, caller: str, target: str, used: bool, via: str) -> bool:
        """Can the patch's call ``caller -> target`` bring ``target`` an entry it lacks? Not
        when the tree already reaches the caller only from entries that reach the target."""
        if not (used or via == "any"):
            return False
        position = self.index.position
        if caller not in position or target not in position:
            return True
        known = self.index.reaching(target, via) | set(self._dispatched(target))
        return not (self.index.reaching(caller, via) | set(self._dispatched(caller))) <= known

    def _forward(self, name: str, via: str) -> set[str]:
        key = ("forward", name, via)
        if key not in self.cache:
            self.cache[key] = closure([name], self._callees, via, self.index.dispatchers)
        return self.cache[key]

    def case_entry(self, function: str, lines_before: list[str]) -> str | None:
        """The entry point a line inside a dispatcher belongs to: the nearest ``case X:`` above it at
        the switch's own depth (one tab, kernel style). ``lines_before``: the function's lines up
        to that line, nearest last (a hunk's context will do when it shows the label)."""
        dispatched = self._dispatched(self._canonical(function))
        for line in reversed(lines_before):
            match = _ARM.match(line)
            if match:
                label = match.group(1)
                return next((e for e in dispatched if label and (e == label or e.endswith(f"({label})"))), None)
        return None

    def below(self, func: str, via: str = "any") -> set[str]:
        """Every function ``func`` reaches, itself included (``kvm_update_cpuid_runtime``'s
        runtime updates, say)."""
        return set(self._forward(self._canonical(func), via))

    def reached(self, entry: str, via: str = "any") -> set[str]:
        """Every function ``entry`` reaches (its dispatchers included)."""
        return self.index.reached(entry, via, self._callees)


def describe(path: list[str]) -> str:
    """``reached from KVM_SET_MSRS via kvm_set_msr_common -> intel_pmu_set_msr`` (the
    dispatcher left out; long paths keep their first and last functions)."""
    entry, calls = path[0], path[2:] if len(path) > 2 else path[1:]
    if len(calls) > 6:
        calls = [*calls[:2], "...", *calls[-3:]]
    return f"reached from {entry} via {' -> '.join(calls)}"


def calls_in(text: str) -> list[tuple[str, bool]]:
    """The calls in a C snippet (a body, or diff lines: their ``+``/``-``/`` `` column and
    ``@@`` lines are dropped): (callee, result used). Calls through ops members are named
    ``kvm_x86_ops.m`` / ``.m``."""
    from reviewer.kvm import cscan  # the scanner only when a rule asks

    lines = text.split("\n")
    code = [line for line in lines if line]
    if code and any(line[0] in "+-" for line in code) and all(line[0] in "+- @" for line in code):
        text = "\n".join("" if line.startswith("@@") else line[1:] for line in lines)
    return [(call.name, call.used) for call in cscan.calls_in(text)]


# -- loading ----------------------------------------------------------------------------------

_loaded: dict[str, Model] = {}


def read_index(path: str | Path) -> Model:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the kvm-review index ({exc.__class__.__name__})") from None
    return Model(loads(text, str(path)))


def _fingerprint(tree: Path, files: list[str]) -> str:
    digest = hashlib.sha256(str(tree.resolve()).encode())
    for name in files:
        stat = (tree / name).stat()
        digest.update(f"{name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _from_tree(tree: str) -> Model:
    """Build the index of a user's tree, cached under ~/.cache/kvm-review by file sizes and times."""
    from reviewer.kvm import graph  # the scanner only for a user's tree

    root = Path(tree)
    if not root.is_dir():
        raise InputError(f"{tree}: --kernel-tree needs a directory")
    files = graph.source_files(root)
    cache = _cache_dir() / f"index-{_fingerprint(root, files)}.txt"
    if cache.is_file():
        try:
            return read_index(cache)
        except InputError:
            pass  # a damaged cache entry: rebuilt below
    index = graph.build(root, files)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(dumps(index), encoding="utf-8")
    except OSError:
        pass  # no cache: still correct, only slower next time
    return Model(index)


def load(kernel_tree: str | None = None, index_file: str | None = None) -> Model:
    """The shipped index, an index file, or the index of ``kernel_tree`` (built once per process)."""
    key = f"tree:{kernel_tree}" if kernel_tree else f"file:{index_file or SHIPPED}"
    if key not in _loaded:
        if kernel_tree:
            _loaded[key] = _from_tree(kernel_tree)
        elif index_file:
            _loaded[key] = read_index(index_file)
        else:
            _loaded[key] = read_index(Path(__file__).resolve().parent / "data" / SHIPPED)
    return _loaded[key]
