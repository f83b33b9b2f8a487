"""The series model: cover letter, patches, trailers and parsed diffs.

Built from b4's threading (:mod:`reviewer.b4glue`), diffs parsed with unidiff,
every added and removed line given its C function (:mod:`reviewer.kvm.context`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reviewer.kvm import context

if TYPE_CHECKING:  # the model does not need b4 loaded to exist
    from reviewer.b4glue import Mail, MailSeries
from reviewer.errors import InputError

_DIFF_START = re.compile(r"^(diff --git |--- \S)", re.M)
_BINARY = re.compile(r"^GIT binary patch\n.*?(?=^diff --git |\Z)", re.M | re.S)
_C_FILE = re.compile(r"\.[ch]$")
_CASE_LABEL = re.compile(r"^\s*(case\b[^:]*|default)\s*:")
MAX_LINE = 1000  # rules see at most this much of a line
MAX_DETAIL = 120  # characters of the parser's complaint in an error message


@dataclass
class DiffLine:
    kind: str  # "+", "-" or " "
    text: str
    old_lineno: int | None
    new_lineno: int | None
    function: str | None = None
    scope: str = context.TOPLEVEL  # function | toplevel | unknown

    @property
    def added(self) -> bool:
        return self.kind == "+"

    @property
    def removed(self) -> bool:
        return self.kind == "-"


@dataclass
class Hunk:
    header: str  # the "@@ -a,b +c,d @@ section" line
    section: str  # what git printed after the second @@
    old_start: int
    new_start: int
    lines: list[DiffLine]

    @functools.cached_property
    def changed(self) -> list[int]:
        """Indexes of the added and removed lines."""
        return [i for i, line in enumerate(self.lines) if line.kind != " "]

    @functools.cached_property
    def changed_text(self) -> str:
        """The changed lines, each cut to MAX_LINE characters, one a line:
        a single search tells whether a rule can match anywhere in the hunk."""
        return "\n".join(self.lines[i].text[:MAX_LINE] for i in self.changed)

    @functools.cached_property
    def text(self) -> str:
        """All the hunk's lines (context too), each cut to MAX_LINE characters."""
        return "\n".join(line.text[:MAX_LINE] for line in self.lines)

    @functools.cached_property
    def changed_functions(self) -> set[str | None]:
        return {self.lines[i].function for i in self.changed}

    @functools.cached_property
    def new_arms(self) -> frozenset[int]:
        """Indexes of the added ``case X:``/``default:`` lines whose label no
        removed line had (``case X: {`` rewriting ``case X:`` opens no arm)."""
        labels = {i: " ".join(m.group(1).split()) for i in self.changed
                  if (m := _CASE_LABEL.match(self.lines[i].text))}
        removed = {label for i, label in labels.items() if self.lines[i].removed}
        return frozenset(i for i, label in labels.items() if self.lines[i].added and label not in removed)

    @functools.cached_property
    def case_labels(self) -> list[int | None]:
        """For each line, the index of the nearest ``case ...:``/``default:``
        label above it on its side of the hunk (None past a function's end
        or before any label): which arm of a ``switch`` it sits in."""
        out: list[int | None] = []
        last = {"+": None, "-": None}
        for i, line in enumerate(self.lines):
            sides = ("+", "-") if line.kind == " " else (line.kind,)
            if line.text.startswith("}"):
                for side in sides:
                    last[side] = None
            elif _CASE_LABEL.match(line.text):
                for side in sides:
                    last[side] = i
            out.append(last[sides[0]])
        return out

    def opener(self, index: int) -> tuple[str, str]:
        """(text, kind) of the opening line of the top-level definition (a
        function, an array, a struct) holding line ``index``, read on its
        side of the hunk: the last line before it that starts in column 0;
        the section header (existing code: kind " ") when none does;
        ("", " ") when a definition closes first (top level)."""
        kind = self.lines[index].kind
        for line in reversed(self.lines[:index]):
            if line.kind not in (" ", kind) or line.text[:1] in ("", " ", "\t", "#", "/", "*"):
                continue
            return ("", " ") if line.text.startswith("}") else (line.text, line.kind)
        return self.section, " "


@dataclass
class FileDiff:
    path: str  # the new path (the old one for a deletion)
    old_path: str | None
    new_path: str | None
    binary: bool
    hunks: list[Hunk]


@dataclass
class Patch:
    index: int  # 1-based
    subject: str
    full_subject: str
    author_name: str
    author_email: str
    date: str
    message_id: str
    message: str
    trailers: list[tuple[str, str]]
    files: list[FileDiff]
    mail: Mail = field(repr=False)
    problem: str | None = None  # why its diff could not be read (then ``files`` is empty)

    def trailer_values(self, name: str) -> list[str]:
        return [v for n, v in self.trailers if n.lower() == name.lower()]

    @functools.cached_property
    def removed_lines(self) -> list[DiffLine]:
        """Every line the patch removes, in every file."""
        return [ln for f in self.files for h in f.hunks for ln in h.lines if ln.removed]

    @functools.cached_property
    def added_lines(self) -> list[DiffLine]:
        """Every line the patch adds, in every file."""
        return [ln for f in self.files for h in f.hunks for ln in h.lines if ln.added]

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


@dataclass
class Cover:
    subject: str
    full_subject: str
    message_id: str
    author_name: str
    author_email: str
    date: str
    text: str
    mail: Mail = field(repr=False)


@dataclass
class Series:
    subject: str
    revision: int
    expected: int
    complete: bool
    cover: Cover | None
    patches: list[Patch]
    change_id: str | None = None
    kernel_tree: str | None = None  # the user's tree: its call graph, not the shipped one

    @property
    def message_id(self) -> str:
        return self.cover.message_id if self.cover else self.patches[0].message_id


def diff_text(basement: str) -> str:
    """The diff part of what sits below a patch's ``---``."""
    match = _DIFF_START.search(basement)
    if not match:
        return ""
    text = basement[match.start():]
    return _BINARY.sub("", text)


def _strip_prefix(path: str | None) -> str | None:
    if path is None or path == "/dev/null":
        return None
    return path[2:] if path[:2] in ("a/", "b/") else path


class MalformedDiff(InputError):
    """A diff that does not parse: ``problem`` says how, in at most a line."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.problem = problem


def parse_diff(text: str, where: str) -> list[FileDiff]:
    """Parse a unified diff; ``where`` names the patch in error messages."""
    if not text.strip():
        return []
    import unidiff  # here: rules and --version need the model's types, not the parser

    try:
        patchset = unidiff.PatchSet(text)
    except unidiff.UnidiffParseError as exc:
        detail = " ".join(str(exc).split())  # it quotes the bad line: keep it short
        if len(detail) > MAX_DETAIL:
            detail = detail[:MAX_DETAIL - 3] + "..."
        raise MalformedDiff(where, f"malformed diff: {detail}") from None
    return [_file_diff(pfile) for pfile in patchset]


def _file_diff(pfile) -> FileDiff:
    old_path = _strip_prefix(pfile.source_file)
    new_path = _strip_prefix(pfile.target_file)
    path = new_path or old_path or pfile.path
    hunks = [_hunk(h) for h in pfile]
    diff = FileDiff(path, old_path, new_path, pfile.is_binary_file, hunks)
    if _C_FILE.search(path):
        renames: dict[str, str] = {}  # functions renamed by earlier hunks
        for hunk in hunks:
            assign_functions(hunk, renames)
    return diff


def _hunk(uhunk) -> Hunk:
    header = (f"@@ -{uhunk.source_start},{uhunk.source_length}"
              f" +{uhunk.target_start},{uhunk.target_length} @@")
    if uhunk.section_header:
        header += " " + uhunk.section_header
    lines = [  # unidiff's "" is a blank context line whose space a mailer stripped
        DiffLine(line.line_type or " ", line.value.rstrip("\n"), line.source_line_no, line.target_line_no)
        for line in uhunk
        if line.line_type in ("+", "-", " ", "")
    ]
    return Hunk(header, uhunk.section_header, uhunk.source_start, uhunk.target_start, lines)


def assign_functions(hunk: Hunk, renames: dict[str, str] | None = None) -> None:
    """Give each line of ``hunk`` its enclosing function, from the hunk alone.

    ``renames`` carries the functions earlier hunks of the file renamed: git
    names a hunk after the old file's function, the new side has the new name.
    """
    for side in ("-", "+"):
        lines = [ln for ln in hunk.lines if ln.kind in (" ", side)]
        wheres = context.scan_hunk_side(hunk.section, [ln.text for ln in lines],
                                         renames if side == "+" else None)
        for line, where in zip(lines, wheres):
            if line.kind == side or side == "+":
                line.function, line.scope = where.function, where.kind
    if renames is not None:
        renames.update(context.definition_renames([(ln.kind, ln.text) for ln in hunk.lines]))


def _diff(index: int, mail: Mail) -> tuple[list[FileDiff], str | None]:
    """The patch's parsed diff, or why it has none we can read."""
    if mail.problem:
        return [], mail.problem
    try:
        return parse_diff(diff_text(mail.basement), f"patch {index} ({mail.msgid})"), None
    except MalformedDiff as exc:
        return [], exc.problem


def _patch(index: int, mail: Mail) -> Patch:
    files, problem = _diff(index, mail)
    return Patch(
        index=index,
        subject=mail.subject,
        full_subject=mail.full_subject,
        author_name=mail.fromname,
        author_email=mail.fromemail,
        date=mail.date,
        message_id=mail.msgid,
        message=mail.message,
        trailers=mail.trailers + mail.followup_trailers,
        files=files,
        mail=mail,
        problem=problem,
    )


def build(mseries: MailSeries) -> Series:
    """The series model of what b4 threaded."""
    cover = None
    if mseries.cover is not None:
        c = mseries.cover
        cover = Cover(c.subject, c.full_subject, c.msgid, c.fromname, c.fromemail, c.date,
                      c.message + ("\n" + c.basement if c.basement else ""), c)
    patches = [_patch(m.counter, m) for m in mseries.patches]
    subject = cover.subject if cover else patches[0].subject
    return Series(subject, mseries.revision, mseries.expected, mseries.complete,
                  cover, patches, mseries.change_id)
