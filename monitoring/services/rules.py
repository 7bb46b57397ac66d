"""A line's monitoring rules (signals that alert, windows, hysteresis, webhook, email):
validated, and every change recorded (who, when, each field's old and new value)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import transaction

from core.errors import ApplicationError
from core.models import ProductionLine
from monitoring.models import LineMonitorState, MonitoringRules, MonitoringRulesChange, Signal

RANGES = {
    "data_window": (30, 5000),
    "decision_window": (30, 5000),
    "decision_reference_size": (30, 20000),
    "trend_window": (30, 20000),
    "reference_size": (30, 5000),
    "open_after": (1, 100),
    "close_after": (1, 100),
}
FIELDS = (
    *RANGES,
    "signals",
    "alert_on_warning",
    "webhook_url",
    "webhook_secret",
    "email_recipients",
)
SECRET_SHOWN = "(set)"


def _check(changes: dict[str, Any]) -> None:
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ApplicationError(f"Cannot change {', '.join(sorted(unknown))}.", code="invalid")
    for name, (low, high) in RANGES.items():
        if name in changes:
            value = changes[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ApplicationError(
                    f"{name} must be a whole number from {low} to {high}.", code="invalid"
                )
    if "signals" in changes:
        signals = changes["signals"]
        if not isinstance(signals, list) or not set(signals) <= set(Signal.values):
            raise ApplicationError(
                f"signals must be a list of {', '.join(Signal.values)} (empty: all).",
                code="invalid",
            )
    if changes.get("webhook_url"):
        try:
            URLValidator(schemes=["http", "https"])(changes["webhook_url"])
        except ValidationError:
            raise ApplicationError("webhook_url must be an http(s) URL.", code="invalid") from None
    if "email_recipients" in changes:
        recipients = changes["email_recipients"]
        if not isinstance(recipients, list) or len(recipients) > 20:
            raise ApplicationError("email_recipients must be a list of addresses.", code="invalid")
        for address in recipients:
            try:
                validate_email(address)
            except ValidationError:
                raise ApplicationError(
                    f"{address!r} is not an email address.", code="invalid"
                ) from None
    if len(changes.get("webhook_secret") or "") > 200:
        raise ApplicationError("webhook_secret is at most 200 characters.", code="invalid")


@transaction.atomic
def rules_update(*, line: ProductionLine, user: Any, **changes: Any) -> MonitoringRules:
    _check(changes)
    rules, _ = MonitoringRules.objects.select_for_update().get_or_create(line=line)
    merged_trend = changes.get("trend_window", rules.trend_window)
    if merged_trend < changes.get("data_window", rules.data_window):
        raise ApplicationError("trend_window cannot be shorter than data_window.", code="invalid")
    diff = {}
    for name, value in changes.items():
        old = getattr(rules, name)
        if old != value:
            secret = name == "webhook_secret"  # never written into the audit in clear
            diff[name] = {
                "old": SECRET_SHOWN if secret and old else old,
                "new": SECRET_SHOWN if secret and value else value,
            }
            setattr(rules, name, value)
    if diff:
        rules.save()
        # The stored report used the old setting: the next read or run computes anew.
        LineMonitorState.objects.filter(line=line).update(through=None)
        MonitoringRulesChange.objects.create(
            line=line, changed_by=user if getattr(user, "pk", None) else None, changes=diff
        )
    return rules
