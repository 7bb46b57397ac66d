"""The station's buffer, one SQLite file on its own disk: every capture with its idempotency key,
written before it is sent and kept until the server has answered it; the files `watch` has
taken; and what the station keeps of its line for when the server is down (settings, its own
station id, the edge model's ETag).

Each write is its own committed transaction (WAL, synchronous=FULL), so a capture survives the
station's crash or power cut at any point, and a resend after one carries the same key (the
server then answers the first result).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("station-buffer.sqlite3")

# queued: not yet answered by the server; sent: answered 200/201; rejected: answered with a 4xx
# that a resend cannot change (a bad image, an unknown line), kept with the server's words.
QUEUED, SENT, REJECTED = "queued", "sent", "rejected"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    line TEXT NOT NULL,
    image BLOB,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    captured_at TEXT,
    metadata TEXT,
    source TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    answered_at REAL,
    http_status INTEGER,
    capture_id TEXT,
    answer TEXT,
    outage_action TEXT,
    edge_decision TEXT
);
CREATE INDEX IF NOT EXISTS captures_state ON captures (state, seq);
CREATE TABLE IF NOT EXISTS watched_files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    taken_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS station_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class BufferedCapture:
    seq: int
    idempotency_key: str
    line: str
    image: bytes | None
    filename: str
    content_type: str
    captured_at: str | None
    metadata: dict[str, Any] | None
    source: str | None
    state: str
    attempts: int
    http_status: int | None
    capture_id: str | None
    answer: dict[str, Any] | None
    outage_action: str | None
    # The edge model's decision while the server was down (verdict, score, model_version,
    # model_sha256, decided_at): sent with the capture, so the server records it as made at
    # the edge instead of deciding the phone again.
    edge_decision: dict[str, Any] | None = None


def _row_capture(row: sqlite3.Row) -> BufferedCapture:
    return BufferedCapture(
        seq=row["seq"],
        idempotency_key=row["idempotency_key"],
        line=row["line"],
        image=row["image"],
        filename=row["filename"],
        content_type=row["content_type"],
        captured_at=row["captured_at"],
        metadata=json.loads(row["metadata"]) if row["metadata"] else None,
        source=row["source"],
        state=row["state"],
        attempts=row["attempts"],
        http_status=row["http_status"],
        capture_id=row["capture_id"],
        answer=json.loads(row["answer"]) if row["answer"] else None,
        outage_action=row["outage_action"],
        edge_decision=json.loads(row["edge_decision"]) if row["edge_decision"] else None,
    )


class Buffer:
    """The buffer file; safe to share between threads and between processes on one station
    (SQLite's own locking; a second process waits up to `timeout` seconds for the first)."""

    def __init__(self, path: str | Path = DEFAULT_PATH, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed capture survives a power cut
        self._db.executescript(_SCHEMA)
        self._schema_upgrade()

    def _schema_upgrade(self) -> None:
        """Columns added since a station's buffer file was made (its queued captures stay)."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(captures)")}
        if "edge_decision" not in columns:
            try:
                self._db.execute("ALTER TABLE captures ADD COLUMN edge_decision TEXT")
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(sql, params)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return cursor

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- captures ---------------------------------------------------------------------------

    def add(
        self,
        *,
        line: str,
        image: bytes,
        filename: str = "capture.jpg",
        content_type: str = "image/jpeg",
        captured_at: str | None = None,
        metadata: dict[str, Any] | None = None,
        source: str | None = None,
        watched: tuple[str, int, int] | None = None,
    ) -> BufferedCapture:
        """Store a capture under a new idempotency key (committed before anything is sent).
        `watched` (path, size, mtime_ns) also records the file as taken, in the same
        transaction, so a restarted watcher never takes it twice."""
        key = uuid.uuid4().hex
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO captures (idempotency_key, line, image, filename, content_type,"
                    " captured_at, metadata, source, state, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        line,
                        image,
                        filename,
                        content_type,
                        captured_at,
                        json.dumps(metadata) if metadata is not None else None,
                        source,
                        QUEUED,
                        time.time(),
                    ),
                )
                if watched is not None:
                    path, size, mtime_ns = watched
                    self._db.execute(
                        "INSERT OR REPLACE INTO watched_files"
                        " (path, size, mtime_ns, idempotency_key, taken_at) VALUES (?, ?, ?, ?, ?)",
                        (path, size, mtime_ns, key, time.time()),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        got = self.get(key)
        assert got is not None
        return got

    def get(self, key: str) -> BufferedCapture | None:
        rows = self._read("SELECT * FROM captures WHERE idempotency_key = ?", (key,))
        return _row_capture(rows[0]) if rows else None

    def queued(self, limit: int | None = None) -> list[BufferedCapture]:
        """What still waits for the server's answer, oldest first."""
        sql = "SELECT * FROM captures WHERE state = ? ORDER BY seq"
        params: tuple = (QUEUED,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [_row_capture(row) for row in self._read(sql, params)]

    def count(self, state: str = QUEUED) -> int:
        return self._read("SELECT COUNT(*) FROM captures WHERE state = ?", (state,))[0][0]

    def attempt_noted(self, key: str) -> None:
        self._write("UPDATE captures SET attempts = attempts + 1 WHERE idempotency_key = ?", (key,))

    def outage_noted(
        self, key: str, action: str, *, edge_decision: dict[str, Any] | None = None
    ) -> None:
        """What the phone got while the server could not be reached (hold, reject, pass, fail),
        and the edge model's decision when it gave the verdict (kept once made: the phone left
        with it, so a later outage never replaces it)."""
        self._write(
            "UPDATE captures SET outage_action = ?, edge_decision = COALESCE(edge_decision, ?)"
            " WHERE idempotency_key = ?",
            (action, json.dumps(edge_decision) if edge_decision is not None else None, key),
        )

    def answered(self, key: str, *, http_status: int, answer: dict[str, Any]) -> None:
        """The server has it: the key and the answer stay, the image bytes go."""
        self._write(
            "UPDATE captures SET state = ?, http_status = ?, answer = ?, capture_id = ?,"
            " answered_at = ?, image = NULL WHERE idempotency_key = ?",
            (SENT, http_status, json.dumps(answer), answer.get("id"), time.time(), key),
        )

    def rejected(self, key: str, *, http_status: int, answer: dict[str, Any]) -> None:
        """A 4xx no resend can change: kept (with the image) for the line lead to look at."""
        self._write(
            "UPDATE captures SET state = ?, http_status = ?, answer = ?, answered_at = ?"
            " WHERE idempotency_key = ?",
            (REJECTED, http_status, json.dumps(answer), time.time(), key),
        )

    def prune(self, *, older_than_seconds: float = 7 * 86400) -> int:
        """Forget answered captures (and their taken files) older than this; queued ones stay."""
        cutoff = time.time() - older_than_seconds
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "DELETE FROM watched_files WHERE idempotency_key IN (SELECT idempotency_key FROM"
                " captures WHERE state != ? AND answered_at < ?)",
                (QUEUED, cutoff),
            )
            removed = self._db.execute(
                "DELETE FROM captures WHERE state != ? AND answered_at < ?", (QUEUED, cutoff)
            ).rowcount
            self._db.execute("COMMIT")
        return removed

    # --- watched files ----------------------------------------------------------------------

    def file_taken(self, path: str, *, size: int, mtime_ns: int) -> bool:
        """Whether this file, as it is now, was already taken (a changed file is a new one)."""
        rows = self._read(
            "SELECT 1 FROM watched_files WHERE path = ? AND size = ? AND mtime_ns = ?",
            (path, size, mtime_ns),
        )
        return bool(rows)

    # --- what the station keeps of its line -------------------------------------------------

    def state_get(self, name: str) -> tuple[Any, float] | None:
        """(value, when it was stored) or None."""
        rows = self._read("SELECT value, updated_at FROM station_state WHERE name = ?", (name,))
        return (json.loads(rows[0]["value"]), rows[0]["updated_at"]) if rows else None

    def state_put(self, name: str, value: Any) -> None:
        self._write(
            "INSERT OR REPLACE INTO station_state (name, value, updated_at) VALUES (?, ?, ?)",
            (name, json.dumps(value), time.time()),
        )

    def state_delete(self, name: str) -> None:
        self._write("DELETE FROM station_state WHERE name = ?", (name,))
