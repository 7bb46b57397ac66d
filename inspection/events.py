"""Channel-layer events about captures and decisions, sent only after the transaction commits.

Groups: `line.<code>` (inspector feeds), `station.<id>` (a station's verdicts) and
`capture.<hex id>` (a station long-polling one capture).
"""

from typing import Any

from core.live_events import events_send_on_commit


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


def capture_created_on_commit(*, capture: Any, decision: Any) -> None:
    payload = capture_payload(capture, decision)
    messages = [(line_group(capture.line.code), {"type": "capture.created", "capture": payload})]
    if decision.status == "decided":
        messages.append(
            (station_group(capture.station_id), {"type": "decision.made", "capture": payload})
        )
    events_send_on_commit(messages)


def decision_made_on_commit(*, decision: Any, capture: Any) -> None:
    payload = capture_payload(capture, decision)
    message = {"type": "decision.made", "capture": payload}
    messages = [
        (line_group(capture.line.code), message),
        (station_group(capture.station_id), message),
        (capture_group(capture.id), message),
    ]
    events_send_on_commit(messages)


def line_changed_on_commit(*, line: Any, changes: dict) -> None:
    message = {"type": "line.changed", "line": line.code, "changes": changes}
    events_send_on_commit([(line_group(line.code), message)])


def capture_claimed_on_commit(*, capture: Any, decision: Any) -> None:
    """Other inspectors' browsers drop the capture from their queue."""
    message = {
        "type": "capture.claimed",
        "capture": str(capture.id),
        "line": capture.line.code,
        "claimed_by": decision.claimed_by_id,
        "claim_expires_at": decision.claim_expires_at.isoformat(),
    }
    events_send_on_commit([(line_group(capture.line.code), message)])


def capture_released_on_commit(*, capture: Any, decision: Any) -> None:
    """The capture is free again: browsers re-add it (the row's fields are in the payload)."""
    message = {"type": "capture.released", "capture": capture_payload(capture, decision)}
    events_send_on_commit([(line_group(capture.line.code), message)])


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
    events_send_on_commit(messages)


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
    events_send_on_commit(messages)


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
    events_send_on_commit(messages)
