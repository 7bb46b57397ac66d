"""`watch FOLDER`: post each new image file that appears in a folder (a camera or a PLC writes
them there), once.

The folder is polled. A file is taken once its size and modification time have not changed for
`settle_seconds` (a file still being written is left alone; so are names ending in .part, .tmp,
.partial, .crdownload or ~, and hidden ones). Taking a file stores it in the buffer together
with its name, size and time, in one transaction, so a restarted watcher never sends it again;
a file that changes afterwards is a new capture. While the server cannot be reached captures
are buffered (each with the line's outage action) and the buffer is flushed, in order, when
it answers again. Decisions and corrections from the station websocket are reported too.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from station_client.buffer import QUEUED
from station_client.client import CaptureRejected, StationClient

logger = logging.getLogger("station_client")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", "~")

Emit = Callable[[dict[str, Any]], None]


def is_candidate(name: str) -> bool:
    lowered = name.lower()
    if lowered.startswith(".") or lowered.endswith(PARTIAL_SUFFIXES):
        return False
    return Path(lowered).suffix in IMAGE_SUFFIXES


class StationListener(threading.Thread):
    """Keeps the station websocket open (reconnecting with backoff) and hands every decision
    and correction to the client's hooks."""

    def __init__(self, client: StationClient, station_id: int) -> None:
        super().__init__(name="station-websocket", daemon=True)
        self.client, self.station_id = client, station_id
        self.connected = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        from websockets.exceptions import WebSocketException

        failures = 0
        while not self._stopping.is_set():
            try:
                with self.client.station_socket(self.station_id) as socket:
                    failures = 0
                    self.connected.set()
                    self._relay(socket)
            except (OSError, WebSocketException, ValueError) as exc:
                logger.info("station websocket: %s", exc)
            self.connected.clear()
            if not self._stopping.is_set():
                failures += 1
                self._stopping.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))

    def _relay(self, socket: Any) -> None:
        while not self._stopping.is_set():
            try:
                message = json.loads(socket.recv(timeout=1.0))
            except TimeoutError:
                continue
            self.client.message_dispatch(message)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)


class FolderWatcher:
    def __init__(
        self,
        client: StationClient,
        folder: str | Path,
        *,
        line: str,
        emit: Emit,
        settle_seconds: float = 1.0,
        retry_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.folder, self.line, self.emit = client, Path(folder), line, emit
        self.settle_seconds, self.retry_every, self.clock = settle_seconds, retry_every, clock
        self._seen: dict[str, tuple[int, int, float]] = {}  # path -> size, mtime, unchanged since
        self._offline_until = 0.0
        self._pending: dict[str, float] = {}  # capture id -> when last read
        self.listener: StationListener | None = None
        client.on_decision = self._decided
        client.on_correction = self._corrected

    def _decided(self, capture: dict[str, Any]) -> None:
        self._pending.pop(str(capture.get("id")), None)
        self.emit({"event": "decision", "capture": capture})

    def _corrected(self, capture: dict[str, Any]) -> None:
        self.emit({"event": "correction", "capture": capture})

    def ready_files(self) -> list[tuple[Path, int, int]]:
        """Files whose size and time have stood still for settle_seconds, oldest first."""
        now, ready, present = self.clock(), [], set()
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            logger.warning("the folder %s does not exist (yet)", self.folder)
            return []
        for entry in entries:
            if not is_candidate(entry.name):
                continue
            try:
                if not entry.is_file():
                    continue
                stat = entry.stat()
            except FileNotFoundError:
                continue  # gone since the listing
            present.add(entry.path)
            shape = (stat.st_size, stat.st_mtime_ns)
            before = self._seen.get(entry.path)
            if before is None or before[:2] != shape:
                self._seen[entry.path] = (*shape, now)
                continue
            if stat.st_size > 0 and now - before[2] >= self.settle_seconds:
                ready.append((stat.st_mtime_ns, entry.name, Path(entry.path), stat.st_size))
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return [(path, size, mtime) for mtime, _, path, size in sorted(ready)]

    @property
    def offline(self) -> bool:
        return self.clock() < self._offline_until

    def poll_once(self) -> None:
        buffer = self.client.buffer
        if not self.offline and buffer.count(QUEUED):
            result = self.client.flush()
            self.emit({"event": "flush", **result.to_dict()})
            if result.left:
                self._offline_until = self.clock() + self.retry_every
        for path, size, mtime_ns in self.ready_files():
            if buffer.file_taken(str(path), size=size, mtime_ns=mtime_ns):
                continue
            self._take(path, size, mtime_ns)
        if not self.offline:
            self.client.line_refresh(self.line)
            self._listen()
            self._poll_pending()

    def _take(self, path: Path, size: int, mtime_ns: int) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            logger.warning("%s could not be read: %s", path, exc)
            return
        watched = (str(path), size, mtime_ns)
        try:
            if self.offline:  # do not wait on retries for each file while the server is down
                record = self.client.buffer_add(
                    data, line=self.line, filename=path.name, watched=watched
                )
                result = self.client.outage_result(record)
            else:
                result = self.client.capture(
                    data, line=self.line, filename=path.name, watched=watched
                )
        except CaptureRejected as exc:
            self.emit({"event": "capture", "file": path.name, **exc.to_dict()})
            return
        if result.status == "buffered":
            self._offline_until = self.clock() + self.retry_every
        elif result.status == "pending" and result.id:
            self._pending[result.id] = self.clock()
        self.emit({"event": "capture", "file": path.name, **result.to_dict()})

    def _listen(self) -> None:
        station = self.client.station_id()
        if station is None:
            return
        if self.listener is not None and self.listener.station_id == station:
            return
        if self.listener is not None:
            self.listener.stop()
        self.listener = StationListener(self.client, station)
        self.listener.start()

    def _poll_pending(self) -> None:
        """Read pending captures again now and then: every retry_every seconds without the
        websocket, three times less often with it (a verdict made while it reconnected)."""
        connected = self.listener is not None and self.listener.connected.is_set()
        every = self.retry_every * (3 if connected else 1)
        now = self.clock()
        for capture_id, read_at in list(self._pending.items())[:50]:
            if now - read_at < every:
                continue
            self._pending[capture_id] = now
            capture = self.client.capture_get(capture_id)
            if capture is not None and capture.get("status") == "decided":
                self._decided(capture)

    def run(self, *, poll_interval: float = 0.5) -> None:
        self.client.buffer.prune()
        try:
            while True:
                self.poll_once()
                time.sleep(poll_interval)
        finally:
            self.close()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
