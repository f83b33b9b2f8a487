"""The index file of the KVM x86 call graph: what :mod:`reviewer.kvm.graph`
writes and :mod:`reviewer.kvm.reach` reads.

One header line (magic, format version, kernel version, counts, sha256 of
the rest), then JSON, one function a line. Reading it needs no C scanner.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from reviewer.errors import InputError

MAGIC = "kvm-review-index"
FORMAT = 3  # 2: the functions that write the vCPU's CPUID table; 3: those whose own body refuses input
VIA = ("any", "result")
NO_ROOT = -1  # the root code of an arm that calls nothing


@dataclass(frozen=True)
class Row:
    """One function: where it is defined first, its edges coded ``other * 2 + used``, and the
    numbers of the entry sets that reach it (through any call, through used results). Names are
    numbered in sorted order and edges kept sorted, so a row lists its callees by name."""

    file: int
    line: int
    callees: list[int]
    callers: list[int]
    reach: tuple[int, int]

    def encode(self, name: str) -> str:
        return "\t".join((name, str(self.file), str(self.line), " ".join(map(str, self.callees)),
                          " ".join(map(str, self.callers)), f"{self.reach[0]} {self.reach[1]}"))


def _decode(text: str) -> Row:
    _, file, line, callees, callers, reach = text.split("\t")
    first, second = reach.split()
    return Row(int(file), int(line), [int(c) for c in callees.split()], [int(c) for c in callers.split()],
               (int(first), int(second)))


@dataclass
class Index:
    """The graph as the model reads it. Rows stay text until a query needs them: reading the
    file must stay cheap for a review that asks about a few functions."""

    kernel: str
    files: list[str]
    names: list[str]
    rows: list[str]  # Row.encode(name), one per name
    label_rows: list[str]  # "caller callee label": how a call that is not a plain call goes
    entries: dict[str, list[tuple[int, int]]]  # entry -> [(dispatcher, root * 2 + used or NO_ROOT)]
    members: dict[str, list[int]]  # "kvm_x86_ops.set_msr" / ".set_msr" -> implementations
    entry_sets: list[list[int]]  # sets of entry numbers (in ``entries`` order), named by Row.reach
    cpuid_writers: list[int] = field(default_factory=list)  # functions writing the vCPU's CPUID table
    rejecters: list[int] = field(default_factory=list)  # functions with an exit that refuses input (kvm.exits)
    position: dict[str, int] = field(default_factory=dict, repr=False)
    dispatchers: frozenset[str] = field(default=frozenset(), repr=False)
    parsed: dict[int, Row] = field(default_factory=dict, repr=False)
    label_map: dict[tuple[str, str], str] | None = field(default=None, repr=False)
    edges: dict[tuple[str, bool], list[tuple[str, bool]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.position = {name: number for number, name in enumerate(self.names)}
        self.dispatchers = frozenset(self.names[d] for pairs in self.entries.values() for d, _ in pairs)

    def row(self, number: int) -> Row:
        if number not in self.parsed:
            try:
                self.parsed[number] = _decode(self.rows[number])
            except ValueError:
                raise InputError(f"kvm-review index: the row of {self.names[number]} is unreadable") from None
        return self.parsed[number]

    @property
    def edge_count(self) -> int:
        return sum(len(self.row(number).callees) for number in range(len(self.names)))

    def label(self, caller: str, callee: str) -> str:
        """"" for a plain call, ".m" through an ops member, "&" named as a value, else the
        table of function pointers indexed."""
        if self.label_map is None:
            self.label_map = {(a, b): label for a, b, label in (row.split(" ") for row in self.label_rows)}
        return self.label_map.get((str(self.position.get(caller, -1)), str(self.position.get(callee, -1))), "")

    def _edges(self, name: str, outgoing: bool) -> list[tuple[str, bool]]:
        key = (name, outgoing)
        if key not in self.edges:
            number = self.position.get(name)
            row = self.row(number) if number is not None else None
            self.edges[key] = [] if row is None else \
                [(self.names[c >> 1], bool(c & 1)) for c in (row.callees if outgoing else row.callers)]
        return self.edges[key]

    def callees_of(self, name: str) -> list[tuple[str, bool]]:
        return self._edges(name, True)

    def callers_of(self, name: str) -> list[tuple[str, bool]]:
        return self._edges(name, False)

    def reaching(self, name: str, via: str) -> set[str]:
        """The entries that reach ``name`` (from the precomputed sets)."""
        number = self.position.get(name)
        if number is None:
            return set()
        entries = list(self.entries)
        return {entries[e] for e in self.entry_sets[self.row(number).reach[VIA.index(via)]]}

    def reached(self, entry: str, via: str, callees: Callable[[str], Iterable[tuple[str, bool]]]) -> set[str]:
        """Every function ``entry`` reaches (its dispatchers included) over ``callees``."""
        pairs = self.entries.get(entry, [])
        roots = [self.names[code >> 1] for _, code in pairs if code != NO_ROOT and (code & 1 or via == "any")]
        return closure(roots, callees, via, self.dispatchers) | {self.names[d] for d, _ in pairs}


def make(kernel: str, files: list[str], names: list[str], where: list[tuple[int, int]], callees: list[list[int]],
         callers: list[list[int]], labels: dict[tuple[int, int], str], entries: dict[str, list[tuple[int, int]]],
         members: dict[str, list[int]], cpuid_writers: list[int] = (), rejecters: list[int] = ()) -> Index:
    """An index from the graph's lists, with what reaches each function computed (once, here)."""
    def rows(reach: list[tuple[int, int]]) -> list[str]:
        return [Row(file, line, out, into, ids).encode(name)
                for name, (file, line), out, into, ids in zip(names, where, callees, callers, reach)]

    label_rows = [f"{a} {b} {label}" for (a, b), label in labels.items()]
    draft = Index(kernel, files, names, rows([(0, 0)] * len(names)), label_rows, entries, members, [[]])
    reaching: dict[str, list[set[int]]] = {name: [set(), set()] for name in names}
    for number, entry in enumerate(entries):
        for slot, via in enumerate(VIA):
            for name in draft.reached(entry, via, draft.callees_of):
                reaching[name][slot].add(number)
    distinct = sorted({tuple(sorted(s)) for pair in reaching.values() for s in pair})
    ids = {found: number for number, found in enumerate(distinct)}
    reach = [(ids[tuple(sorted(reaching[n][0]))], ids[tuple(sorted(reaching[n][1]))]) for n in names]
    return Index(kernel, files, names, rows(reach), label_rows, entries, members, [list(d) for d in distinct],
                 sorted(cpuid_writers), sorted(rejecters))


def closure(starts: Iterable[str], callees: Callable[[str], Iterable[tuple[str, bool]]], via: str,
            stop: frozenset[str]) -> set[str]:
    """Every function reached from ``starts`` (included); ``via="result"``: only through calls
    whose result is used; nothing beyond ``stop`` (dispatchers: their other arms are other entries)."""
    seen = set(starts)
    todo = list(seen)
    while todo:
        node = todo.pop()
        if node in stop:
            continue
        for callee, used in callees(node):
            if callee not in seen and (used or via == "any"):
                seen.add(callee)
                todo.append(callee)
    return seen


def closures(starts: list[str], callees: Callable[[str], Iterable[tuple[str, bool]]], via: str,
             stop: frozenset[str]) -> dict[str, int]:
    """:func:`closure` of every start at once: function -> a bit mask of the starts
    (bit ``i`` for ``starts[i]``) whose closure holds it. One walk that carries the
    masks forward, instead of one walk a start: most starts share most of the graph."""
    masks: dict[str, int] = {}
    for bit, start in enumerate(starts):
        masks[start] = masks.get(start, 0) | 1 << bit
    todo = list(masks)
    while todo:
        node = todo.pop()
        if node in stop:
            continue
        mask = masks[node]
        for callee, used in callees(node):
            if used or via == "any":
                have = masks.get(callee, 0)
                if mask & ~have:
                    masks[callee] = have | mask
                    todo.append(callee)
    return masks


def dumps(index: Index) -> str:
    """The index file's text: stable for the same tree."""
    def dump(value) -> str:
        return json.dumps(value, separators=(",", ":"))

    body = "\n".join([
        "{" + f'"files":{dump(index.files)},',
        f'"labels":{dump(index.label_rows)},',
        f'"entries":{dump(index.entries)},',
        f'"members":{dump(index.members)},',
        f'"entry_sets":{dump(index.entry_sets)},',
        f'"cpuid_writers":{dump(index.cpuid_writers)},',
        f'"rejecters":{dump(index.rejecters)},',
        '"functions":[', ",\n".join(dump(row) for row in index.rows), "]}", ""])
    digest = hashlib.sha256(body.encode()).hexdigest()
    header = (f"{MAGIC} {FORMAT} kernel={index.kernel} functions={len(index.names)} edges={index.edge_count}"
              f" entries={len(index.entries)} sha256={digest}")
    return header + "\n" + body


def loads(text: str, source: str) -> Index:
    """Read an index file; anything but a whole index of this format is an InputError."""
    header, newline, body = text.partition("\n")
    fields = header.split(" ")
    if fields[:1] != [MAGIC] or not newline:
        raise InputError(f"{source}: not a kvm-review index (no '{MAGIC}' header)")
    if fields[1:2] != [str(FORMAT)]:
        raise InputError(f"{source}: kvm-review index format {fields[1:2] or '?'}, this version reads {FORMAT}")
    meta = dict(f.split("=", 1) for f in fields[2:] if "=" in f)
    if hashlib.sha256(body.encode()).hexdigest() != meta.get("sha256"):
        raise InputError(f"{source}: kvm-review index damaged or truncated (checksum mismatch)")
    try:
        data = json.loads(body)
        rows = data["functions"]
        index = Index(meta["kernel"], data["files"], [row[:row.index("\t")] for row in rows], rows, data["labels"],
                      {entry: [tuple(pair) for pair in roots] for entry, roots in data["entries"].items()},
                      data["members"], data["entry_sets"], data["cpuid_writers"], data["rejecters"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(f"{source}: kvm-review index unreadable ({type(exc).__name__})") from None
    if str(len(index.names)) != meta.get("functions") or str(len(index.entries)) != meta.get("entries"):
        raise InputError(f"{source}: kvm-review index counts do not match its header")
    return index
