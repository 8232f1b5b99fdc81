"""systemd ``EnvironmentFile`` parsing and atomic, keyed editing.

Parsing follows systemd's rules that matter in practice: ``KEY=VALUE`` lines, ``#`` and ``;``
comments, optional ``export``, single or double quotes around the value, blank lines ignored.
systemd starts a comment only at the beginning of a line: ``KEY=/x # note`` gives the service the
value ``/x # note``. Such an unquoted value is refused rather than read that way (a path, prefix or
URL with a comment glued to it is never what was meant); quote the value if the ``#`` belongs to it.
Editing keeps comments and order, never duplicates a key (failure mode 18), writes a temp file
and renames it over the original so a reader never sees half a file.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ai_engine.exceptions import ConfigError

__all__ = ["EnvLine", "parse_env_text", "read_env_file", "update_env_file", "write_atomic"]

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNWRITABLE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")  # would split the line or be unreadable back
_INLINE_COMMENT_RE = re.compile(r"(?:^|\s)#")


@dataclass(frozen=True, slots=True)
class EnvLine:
    """One line of an env file: ``key`` is None for comments and blank lines."""

    raw: str
    key: str | None = None
    value: str | None = None


def _unquote(value: str, where: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner.replace('\\"', '"').replace("\\\\", "\\") if value[0] == '"' else inner
    if value and value[0] in "'\"":
        raise ConfigError(f"{where}: unterminated quote in value {value!r}")
    if _INLINE_COMMENT_RE.search(value):
        raise ConfigError(f"{where}: value {value!r} holds a comment, which systemd would keep as part of the value; "
                          "put the comment on a line of its own, or quote the value if the '#' belongs to it")
    return value


def parse_env_text(text: str, source: str = "<env>") -> list[EnvLine]:
    """Parse env-file text into lines; malformed lines raise ConfigError naming file and line."""
    lines: list[EnvLine] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s or s[0] in "#;":
            lines.append(EnvLine(raw))
            continue
        if s.startswith("export "):
            s = s[len("export ") :].lstrip()
        if "=" not in s:
            raise ConfigError(f"{source}:{n}: expected KEY=VALUE, got {raw!r}")
        key, value = s.split("=", 1)
        key = key.strip()
        if not _KEY_RE.match(key):
            raise ConfigError(f"{source}:{n}: invalid key {key!r}")
        if key in seen:
            raise ConfigError(
                f"{source}:{n}: duplicate key {key} (first set on line {seen[key]}); "
                "remove one so the file has a single value per key"
            )
        seen[key] = n
        lines.append(EnvLine(raw, key, _unquote(value, f"{source}:{n}")))
    return lines


def read_env_file(path: Path) -> dict[str, str]:
    """Read an env file into a dict; a missing or unreadable file is a ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"env file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"env file {path} cannot be read: {exc}") from None
    return {ln.key: ln.value for ln in parse_env_text(text, str(path)) if ln.key is not None}  # type: ignore[misc]


def _format_value(value: str) -> str:
    if value == "" or re.search(r"[\s#;'\"\\]", value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same directory and a rename.

    A symlink is written through: its target is replaced and the link kept. The file keeps its mode,
    owner and group (an env file ``root:qt 640`` must stay readable by the service user). Only a
    writer that is not root, and so may not give the file away, goes on when chown is refused.
    """
    path = Path(os.path.realpath(path))
    try:
        st: os.stat_result | None = path.stat()
    except OSError:  # a new file
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if st is not None:
                _keep_owner(fh.fileno(), st)
            os.fchmod(fh.fileno(), stat.S_IMODE(st.st_mode) if st is not None else 0o640)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _keep_owner(fd: int, st: os.stat_result) -> None:
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except PermissionError:
        if os.geteuid() == 0:
            raise


def update_env_file(path: Path, set_values: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> bool:
    """Set and remove keys in place (comments and order kept). Returns True if the file changed."""
    path = Path(path)
    set_values = dict(set_values or {})
    for key, value in set_values.items():
        if not _KEY_RE.match(key):
            raise ConfigError(f"{path}: invalid key {key!r}; nothing changed")
        if _UNWRITABLE_RE.search(value):
            raise ConfigError(f"{path}: value of {key} contains a line break or control character; nothing changed")
    old_text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = parse_env_text(old_text, str(path))
    out: list[str] = []
    for ln in lines:
        if ln.key is None:
            out.append(ln.raw)
        elif ln.key in unset:
            continue
        elif ln.key in set_values:
            out.append(f"{ln.key}={_format_value(set_values.pop(ln.key))}")
        else:
            out.append(ln.raw)
    out.extend(f"{k}={_format_value(v)}" for k, v in set_values.items())
    new_text = "\n".join(out) + ("\n" if out else "")
    if new_text == old_text:
        return False
    write_atomic(path, new_text)
    return True
