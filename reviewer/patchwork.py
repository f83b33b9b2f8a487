"""Patchwork checks: one per patch, through the REST API (version 1.2).

- find the patch: ``GET /api/1.2/patches/?project=P&msgid=ID`` (the
  Message-ID without angle brackets);
- post the check: ``POST /api/1.2/patches/ID/checks/`` with
  ``Authorization: Token ...`` and ``state``, ``context``, ``description``,
  ``target_url``.

Patchwork calls a passing check ``success``; our ``pass`` maps to it. The
token goes in one header and nowhere else: never in a URL, an error or a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from reviewer.errors import InputError

API = "api/1.2"
CONTEXT = "kvm-review"
STATES = {"pass": "success", "success": "success", "warning": "warning", "fail": "fail", "pending": "pending"}
MAX_DESCRIPTION = 255


class PatchworkError(InputError):
    pass


def state_for(severities: list[str]) -> str:
    """Our verdict for one patch from its findings' severities."""
    if "error" in severities:
        return "fail"
    if "warning" in severities:
        return "warning"
    return "pass"


@dataclass
class Patchwork:
    url: str
    project: str
    token: str = field(default="", repr=False)
    session: requests.Session | None = None
    timeout: float = 30.0

    def __post_init__(self):
        self.url = self.url.rstrip("/")
        if self.session is None:
            self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        url = f"{self.url}/{API}/{path}"
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise PatchworkError(f"patchwork {self.url}: {type(exc).__name__}") from None

    def find_patch(self, msgid: str) -> int | None:
        msgid = msgid.strip().strip("<>")
        resp = self._call("GET", "patches/", params={"project": self.project, "msgid": msgid})
        if resp.status_code != 200:
            raise PatchworkError(f"patchwork {self.url}: looking up {msgid}: HTTP {resp.status_code}")
        try:
            found = resp.json()
        except ValueError:
            raise PatchworkError(f"patchwork {self.url}: looking up {msgid}: not JSON") from None
        if isinstance(found, dict):  # some deployments page as {"results": [...]}
            found = found.get("results", [])
        return int(found[0]["id"]) if found else None

    def post_check(self, patch_id: int, state: str, description: str, target_url: str = "",
                   context: str = CONTEXT) -> dict:
        if not self.token:
            raise PatchworkError("patchwork: no token configured (patchwork.token)")
        body = {"state": STATES[state], "context": context,
                "description": " ".join(description.split())[:MAX_DESCRIPTION]}
        if target_url:
            body["target_url"] = target_url
        resp = self._call("POST", f"patches/{int(patch_id)}/checks/", json=body,
                          headers={"Authorization": f"Token {self.token}"})
        if resp.status_code != 201:
            raise PatchworkError(f"patchwork {self.url}: check on patch {patch_id}: HTTP {resp.status_code}")
        try:
            return resp.json()
        except ValueError:
            return {}
