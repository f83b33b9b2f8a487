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
FORMAT = 1


@dataclass
class Index:
    """The graph as the model reads it: functions by index, edges coded ``callee * 2 + used``."""

    kernel: str
    files: list[str]
    names: list[str]
    where: list[tuple[int, int]]  # (file index, line) of the first definition
    callees: list[list[int]]
    callers: list[list[int]]
    labels: dict[tuple[int, int], str]  # (caller, callee) -> ".m", "&" or a table's name: how the call goes
    entries: dict[str, list[tuple[int, int]]]  # entry -> [(dispatcher, root * 2 + used)]
    members: dict[str, list[int]]  # "kvm_x86_ops.set_msr" / ".set_msr" -> implementations
    # what reaches each function, precomputed: sets of entry numbers (in ``entries`` order), and per
    # function the set reaching it through any call and through calls whose result is used
    entry_sets: list[list[int]] = field(default_factory=list)
    reach_ids: list[tuple[int, int]] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict, repr=False)
    dispatchers: frozenset[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        self.position = {name: number for number, name in enumerate(self.names)}
        self.dispatchers = frozenset(self.names[d] for pairs in self.entries.values() for d, _ in pairs)

    @property
    def edge_count(self) -> int:
        return sum(len(out) for out in self.callees)

    def callees_of(self, name: str) -> list[tuple[str, bool]]:
        number = self.position.get(name)
        return [] if number is None else [(self.names[c >> 1], bool(c & 1)) for c in self.callees[number]]

    def reached(self, entry: str, via: str, callees: Callable[[str], Iterable[tuple[str, bool]]]) -> set[str]:
        """Every function ``entry`` reaches (its dispatchers included) over ``callees``."""
        pairs = self.entries.get(entry, [])
        roots = [self.names[code >> 1] for _, code in pairs if code & 1 or via == "any"]
        return closure(roots, callees, via, self.dispatchers) | {self.names[d] for d, _ in pairs}


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


def with_entry_sets(index: Index) -> Index:
    """``index`` with what reaches each function computed (done once, when the index is built)."""
    reaching: dict[str, list[set[int]]] = {name: [set(), set()] for name in index.names}
    for number, entry in enumerate(index.entries):
        for slot, via in enumerate(("any", "result")):
            for name in index.reached(entry, via, index.callees_of):
                reaching[name][slot].add(number)
    distinct = sorted({tuple(sorted(s)) for pair in reaching.values() for s in pair})
    ids = {entries: number for number, entries in enumerate(distinct)}
    index.entry_sets = [list(entries) for entries in distinct]
    index.reach_ids = [(ids[tuple(sorted(reaching[n][0]))], ids[tuple(sorted(reaching[n][1]))]) for n in index.names]
    return index



def dumps(index: Index) -> str:
    """The index file's text: stable for the same tree."""
    def dump(value) -> str:
        return json.dumps(value, separators=(",", ":"))

    rows = [dump([name, file, line, out, into, *ids]) for name, (file, line), out, into, ids in
            zip(index.names, index.where, index.callees, index.callers, index.reach_ids)]
    body = "\n".join([
        "{" + f'"files":{dump(index.files)},',
        f'"labels":{dump([[a, b, label] for (a, b), label in index.labels.items()])},',
        f'"entries":{dump(index.entries)},',
        f'"members":{dump(index.members)},',
        f'"entry_sets":{dump(index.entry_sets)},',
        '"functions":[', ",\n".join(rows), "]}", ""])
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
        names, files, lines, callees, callers, any_ids, result_ids = zip(*data["functions"])
        index = Index(meta["kernel"], data["files"], list(names), list(zip(files, lines)), list(callees),
                      list(callers), {(a, b): label for a, b, label in data["labels"]},
                      {entry: [tuple(pair) for pair in roots] for entry, roots in data["entries"].items()},
                      data["members"], data["entry_sets"], list(zip(any_ids, result_ids)))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(f"{source}: kvm-review index unreadable ({type(exc).__name__})") from None
    if str(len(index.names)) != meta.get("functions") or str(len(index.entries)) != meta.get("entries"):
        raise InputError(f"{source}: kvm-review index counts do not match its header")
    return index
