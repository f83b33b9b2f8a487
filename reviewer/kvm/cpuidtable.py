"""Where the vCPU's stored CPUID table is written.

A write is an adjustment because of what it writes to, not because of the
function it sits in: ``p->ecx &= ...`` or ``cpuid_entry_clear(p, ...)``
where ``p`` came from ``kvm_find_cpuid_entry*()`` / ``cpuid_entry2_find()``
(the table userspace set with KVM_SET_CPUID2, or the incoming one being
checked) or points into ``vcpu->arch.cpuid_entries``. The same write on an
entry of what KVM offers (``do_host_cpuid()``, ``array->entries``), or of
a buffer KVM just allocated (``kvmalloc_array()``, ``vmemdup_user()``:
userspace's input being copied), is not.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

VCPU = "vcpu"  # the stored (or incoming) table userspace set
OFFER = "offer"  # KVM_GET_SUPPORTED_CPUID's array
UNKNOWN = "unknown"  # assigned out of sight (an earlier hunk, a parameter)
BUFFER = "buffer"  # memory KVM just allocated or copied from userspace: filled before it becomes any table
NOT_THE_TABLE = (OFFER, BUFFER)

_PTR = r"(?P<ptr>[A-Za-z_]\w*)(?:\s*\[[^\]]{0,40}\])?"
_REG_WRITE = re.compile(_PTR + r"\s*(?:->|\.)\s*e[abcd]x\s*(?:[-+&|^]|<<|>>)?=(?!=)")
_HELPER_WRITE = re.compile(r"\bcpuid_entry_(?:set|clear|change|override)\s*\(\s*&?\s*" + _PTR)
_GUEST_CLEAR = re.compile(r"\bguest_cpuid_clear\s*\(")
_VCPU_ORIGIN = re.compile(r"\b(?:__)?kvm_find_cpuid_entry\w*\s*\(|\bcpuid_entry2_find\s*\(|\barch\.cpuid_entries\b")
_OFFER_ORIGIN = re.compile(r"\bdo_host_cpuid\s*\(|\barray->entries\b|\bkvm_cpuid_array\b")
_BUFFER_ORIGIN = re.compile(r"\b\w*(?:alloc\w*|memdup_user)\s*\(")
LOOKBACK = 60  # lines searched back for the pointer's assignment


@dataclass(frozen=True)
class Origin:
    kind: str  # VCPU | OFFER | BUFFER | UNKNOWN
    pointer: str  # the entry pointer, or the helper called (``helper`` set)
    text: str = ""  # the assignment, one line, when seen
    helper: bool = False  # a call to a function that writes the table

    def describe(self) -> str:
        if self.helper:
            return f"{self.pointer}() writes the vCPU's CPUID table"
        if self.text:
            return f"`{self.text}` points into the vCPU's CPUID table" if self.kind == VCPU else \
                f"`{self.text}` is all this hunk shows of {self.pointer}"
        if self.kind == VCPU:
            return "it writes the vCPU's CPUID table by name"
        return f"{self.pointer} is assigned out of this hunk's sight"


def written_pointer(text: str) -> str | None:
    """The entry pointer a line writes a CPUID register of, "" for
    ``guest_cpuid_clear(vcpu, ...)`` (the vCPU's table by name), or None."""
    if "cpuid" not in text and "ax" not in text and "bx" not in text and "cx" not in text and "dx" not in text:
        return None  # the common case, cheaply
    match = _REG_WRITE.search(text) or _HELPER_WRITE.search(text)
    if match:
        return match.group("ptr")
    return "" if _GUEST_CLEAR.search(text) else None


def _statement_from(lines: list[str], start: int) -> str:
    parts = []
    for text in lines[start:start + 6]:
        parts.append(text.strip())
        if text.rstrip().endswith((";", "{", ")")):
            break
    return " ".join(parts)


@functools.lru_cache(maxsize=256)
def _assignment(pointer: str) -> re.Pattern:
    return re.compile(r"(?<![\w.>])" + re.escape(pointer) + r"\s*=(?!=)")


def origin(before: list[str], pointer: str) -> Origin:
    """Where ``pointer`` was last assigned in ``before`` (the lines of the
    same side above the write, nearest last); UNKNOWN when out of sight."""
    if pointer == "":
        return Origin(VCPU, "guest_cpuid_clear")
    assign = _assignment(pointer)
    for i in range(len(before) - 1, max(-1, len(before) - 1 - LOOKBACK), -1):
        if assign.search(before[i]):
            text = _statement_from(before, i)
            if _VCPU_ORIGIN.search(text):
                return Origin(VCPU, pointer, " ".join(text.split())[:100])
            if _OFFER_ORIGIN.search(text):
                return Origin(OFFER, pointer, " ".join(text.split())[:100])
            if _BUFFER_ORIGIN.search(text):
                return Origin(BUFFER, pointer, " ".join(text.split())[:100])
            return Origin(UNKNOWN, pointer, " ".join(text.split())[:100])
    return Origin(UNKNOWN, pointer)


def writes_in(lines: list[str]) -> bool:
    """Does this run of one function's lines write the vCPU's table: an
    entry it found in the table itself (not one its caller passed)?"""
    for i, text in enumerate(lines):
        pointer = written_pointer(text)
        if pointer is not None and origin(lines[:i], pointer).kind == VCPU:
            return True
    return False
