"""Configuration for every mode, from one place.

Sources, strongest first: command-line options, a TOML file (``--config``,
``$KVM_REVIEW_CONFIG`` or ``~/.config/kvm-review/config.toml``), then git
config's ``[kvm-review]`` section (like b4 and git send-email use).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from reviewer.errors import InputError

# git config key (lower case, as git prints it) -> our key, and whether it repeats
GIT_KEYS = {
    "rules": ("rules", True),
    "disable": ("disable", True),
    "failon": ("fail_on", False),
    "from": ("from", False),
    "templates": ("templates", False),
    "kerneltree": ("kernel_tree", False),
    "smtpserver": ("smtp_server", False),
    "smtpserverport": ("smtp_port", False),
    "smtpencryption": ("smtp_encryption", False),
    "smtpuser": ("smtp_user", False),
    "smtppass": ("smtp_pass", False),
}
LISTS = ("rules", "disable")


@dataclass
class Config:
    values: dict = field(default_factory=dict)
    source: str = "defaults"

    def get(self, key: str, default=None):
        return self.values.get(key, default)


def git_config(section: str, cwd: str | None = None) -> dict[str, list[str]]:
    """All keys of one git config section: ``{key: [values...]}``."""
    try:
        proc = subprocess.run(["git", "config", "--get-regexp", f"^{section}\\."],
                              capture_output=True, text=True, cwd=cwd, check=False)
    except OSError:
        return {}
    out: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key[len(section) + 1:].lower(), []).append(value)
    return out


def _toml_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get("KVM_REVIEW_CONFIG"):
        return Path(os.environ["KVM_REVIEW_CONFIG"])
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    path = Path(home) / "kvm-review" / "config.toml"
    return path if path.is_file() else None


def load(explicit: str | None = None, cwd: str | None = None) -> Config:
    values: dict = {}
    for key, vals in git_config("kvm-review", cwd).items():
        if key in GIT_KEYS:
            name, many = GIT_KEYS[key]
            values[name] = vals if many else vals[-1]
    path = _toml_path(explicit)
    source = "git config"
    if path is not None:
        import tomllib  # only for a config file: most runs have none

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"{path}: cannot read config: {exc}") from None
        review = data.get("review", data)
        for key, value in review.items():
            if key in LISTS and isinstance(value, str):
                value = [value]
            values[key] = value
        for key, value in data.get("smtp", {}).items():
            values[f"smtp_{key}"] = value
        source = str(path)
    return Config(values, source)
