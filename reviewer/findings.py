"""What the analysis finds: one dataclass, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("info", "warning", "error")
CATEGORIES = ("cpuid-adjust", "userspace-reject", "uapi", "docs", "selftests", "changelog", "process")
# the categories whose findings are ABI changes
ABI_CATEGORIES = ("cpuid-adjust", "userspace-reject", "uapi")
# not a rule: the engine's own finding for a patch whose diff could not be read
UNPARSED = "patch-unparsed"


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def lower(severity: str) -> str:
    return SEVERITIES[max(0, severity_rank(severity) - 1)]


@dataclass
class Finding:
    rule: str
    category: str
    severity: str
    patch: int  # 1-based; 0 = the cover letter / the whole series
    message_id: str
    message: str
    file: str | None = None
    line: int | None = None
    function: str | None = None
    excerpt: list[str] = field(default_factory=list)
    hunk_header: str | None = None
    acknowledged: bool = False
    original_severity: str | None = None
    related: list[int] = field(default_factory=list)  # the patches concerned
    trimmed: bool = False  # the excerpt starts after the hunk's first line
    evidence: list[str] = field(default_factory=list)  # why: the path from userspace, the entry's origin

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "category": self.category,
            "severity": self.severity,
            "patch": self.patch,
            "message_id": self.message_id,
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "message": self.message,
            "excerpt": list(self.excerpt),
            "acknowledged": self.acknowledged,
            "patches": list(self.related),
            "evidence": list(self.evidence),
        }
