"""Inspectors' claims on pending captures: the one locking lookup every human verdict starts
from, and the lease that keeps two inspectors off one phone."""

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from inspection import events, selectors
from inspection.models import AUDIT_FINISHED, AuditStatus, Decision, DecisionStatus


def decision_for_update(capture_id: Any) -> Decision:
    """The capture's decision, locked for this transaction (404 when there is none)."""
    decision = (
        Decision.objects.select_for_update()
        .select_related("capture__line", "capture__station")
        .filter(capture_id=capture_id)
        .first()
    )
    if decision is None:
        raise ApplicationError("No such capture.", code="not_found", status=404)
    return decision


def refuse_if_claimed_by_other(decision: Decision, user: Any, now: datetime) -> None:
    if decision.claimed_by_id != user.pk and selectors.claim_is_active(decision, now=now):
        raise ApplicationError(
            "Another inspector is judging this capture.", code="claimed", status=409
        )


def awaits_human(decision: Decision) -> bool:
    """Pending a verdict, or a model verdict pending its audit review."""
    return decision.status == DecisionStatus.PENDING or decision.audit_status == AuditStatus.PENDING


def refuse_if_not_open(decision: Decision) -> None:
    if decision.audit_status in AUDIT_FINISHED:
        raise ApplicationError(
            "This audit sample is already reviewed.", code="already_audited", status=409
        )
    if not awaits_human(decision):
        raise ApplicationError(
            "This capture is already decided.", code="already_decided", status=409
        )


@transaction.atomic
def capture_claim(*, capture: Any, user: Any) -> Decision:
    """An inspector takes a pending capture (or a pending audit sample) for a lease, renewed
    while it stays open.

    Two inspectors never judge the same phone; an inspector who walks away loses the capture
    when the lease runs out (selectors.claim_lease_seconds).
    """
    decision = decision_for_update(getattr(capture, "pk", capture))
    refuse_if_not_open(decision)
    now = timezone.now()
    refuse_if_claimed_by_other(decision, user, now)
    renewing = decision.claimed_by_id == user.pk and selectors.claim_is_active(decision, now=now)
    decision.claimed_by = user
    if not renewing:
        decision.claimed_at = now  # when this inspector opened it: seconds per decision
    decision.claim_expires_at = now + timedelta(seconds=selectors.claim_lease_seconds())
    decision.save(update_fields=["claimed_by", "claimed_at", "claim_expires_at"])
    if not renewing:
        events.capture_claimed_on_commit(capture=decision.capture, decision=decision)
    return decision


def decision_claim(*, capture_id: Any, user: Any) -> Decision:
    """The older name of `capture_claim`, by capture id."""
    return capture_claim(capture=capture_id, user=user)


@transaction.atomic
def capture_release(*, capture: Any, user: Any) -> Decision:
    """The inspector lets go of a capture undecided; it returns to everyone's queue."""
    decision = decision_for_update(getattr(capture, "pk", capture))
    if awaits_human(decision) and decision.claimed_by_id == user.pk:
        decision.claimed_by = None
        decision.claimed_at = None
        decision.claim_expires_at = None
        decision.save(update_fields=["claimed_by", "claimed_at", "claim_expires_at"])
        events.capture_released_on_commit(capture=decision.capture, decision=decision)
    return decision
