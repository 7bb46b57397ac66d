"""Sending channel-layer events (websocket notifications) without ever failing the request or
job that sent them: from a background thread with its own event loop (Redis), or in place
(the in-memory layer of a single process). Events are notifications: the database holds the
state, so the few lost if a process dies between commit and send are acceptable."""

import asyncio
import logging
import queue
import threading
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

# Events waiting for the sender thread, at most: while Redis is frozen the thread waits on it,
# and the requests go on queueing; past this the newest are dropped (and counted in the log),
# so a long outage costs neither memory nor a blocked request.
MAX_PENDING = 10_000


async def _send_all(messages: list[tuple[str, dict]]) -> None:
    layer = get_channel_layer()
    for group, message in messages:
        await layer.group_send(group, message)


class _BackgroundSender:
    """Sends events from one thread with its own event loop, so a request never waits on Redis.

    Events are notifications (the database holds the state, and a waiting station re-reads
    it), so the few lost if a process dies between commit and send are acceptable.
    """

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    def submit(self, messages: list[tuple[str, dict]]) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="channel-events", daemon=True
                    )
                    self._thread.start()
        try:
            self._queue.put_nowait(messages)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning(
                    "channel layer not answering: %s events dropped so far (%s waiting)",
                    self.dropped,
                    self._queue.qsize(),
                )

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            messages = self._queue.get()
            try:
                loop.run_until_complete(_send_all(messages))
            except Exception:
                logger.exception("could not send events to %s", [g for g, _ in messages])


_background = _BackgroundSender()


def events_send(messages: list[tuple[str, dict]]) -> None:
    """Send (group, message) pairs now."""
    # A broken channel layer must never fail the request that already committed.
    if "InMemoryChannelLayer" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        _background.submit(messages)
        return
    # The in-memory layer lives in the server's event loop: deliver there, now.
    try:
        async_to_sync(_send_all)(messages)
    except Exception:
        logger.exception("could not send events to %s", [group for group, _ in messages])


def events_send_on_commit(messages: list[tuple[str, dict]]) -> None:
    """Send (group, message) pairs once the current transaction commits."""
    transaction.on_commit(lambda: events_send(messages))


# --- Listening channels that end (a station's long poll) ---

# channels_redis keeps, per process, a buffer of messages by channel; a message that reaches a
# channel after its reader left (the long poll found the decision in the database first, then
# the event arrived) stays there for ever: about one per pending capture, the web process's
# memory growing through a soak. A channel whose listener ended is dropped from the buffer at
# once, and again after the layer's message expiry (a late message may still be pulled in until
# then by another listener of the process).
FORGET_AFTER_SECONDS = 90.0
_ended: dict[str, float] = {}
_ended_lock = threading.Lock()


def channel_forget(layer, channel: str, *, now: float | None = None) -> None:
    """Call when nothing will listen on `channel` again (after group_discard)."""
    buffer = getattr(layer, "receive_buffer", None)
    if buffer is None:  # the in-memory layer keeps no such buffer
        return
    now = time.monotonic() if now is None else now
    buffer.pop(channel, None)
    with _ended_lock:
        _ended[channel] = now
        for name, ended in list(_ended.items()):
            if now - ended >= FORGET_AFTER_SECONDS:
                buffer.pop(name, None)
                del _ended[name]
