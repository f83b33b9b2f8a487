"""What an error exit of KVM's C code looks like: the vocabulary the index
(which functions can fail their caller on bad input) and the rules'
predicates share.

The errnos are those of a refusal (``-EINVAL``, ``-E2BIG``, ...), not of a
resource (``-ENOMEM``, ``-EFAULT``): a VMM that worked does not start to
get them because KVM got stricter. ``return 1`` and ``KVM_MSR_RET_*`` are
how MSR handlers fail a write, ``return -1`` how older ones did.
"""

from __future__ import annotations

import re

ERRNOS = r"-E(INVAL|2BIG|PERM|NXIO|OPNOTSUPP|BUSY|EXIST|RANGE|ACCES|NOTSUPP)\b"
# an error return
ERR_RETURN = re.compile(r"\breturn\s+(" + ERRNOS + r"|KVM_MSR_RET_(?!OK\b)\w+|-?1\s*;)")
# a failure stored for a later ``return r`` (``r = -EINVAL;``, an MSR handler's ``ret = 1;``)
FAIL_ASSIGN = re.compile(r"\b(r|ret|err|rc)\s*=\s*(" + ERRNOS + r"|-?1\s*;|KVM_MSR_RET_(?!OK\b)\w+)")


def fails(text: str) -> bool:
    """Does the line fail the call: an error return, or a failure stored for the later return?"""
    return bool(ERR_RETURN.search(text) or FAIL_ASSIGN.search(text))


def rejects_in(lines: list[str]) -> bool:
    """Does a function body (its lines) have an exit that refuses input?"""
    return any(fails(line) for line in lines)
