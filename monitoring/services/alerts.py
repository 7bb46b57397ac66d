"""Alerts: opened after a signal's status holds for `open_after` evaluations, closed after
`close_after` ok ones (no flapping), and told three ways on each change: live to supervisors'
browsers (websocket group `monitoring`), a signed JSON webhook per line (retried by Celery with
backoff, every attempt in the delivery log) and email through Django's email backend."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from core.live_events import events_send_on_commit
from core.queueing import task_send_on_commit
from monitoring import selectors
from monitoring.models import Alert, AlertSeverity, DeliveryStatus, WebhookDelivery
from vision.drift_charts import alert_step
from vision.drift_statistics import Status

logger = logging.getLogger(__name__)

MONITORING_GROUP = "monitoring"
SIGNATURE_HEADER = "X-Inspection-Signature"


def _step_status(status: str, rules: Any, is_open: bool) -> str:
    """What counts for the hysteresis: `drifted` always; `warning` only when the line's rules
    alert on warnings (otherwise a warning neither opens an alert nor closes an open one)."""
    if status == Status.WARNING and not rules.alert_on_warning:
        return Status.INSUFFICIENT_DATA if is_open else Status.OK
    return status


def alert_advance(
    *, line: Any, signal: str, result: Any, previous: dict | None, rules: Any, now: datetime
) -> dict:
    """Step one signal's alert state with this evaluation; open, escalate or close its alert.
    Returns the new state to store."""
    enabled = not rules.signals or signal in rules.signals
    is_open = bool((previous or {}).get("is_open"))
    status = _step_status(result.status, rules, is_open) if enabled else Status.OK
    step = alert_step(
        previous, status, open_after=max(1, rules.open_after), close_after=max(1, rules.close_after)
    )
    if step.event == "opened":
        alert = Alert.objects.create(
            line=line,
            signal=signal,
            severity=AlertSeverity(str(step.state.level)),
            opened_at=now,
            summary=result.summary[:300],
            evidence=result.to_dict(),
        )
        _announce(alert, "opened", rules)
    elif step.event in ("escalated", "closed"):
        alert = Alert.objects.filter(line=line, signal=signal, is_open=True).first()
        if alert is not None:
            if step.event == "escalated":
                alert.severity = AlertSeverity(str(step.state.level))
                alert.summary = result.summary[:300]
                alert.evidence = result.to_dict()
            else:
                alert.is_open = False
                alert.closed_at = now
            alert.save()
            _announce(alert, step.event, rules)
    return step.state.to_dict()


def alert_payload(alert: Alert, event: str | None = None) -> dict:
    return {
        **({"event": event} if event else {}),
        "id": alert.pk,
        "line": alert.line.code,
        "signal": alert.signal,
        "severity": alert.severity,
        "status": "open" if alert.is_open else "closed",
        "opened_at": alert.opened_at.isoformat(),
        "closed_at": alert.closed_at.isoformat() if alert.closed_at else None,
        "summary": alert.summary,
        "url": f"/monitor/{alert.line.code}/",
    }


def _announce(alert: Alert, event: str, rules: Any) -> None:
    payload = alert_payload(alert, event)
    events_send_on_commit([(MONITORING_GROUP, {"type": "alert.changed", "alert": payload})])
    if rules.webhook_url:
        delivery = WebhookDelivery.objects.create(
            alert=alert, event=event, url=rules.webhook_url, payload=payload
        )
        task_send_on_commit("monitoring.webhook_deliver", delivery.pk)
    if rules.email_recipients:
        transaction.on_commit(lambda: _email(payload, list(rules.email_recipients)))


def _email(payload: dict, recipients: list[str]) -> None:
    subject = f"[inspection] {payload['line']} {payload['signal']} {payload['event']}"
    body = (
        f"{payload['summary']}\n\nSeverity: {payload['severity']}; alert {payload['status']}.\n"
        f"See {settings.PUBLIC_URL.rstrip('/')}{payload['url']}\n"
    )
    try:
        send_mail(subject, body, None, recipients)
    except Exception:  # mail is a courtesy: the alert is stored and shown either way
        logger.exception("could not email the alert to %s", recipients)


def webhook_signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`, as the receiver recomputes it with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookFailed(Exception):
    """The receiver did not take the delivery (Celery retries with backoff)."""


def webhook_deliver(*, delivery_id: int, final_attempt: bool = False) -> WebhookDelivery | None:
    """POST one delivery; records the attempt. Raises WebhookFailed so the task retries."""
    delivery = WebhookDelivery.objects.select_related("alert__line").filter(pk=delivery_id).first()
    if delivery is None or delivery.status == DeliveryStatus.DELIVERED:
        return delivery
    secret = selectors.line_rules(line=delivery.alert.line).webhook_secret  # as they are now
    body = json.dumps(delivery.payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "X-Inspection-Event": delivery.event}
    if secret:
        headers[SIGNATURE_HEADER] = webhook_signature(secret, body)
    delivery.attempts += 1
    try:
        response = httpx.post(delivery.url, content=body, headers=headers, timeout=10)
        delivery.response_status = response.status_code
        ok = 200 <= response.status_code < 300
        delivery.last_error = "" if ok else f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        ok = False
        delivery.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    if ok:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = timezone.now()
    elif final_attempt:
        delivery.status = DeliveryStatus.FAILED
    delivery.save()
    if not ok and not final_attempt:
        raise WebhookFailed(delivery.last_error)
    return delivery
