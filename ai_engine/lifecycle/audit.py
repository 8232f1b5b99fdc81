"""Audit log of every lifecycle change: one JSON line per change (when, who, what, before, after).

Appended, never rewritten, so the history of roles, weights and model files can be read back
after an incident. A refused change is not recorded (it changed nothing); a forced one is, with
the reason it needed forcing.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["AUDIT_FILE_NAME", "append_audit", "read_audit", "current_user"]

AUDIT_FILE_NAME = "audit.log"


def current_user() -> str:
    """The operator: ``SUDO_USER`` when run through sudo, else the login name."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def append_audit(home: Path, what: str, *, before: Any = None, after: Any = None, **detail: Any) -> dict:
    """Append one entry to ``<home>/audit.log`` (created 0640) and return it."""
    entry = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ts_ms": int(time.time() * 1000),
        "who": current_user(),
        "what": what,
        "before": before,
        "after": after,
    } | detail
    path = Path(home) / AUDIT_FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=True, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())  # one write of one line: concurrent appends never interleave
    finally:
        os.close(fd)
    return entry


def read_audit(home: Path) -> list[dict]:
    """All entries, oldest first; an absent log is empty."""
    path = Path(home) / AUDIT_FILE_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
