"""Channel-layer events about captures and decisions, sent only after the transaction commits.

Groups: `line.<code>` (inspector feeds), `station.<id>` (a station's verdicts) and
`capture.<hex id>` (a station long-polling one capture).
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
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
    }


async def _send_all(messages: list[tuple[str, dict]]) -> None:
    layer = get_channel_layer()
    for group, message in messages:
        await layer.group_send(group, message)


def _send(messages: list[tuple[str, dict]]) -> None:
    # A broken channel layer must never fail the request that already committed.
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
