"""Human verdicts: an inspector's verdict on a pending capture, an audit review of a model
decision in `full`, and undo within a few seconds; the station hears each at once."""

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core import metrics
from core.errors import ApplicationError
from core.models import Verdict
from inspection import events, selectors
from inspection.choices import DecisionReason
from inspection.models import AUDIT_FINISHED, AuditStatus, DecidedBy, Decision, DecisionStatus
from inspection.services.claims import (
    decision_for_update,
    refuse_if_claimed_by_other,
    refuse_if_not_open,
)
from labeling import services as labeling_services
from labeling.regions import defect_type_clean

# How long the undo key works after a human verdict (the station already has the verdict:
# undo re-opens the capture and the station gets a correction).
UNDO_SECONDS = 10


def _refuse_if_undo_expired(at: datetime, now: datetime) -> None:
    if at < now - timedelta(seconds=UNDO_SECONDS):
        raise ApplicationError(
            f"Too late to undo: a verdict can be undone for {UNDO_SECONDS} seconds.",
            code="undo_expired",
            status=409,
        )


def _audit_undo(decision: Decision, user: Any) -> Decision:
    """Take back one's own audit review: the sample is pending review again, for the same
    inspector; after an override the model's verdict is back in force (another correction)."""
    if decision.audited_by_id != user.pk:
        raise ApplicationError(
            "Only the inspector who gave a verdict can undo it.", code="not_yours", status=409
        )
    now = timezone.now()
    _refuse_if_undo_expired(decision.audited_at, now)
    overridden = decision.audit_status == AuditStatus.OVERRIDDEN
    capture = decision.capture
    if overridden:
        # The model's verdict was the other one (verdicts are pass or fail), given at ingest,
        # or at the station by its edge model during an outage.
        decision.verdict = Verdict.PASS if decision.verdict == Verdict.FAIL else Verdict.FAIL
        edge = decision.reason == DecisionReason.EDGE
        decision.decided_by = DecidedBy.EDGE if edge else DecidedBy.MODEL
        decision.decided_by_user = None
        decision.decided_at = decision.edge_decided_at if edge else capture.received_at
        labeling_services.task_withdraw_from_inspection(capture=capture, reasons=("override",))
    decision.audit_status = AuditStatus.PENDING
    decision.audit_verdict = ""
    decision.audited_by = None
    decision.audited_at = None
    decision.overrode_model = None
    decision.regions = []
    decision.note = ""
    decision.claimed_by = user
    decision.claim_expires_at = now + timedelta(seconds=selectors.claim_lease_seconds())
    decision.save()
    events.audit_reopened_on_commit(capture=capture, decision=decision, correction=overridden)
    return decision


@transaction.atomic
def verdict_undo(*, capture: Any, user: Any) -> Decision:
    """Take back one's own human verdict within UNDO_SECONDS.

    The station heard the verdict at once (a line does not wait on an undo window), so undo
    re-opens the capture for the same inspector and sends the station a correction; the label
    tasks the verdict created are withdrawn while still open.
    """
    decision = decision_for_update(getattr(capture, "pk", capture))
    if decision.audit_status in AUDIT_FINISHED:
        return _audit_undo(decision, user)
    if decision.status != DecisionStatus.DECIDED or decision.decided_by != DecidedBy.HUMAN:
        raise ApplicationError(
            "Only a human verdict can be undone.", code="not_undoable", status=409
        )
    if decision.decided_by_user_id != user.pk:
        raise ApplicationError(
            "Only the inspector who gave a verdict can undo it.", code="not_yours", status=409
        )
    now = timezone.now()
    _refuse_if_undo_expired(decision.decided_at, now)
    decision.status = DecisionStatus.PENDING
    decision.verdict = ""
    decision.decided_by = ""
    decision.decided_by_user = None
    decision.decided_at = None
    decision.regions = []
    decision.note = ""
    decision.overrode_model = None
    decision.claimed_by = user
    decision.claim_expires_at = now + timedelta(seconds=selectors.claim_lease_seconds())
    decision.save()
    labeling_services.task_withdraw_from_inspection(
        capture=decision.capture, reasons=("override", "uncertain")
    )
    events.decision_reverted_on_commit(capture=decision.capture, decision=decision)
    return decision


def _regions_checked(decision: Decision, regions: list[dict] | None) -> list[dict] | None:
    """The inspector's regions with their defect types checked against the line's taxonomy
    (a region the inspector rejected keeps the model's type): a 400 names the known ones."""
    if not regions:
        return regions
    accepted = selectors.defect_type_names_accepted(capture=decision.capture)
    checked = []
    for region in regions:
        if not region.get("rejected"):
            region = {
                **region,
                "defect_type": defect_type_clean(region.get("defect_type"), accepted=accepted),
            }
        checked.append(region)
    return checked


@transaction.atomic
def verdict_record(
    *,
    capture_id: Any,
    user: Any,
    verdict: str,
    regions: list[dict] | None = None,
    note: str = "",
) -> Decision:
    """A human's final verdict on a pending capture; the waiting station learns it at once.

    On a pending audit sample (the model already decided) it records the audit review instead.
    """
    if verdict not in Verdict.values:
        raise ApplicationError("verdict must be 'pass' or 'fail'.", code="invalid_verdict")
    decision = decision_for_update(capture_id)
    refuse_if_not_open(decision)
    refuse_if_claimed_by_other(decision, user, timezone.now())
    regions = _regions_checked(decision, regions)
    if decision.audit_status == AuditStatus.PENDING:
        return _audit_record(decision, user=user, verdict=verdict, regions=regions, note=note)
    decision.status = DecisionStatus.DECIDED
    decision.verdict = verdict
    decision.decided_by = DecidedBy.HUMAN
    decision.decided_by_user = user
    decision.decided_at = timezone.now()
    decision.regions = regions or []
    decision.note = note
    if decision.model_verdict in (Verdict.PASS, Verdict.FAIL):
        decision.overrode_model = decision.model_verdict != verdict
    decision.save()

    capture = decision.capture
    capture.decision = decision
    if decision.overrode_model:
        labeling_services.task_create_from_inspection(capture=capture, reason="override")
    elif decision.reason == DecisionReason.UNCERTAIN:
        labeling_services.task_create_from_inspection(capture=capture, reason="uncertain")
    labeling_services.task_create_if_shadow_disagrees(capture=capture)
    events.decision_made_on_commit(decision=decision, capture=capture)
    metrics.human_verdict_recorded(
        line_code=capture.line.code, decision=decision, received_at=capture.received_at
    )
    return decision


def _audit_record(
    decision: Decision, *, user: Any, verdict: str, regions: list[dict] | None, note: str
) -> Decision:
    """An inspector's review of a model decision in `full` (or of the edge model's, made at the
    station during an outage): agreeing confirms it; disagreeing
    overrides it. The station acted on the model's verdict long ago, so an override puts the
    inspector's verdict in force and sends the station a `correction` (as an undo does), and
    the capture goes to labeling with the inspector's boxes."""
    now = timezone.now()
    overridden = verdict != decision.verdict
    decision.audit_status = AuditStatus.OVERRIDDEN if overridden else AuditStatus.CONFIRMED
    decision.audit_verdict = verdict
    decision.audited_by = user
    decision.audited_at = now
    decision.overrode_model = overridden
    decision.regions = regions or []
    decision.note = note
    if overridden:
        decision.verdict = verdict
        decision.decided_by = DecidedBy.HUMAN
        decision.decided_by_user = user
        decision.decided_at = now
    decision.save()
    capture = decision.capture
    capture.decision = decision
    if overridden:
        labeling_services.task_create_from_inspection(capture=capture, reason="override")
    events.audit_recorded_on_commit(capture=capture, decision=decision)
    metrics.human_verdict_recorded(
        line_code=capture.line.code, decision=decision, received_at=capture.received_at
    )
    return decision
