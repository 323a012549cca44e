"""Files users commit (snapshots, baseline, recordings) and caches: read strictly, written atomically with the umask."""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

from pytest_llmmetrics.errors import ConfigError

# Every file the plugin creates asks for rw-rw-rw- and lets the umask (and a
# folder's default ACL) take away what the user wants taken away, as ``open()``
# and ``git checkout`` do: 0644 under umask 022, 0664 under 002.
FILE_MODE = 0o666
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, line endings as given) to a temp file beside ``path``, fsync it, then
    ``os.replace`` it into place.

    A reader (or a crash) sees the old file or the new one, never a torn mix.
    The file gets the permissions the umask gives (not ``tempfile.mkstemp``'s 0600).
    A symlink is followed (its target is written, the link stays); a device,
    pipe or socket at ``path`` is never replaced (an `OSError` says so).
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`atomic_write_text` for bytes as they are."""
    path = Path(os.path.realpath(path))
    check_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, _CREATE, FILE_MODE)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_regular(path: Path) -> None:
    """An `OSError` when something other than a regular file (or nothing) is at ``path``."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "it is a directory", str(path))
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "it is not a regular file (a device, a pipe or a socket) and was left alone",
                      str(path))


def ignored_folder(folder: Path, what: str) -> Path:
    """``folder``, made if missing, with a ``.gitignore`` that keeps its files out of git (``what`` says why)."""
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        atomic_write_text(ignore, f"# pytest-llmmetrics {what}: never commit\n*\n")
    return folder


def create_file(path: Path) -> None:
    """Create ``path`` empty with the umask's permissions, unless it exists.

    For files another library then opens and fills (SQLite gives a new database
    0644 whatever the umask; its -wal and -shm files copy the database's mode).
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), FILE_MODE))
    except FileExistsError:
        pass


def read_text(path: Path | str, fix: str) -> str:
    """A committed file's text, bytes as they are (no newline translation: a ``\\r\\n`` stays one).

    A file that is not UTF-8 is a `ConfigError` naming it and the line, ending with ``fix`` (what to do).
    """
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{path}: a directory is where this file belongs; move it away") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}). {fix}"
        ) from None


def load_json(text: str, path: Path | str, fix: str) -> Any:
    """Strict JSON for committed files: not JSON, or a field twice in one object (what a git merge that kept
    both sides leaves), is a `ConfigError` naming the file and line(s), ending with ``fix``."""
    try:
        return json.loads(text, object_pairs_hook=unique_fields)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}). {fix}") from None
    except RecursionError:
        raise ConfigError(f"{path}:1: nested too deeply to read (arrays or objects inside each other thousands "
                          f"of levels deep); this is no file the plugin wrote. {fix}") from None
    except DuplicateField as exc:
        first, second = _duplicate_field_lines(text, exc.name)
        raise ConfigError(
            f"{path}:{second}: the field {exc.name!r} appears twice in one object (first on line {first}), "
            f"as a git merge that kept both sides leaves it. Keep the right one and delete the other. {fix}"
        ) from None


def json_value(text: str, path: Path | str, *, at: int = 0, first_line: int = 1, hint: str = "") -> tuple[Any, int]:
    """One strict JSON value starting at ``text[at]``, and where it ends: for files people write by hand
    (JSON Lines, case files). Not JSON, a field given twice or absurd nesting is a `ConfigError` naming
    ``path`` and the line (``first_line`` is the line ``text`` starts on); ``hint`` follows "not JSON"."""
    line = first_line + text.count("\n", 0, at)
    try:
        return _STRICT.raw_decode(text, at)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{first_line + exc.lineno - 1}: not JSON: {exc.msg} (column {exc.colno})"
                          + (f"; {hint}" if hint else "")) from None
    except DuplicateField as exc:
        raise ConfigError(f"{path}:{line}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}:{line}: nested too deeply to read") from None


class DuplicateField(ValueError):
    """A JSON object with a field twice (refused by `unique_fields`)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the field {name!r} is given twice")
        self.name = name


def unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a JSON object with a field twice is refused (``json`` would keep the last)."""
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise DuplicateField(name)
        obj[name] = value
    return obj


_STRICT = json.JSONDecoder(object_pairs_hook=unique_fields)
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:]')


def _duplicate_field_lines(text: str, name: str) -> tuple[int, int]:
    """The lines of the first field ``name`` that appears twice in one object of ``text`` (valid JSON)."""
    objects: list[dict[str, int] | None] = []  # per open bracket: field -> line for objects, None for arrays
    last: re.Match[str] | None = None
    for token in _JSON_TOKEN.finditer(text):
        symbol = token.group()
        if symbol in "{[":
            objects.append({} if symbol == "{" else None)
        elif symbol in "}]":
            if objects:
                objects.pop()
        elif symbol == ":" and last is not None and objects and objects[-1] is not None:
            field, line = json.loads(last.group()), text.count("\n", 0, last.start()) + 1
            if field == name and field in objects[-1]:
                return objects[-1][field], line
            objects[-1].setdefault(field, line)
        last = token if symbol.startswith('"') else None
    return 1, 1
