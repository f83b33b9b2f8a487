"""The built-in pack: ``rules/*.toml`` and ``templates/``, shipped inside the
package and read with :mod:`importlib.resources`.

In the source tree ``reviewer/builtin/rules`` and ``reviewer/builtin/templates``
are symbolic links to the top-level ``rules/`` and ``templates/``; a wheel
carries copies (``[tool.setuptools.package-data]``). An editable and a
non-editable install read them through the same calls.

A pack that is missing, empty or broken is a broken installation, never a
reason to review with fewer rules: :class:`BrokenPack` (exit 3, one line).
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from reviewer.errors import BrokenPack

# every template the replies include (templates/*.txt.j2)
TEMPLATES = ("patch_reply.txt.j2", "series_reply.txt.j2", "attribution.txt.j2", "finding.txt.j2",
             "checklist.txt.j2", "footer.txt.j2")


def root() -> Traversable:
    return resources.files("reviewer") / "builtin"


def rule_files() -> list[tuple[str, str]]:
    """(where, text) of each built-in rule file, by name; the pack's templates
    are checked at the same time, so that every command finds a broken pack."""
    directory = root() / "rules"
    if not directory.is_dir():
        raise BrokenPack(f"no rule directory {directory}")
    files = sorted((f for f in directory.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)
    if not files:
        raise BrokenPack(f"no rule files (*.toml) in {directory}")
    missing = [name for name in TEMPLATES if not (root() / "templates" / name).is_file()]
    if missing:
        raise BrokenPack(f"template {missing[0]} missing from {root() / 'templates'}")
    out = []
    for f in files:
        try:
            out.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise BrokenPack(f"{f}: cannot read it: {exc}") from None
    return out


def template(name: str) -> str | None:
    """A built-in template's text, or None when the pack has no such file."""
    path = root() / "templates" / name
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8")
