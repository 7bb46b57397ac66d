"""Channel-layer events about captures and decisions, sent only after the transaction commits.

Groups: `line.<code>` (inspector feeds), `station.<id>` (a station's verdicts) and
`capture.<hex id>` (a station long-polling one capture).
"""

import asyncio
import logging
import queue
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


def line_group(code: str) -> str:
    return f"line.{code}"


def station_group(station_id: int) -> str:
    return f"station.{station_id}"


def capture_group(capture_id: Any) -> str:
    return f"capture.{getattr(capture_id, 'hex', capture_id)}".replace("-", "")


def capture_payload(capture: Any, decision: Any) -> dict[str, Any]:
    """The small fields a page needs to render a row; ids to fetch the rest."""
    return {
        "id": str(capture.id),
        "line": capture.line.code,
        "station": capture.station_id,
        "received_at": capture.received_at.isoformat(),
        "status": decision.status,
        "verdict": decision.verdict or None,
        "decided_by": decision.decided_by or None,
        "reason": decision.reason,
        "audit": decision.audit,
        # "pending" while an audit sample waits for its review; "confirmed"/"overridden" after.
        "audit_status": decision.audit_status or None,
    }


async def _send_all(messages: list[tuple[str, dict]]) -> None:
    layer = get_channel_layer()
    for group, message in messages:
        await layer.group_send(group, message)


class _BackgroundSender:
    """Sends events from one thread with its own event loop, so a request never waits on Redis.

    Events are notifications (the database holds the state, and a waiting station re-reads
    it), so the few lost if a process dies between commit and send are acceptable.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, messages: list[tuple[str, dict]]) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="channel-events", daemon=True
                    )
                    self._thread.start()
        self._queue.put(messages)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            messages = self._queue.get()
            try:
                loop.run_until_complete(_send_all(messages))
            except Exception:
                logger.exception("could not send events to %s", [g for g, _ in messages])


_background = _BackgroundSender()


def _send(messages: list[tuple[str, dict]]) -> None:
    # A broken channel layer must never fail the request that already committed.
    if "InMemoryChannelLayer" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        _background.submit(messages)
        return
    # The in-memory layer lives in the server's event loop: deliver there, now.
    try:
        async_to_sync(_send_all)(messages)
    except Exception:
        logger.exception("could not send events to %s", [group for group, _ in messages])


def capture_created_on_commit(*, capture: Any, decision: Any) -> None:
    payload = capture_payload(capture, decision)
    messages = [(line_group(capture.line.code), {"type": "capture.created", "capture": payload})]
    if decision.status == "decided":
        messages.append(
            (station_group(capture.station_id), {"type": "decision.made", "capture": payload})
        )
    transaction.on_commit(lambda: _send(messages))


def decision_made_on_commit(*, decision: Any, capture: Any) -> None:
    payload = capture_payload(capture, decision)
    message = {"type": "decision.made", "capture": payload}
    messages = [
        (line_group(capture.line.code), message),
        (station_group(capture.station_id), message),
        (capture_group(capture.id), message),
    ]
    transaction.on_commit(lambda: _send(messages))


def line_changed_on_commit(*, line: Any, changes: dict) -> None:
    message = {"type": "line.changed", "line": line.code, "changes": changes}
    transaction.on_commit(lambda: _send([(line_group(line.code), message)]))


def capture_claimed_on_commit(*, capture: Any, decision: Any) -> None:
    """Other inspectors' browsers drop the capture from their queue."""
    message = {
        "type": "capture.claimed",
        "capture": str(capture.id),
        "line": capture.line.code,
        "claimed_by": decision.claimed_by_id,
        "claim_expires_at": decision.claim_expires_at.isoformat(),
    }
    transaction.on_commit(lambda: _send([(line_group(capture.line.code), message)]))


def capture_released_on_commit(*, capture: Any, decision: Any) -> None:
    """The capture is free again: browsers re-add it (the row's fields are in the payload)."""
    message = {"type": "capture.released", "capture": capture_payload(capture, decision)}
    transaction.on_commit(lambda: _send([(line_group(capture.line.code), message)]))


def decision_reverted_on_commit(*, capture: Any, decision: Any) -> None:
    """An inspector undid a verdict: the station hears the correction, the capture is pending."""
    payload = capture_payload(capture, decision)
    payload["claimed_by"] = decision.claimed_by_id
    message = {"type": "decision.reverted", "capture": payload}
    messages = [
        (line_group(capture.line.code), message),
        (station_group(capture.station_id), message),
        (capture_group(capture.id), message),
    ]
    transaction.on_commit(lambda: _send(messages))


def audit_recorded_on_commit(*, capture: Any, decision: Any) -> None:
    """An inspector reviewed an audit sample: it leaves the inspectors' queues; on an override
    the station, which acted on the model's verdict, gets a correction with the new verdict."""
    payload = capture_payload(capture, decision)
    messages = [(line_group(capture.line.code), {"type": "decision.made", "capture": payload})]
    if decision.audit_status == "overridden":
        correction = {"type": "decision.reverted", "capture": payload}
        messages += [
            (station_group(capture.station_id), correction),
            (capture_group(capture.id), correction),
        ]
    transaction.on_commit(lambda: _send(messages))


def audit_reopened_on_commit(*, capture: Any, decision: Any, correction: bool) -> None:
    """An inspector undid an audit review: it is pending review again (for them); when it had
    overridden the model, the station gets a correction back to the model's verdict."""
    payload = capture_payload(capture, decision)
    payload["claimed_by"] = decision.claimed_by_id
    message = {"type": "decision.reverted", "capture": payload}
    messages = [(line_group(capture.line.code), message)]
    if correction:
        messages += [
            (station_group(capture.station_id), message),
            (capture_group(capture.id), message),
        ]
    transaction.on_commit(lambda: _send(messages))
