"""The index file of the KVM x86 call graph: what :mod:`reviewer.kvm.graph`
writes and :mod:`reviewer.kvm.reach` reads.

One header line (magic, format version, kernel version, counts, sha256 of
the rest), then JSON, one function a line. Reading it needs no C scanner.
"""

from __future__ import annotations

import hashlib
import json
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
    position: dict[str, int] = field(default_factory=dict, repr=False)

    dispatchers: frozenset[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        self.position = {name: number for number, name in enumerate(self.names)}
        self.dispatchers = frozenset(self.names[d] for pairs in self.entries.values() for d, _ in pairs)

    @property
    def edge_count(self) -> int:
        return sum(len(out) for out in self.callees)



def dumps(index: Index) -> str:
    """The index file's text: stable for the same tree."""
    def dump(value) -> str:
        return json.dumps(value, separators=(",", ":"))

    rows = [dump([name, file, line, out, into]) for name, (file, line), out, into in
            zip(index.names, index.where, index.callees, index.callers)]
    body = "\n".join([
        "{" + f'"files":{dump(index.files)},',
        f'"labels":{dump([[a, b, label] for (a, b), label in index.labels.items()])},',
        f'"entries":{dump(index.entries)},',
        f'"members":{dump(index.members)},',
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
        index = Index(meta["kernel"], data["files"], [row[0] for row in data["functions"]],
                      [(row[1], row[2]) for row in data["functions"]], [row[3] for row in data["functions"]],
                      [row[4] for row in data["functions"]],
                      {(a, b): label for a, b, label in data["labels"]},
                      {entry: [tuple(pair) for pair in roots] for entry, roots in data["entries"].items()},
                      data["members"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(f"{source}: kvm-review index unreadable ({type(exc).__name__})") from None
    if str(len(index.names)) != meta.get("functions") or str(len(index.entries)) != meta.get("entries"):
        raise InputError(f"{source}: kvm-review index counts do not match its header")
    return index
