"""Disk cache of embeddings and similarities, shared by xdist workers (SQLite, WAL mode).

Keyed by (embedding model, text) and (embedding model, reference, reply), so a
replayed run encodes nothing it encoded before. It is a cache: a broken entry
or file is dropped with a warning and recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_llmmetrics.errors import LLMMetricsWarning
from pytest_llmmetrics.files import create_file, ignored_folder

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embedding (key TEXT PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS similarity (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
_CHUNK = 500  # SQLite's limit on bound parameters is 999 in old builds


def text_key(model: str, *texts: str) -> str:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(model.encode())
    for text in texts:
        digest.update(b"\0" + text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class EmbeddingCache:
    """``<llm_metrics_dir>/cache/embeddings.sqlite3``; opened on first use.

    A path where no database can live (a folder in its place, a read-only
    folder) is a warning, and the run goes on without the cache.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._unusable = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._unusable:
            try:
                ignored_folder(self.path.parent, "cache")
                try:
                    self._db = self._open()
                except sqlite3.DatabaseError as exc:
                    if not self.path.is_file():  # nothing to start again from: a folder, an unwritable place
                        raise
                    self._discard(exc)
                    self._db = self._open()
            except (OSError, sqlite3.Error) as exc:
                self._give_up(exc)
        return self._db

    def _open(self) -> sqlite3.Connection:
        create_file(self.path)  # with the umask's permissions: SQLite would make it 0644 whatever the umask
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM embedding").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _give_up(self, exc: Exception) -> None:
        """Run on without the cache: every text is encoded (and every similarity computed) afresh."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if not self._unusable:
            self._unusable = True
            warnings.warn(LLMMetricsWarning(
                f"embedding cache {self.path} cannot be used ({exc}); this run goes on without it. "
                "Make its folder writable, remove what is in the way, or point llm_metrics_dir elsewhere"
            ), stacklevel=4)

    def _discard(self, exc: Exception) -> None:
        """Drop a broken database file (and its WAL) to start a new one; raises OSError if it cannot."""
        warnings.warn(
            LLMMetricsWarning(f"embedding cache {self.path} is unreadable ({exc}); starting a new one"),
            stacklevel=3,
        )
        if self._db is not None:
            self._db.close()
            self._db = None
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass

    def _query(self, sql: str, keys: Sequence[str]) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            db = self._connect()
            if db is None:
                return []
            try:
                rows: list[tuple[Any, ...]] = []
                for chunk in _chunks(keys):
                    marks = ",".join("?" * len(chunk))
                    rows.extend(db.execute(sql.format(marks=marks), tuple(chunk)).fetchall())
                return rows
            except sqlite3.DatabaseError as exc:
                self._recover(exc, attempt)
        return []

    def _write(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        rows = list(rows)
        if not rows:
            return
        for attempt in (1, 2):
            db = self._connect()
            if db is None:
                return
            try:
                with db:  # one transaction: concurrent workers queue on SQLite's lock
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany(sql, rows)
                return
            except sqlite3.DatabaseError as exc:
                self._recover(exc, attempt)

    def _recover(self, exc: sqlite3.DatabaseError, attempt: int) -> None:
        """After a failed statement: start a new database once, then give up on the cache."""
        if attempt == 2:
            self._give_up(exc)
            return
        try:
            self._discard(exc)
        except OSError as why:
            self._give_up(why)

    def get_embeddings(self, model: str, texts: Sequence[str]) -> dict[str, Any]:
        import numpy as np

        keys = {text_key(model, t): t for t in texts}
        found: dict[str, Any] = {}
        broken = []
        for key, dim, blob in self._query("SELECT key, dim, vec FROM embedding WHERE key IN ({marks})", list(keys)):
            vec = np.frombuffer(blob, dtype=np.float32) if isinstance(blob, bytes) and len(blob) == 4 * dim else None
            if vec is None or dim < 1 or not np.isfinite(vec).all():
                broken.append(key)
                continue
            found[keys[key]] = vec
        if broken:
            warnings.warn(LLMMetricsWarning(
                f"embedding cache {self.path}: dropped {len(broken)} broken entries; they are recomputed"),
                stacklevel=2)
            self._write("DELETE FROM embedding WHERE key = ?", [(k,) for k in broken])
        return found

    def has_embeddings(self, model: str, texts: Sequence[str]) -> set[str]:
        """Which of ``texts`` have an entry (not decoded: a broken one is caught when read)."""
        keys = {text_key(model, t): t for t in texts}
        return {keys[k] for (k,) in self._query("SELECT key FROM embedding WHERE key IN ({marks})", list(keys))}

    def put_embeddings(self, model: str, vectors: dict[str, Any]) -> None:
        import numpy as np

        self._write(
            "INSERT OR REPLACE INTO embedding (key, dim, vec) VALUES (?, ?, ?)",
            ((text_key(model, t), int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
             for t, v in vectors.items()),
        )

    def get_similarities(self, model: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
        keys = {text_key(model, a, b): (a, b) for a, b in pairs}
        rows = self._query("SELECT key, value FROM similarity WHERE key IN ({marks})", list(keys))
        return {keys[k]: float(v) for k, v in rows if isinstance(v, float) and -1.001 <= v <= 1.001}

    def put_similarities(self, model: str, values: dict[tuple[str, str], float]) -> None:
        self._write(
            "INSERT OR REPLACE INTO similarity (key, value) VALUES (?, ?)",
            ((text_key(model, a, b), float(v)) for (a, b), v in values.items()),
        )
