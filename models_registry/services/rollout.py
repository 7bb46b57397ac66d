"""Rollout of model versions on a line: shadow, canary (ramp, automatic rollback), promotion and
rollback to the previous production version. Every transition is audited (RolloutEvent); the
gate is checked before a version may decide; web processes pick changes up within the serving
cache's few seconds (selectors.line_serving_models)."""

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from models_registry import evidence, selectors
from models_registry.models import (
    Deployment,
    DeploymentRole,
    ModelVersion,
    RolloutAction,
    RolloutEvent,
)
from models_registry.services.registry import model_version_status_refresh

RAMP_STEPS = (5.0, 25.0, 50.0, 100.0)


def _user(user: Any) -> Any:
    return user if getattr(user, "pk", None) else None


def _lock_deployments(line: Any) -> dict[str, Deployment]:
    rows = Deployment.objects.select_for_update().filter(line=line).select_related("model_version")
    return {row.role: row for row in rows}


def _changed(line: Any, *version_ids: int | None) -> None:
    model_version_status_refresh(version_ids=list(version_ids))
    transaction.on_commit(lambda: selectors.forget_line_serving_models(line.pk))


def _audit(line: Any, action: str, model_version: Any, user: Any, **fields: Any) -> RolloutEvent:
    return RolloutEvent.objects.create(
        line=line, action=action, model_version=model_version, user=_user(user), **fields
    )


def _refuse(message: str, code: str) -> ApplicationError:
    return ApplicationError(message, code=code, status=409)


def _check_gate(model_version: ModelVersion, line: Any) -> None:
    gate = selectors.promotion_gate(model_version=model_version, line=line)
    if not gate.ok:
        raise ApplicationError(
            gate.reason, code="gate", status=409, extra={"gate": {"reason": gate.reason}}
        )


@transaction.atomic
def rollout_shadow_start(*, line: Any, model_version: ModelVersion, user: Any) -> Deployment:
    """Run `model_version` beside production on every capture; stored, never acted on."""
    deployments = _lock_deployments(line)
    for role in (DeploymentRole.PRODUCTION, DeploymentRole.CANARY):
        if role in deployments and deployments[role].model_version_id == model_version.pk:
            raise _refuse(f"{model_version} is already the {role} model on {line.code}.", "state")
    previous = deployments.get(DeploymentRole.SHADOW)
    if previous and previous.model_version_id == model_version.pk:
        raise _refuse(f"{model_version} is already in shadow on {line.code}.", "state")
    if previous:
        previous.delete()
    deployment = Deployment.objects.create(
        line=line, model_version=model_version, role=DeploymentRole.SHADOW, deployed_by=_user(user)
    )
    reason = f"replaces {previous.model_version}" if previous else ""
    _audit(line, RolloutAction.SHADOW_START, model_version, user, reason=reason)
    _changed(line, model_version.pk, previous.model_version_id if previous else None)
    return deployment


@transaction.atomic
def rollout_shadow_stop(*, line: Any, user: Any, reason: str = "") -> None:
    shadow = _lock_deployments(line).get(DeploymentRole.SHADOW)
    if shadow is None:
        raise _refuse(f"{line.code} has no shadow model.", "state")
    shadow.delete()
    _audit(line, RolloutAction.SHADOW_STOP, shadow.model_version, user, reason=reason)
    _changed(line, shadow.model_version_id)


@transaction.atomic
def rollout_canary_start(
    *,
    line: Any,
    model_version: ModelVersion,
    user: Any,
    percent: float = RAMP_STEPS[0],
    auto_ramp: bool = False,
    ramp_interval_minutes: int = 60,
    max_override_percent: float = 10.0,
    min_decisions: int = 20,
) -> Deployment:
    """Let `model_version` decide for a stable `percent` of the line's captures (by capture id)."""
    deployments = _lock_deployments(line)
    production = deployments.get(DeploymentRole.PRODUCTION)
    if production is None:
        raise _refuse(
            f"{line.code} has no production model to compare a canary with; promote directly.",
            "state",
        )
    if production.model_version_id == model_version.pk:
        raise _refuse(f"{model_version} is already production on {line.code}.", "state")
    canary = deployments.get(DeploymentRole.CANARY)
    if canary is not None:
        raise _refuse(
            f"{line.code} already has a canary ({canary.model_version}); promote it or roll it "
            f"back first.",
            "state",
        )
    if not 0 < percent <= 100:
        raise ApplicationError("percent must be above 0 and at most 100.", code="invalid_percent")
    if not 0 <= max_override_percent <= 100:
        raise ApplicationError(
            "max_override_percent must be between 0 and 100.", code="invalid_percent"
        )
    _check_gate(model_version, line)
    shadow = deployments.get(DeploymentRole.SHADOW)
    if shadow is not None and shadow.model_version_id == model_version.pk:
        shadow.delete()  # it decides now; the shadow slot is free for the next candidate
    deployment = Deployment.objects.create(
        line=line,
        model_version=model_version,
        role=DeploymentRole.CANARY,
        canary_percent=percent,
        deployed_by=_user(user),
        auto_ramp=auto_ramp,
        ramp_interval_minutes=ramp_interval_minutes,
        max_override_percent=max_override_percent,
        min_decisions=min_decisions,
        ramped_at=timezone.now(),
    )
    schedule = (
        f"automatic ramp every {ramp_interval_minutes} min" if auto_ramp else "ramped by hand"
    )
    _audit(
        line,
        RolloutAction.CANARY_START,
        model_version,
        user,
        percent=percent,
        reason=f"{schedule}; rolls back when the override rate passes {max_override_percent:g}%",
    )
    _changed(line, model_version.pk)
    return deployment


def next_ramp_step(percent: float) -> float | None:
    return next((step for step in RAMP_STEPS if step > percent), None)


@transaction.atomic
def rollout_canary_ramp(
    *,
    line: Any,
    user: Any,
    percent: float | None = None,
    automatic: bool = False,
    reason: str = "",
) -> Deployment:
    """Give the canary a larger share: the next step of 5 -> 25 -> 50 -> 100, or `percent`."""
    canary = _lock_deployments(line).get(DeploymentRole.CANARY)
    if canary is None:
        raise _refuse(f"{line.code} has no canary to ramp.", "state")
    target = percent if percent is not None else next_ramp_step(canary.canary_percent)
    if target is None:
        raise _refuse(
            f"The canary on {line.code} already decides 100% of captures; promote it.", "state"
        )
    if not canary.canary_percent < target <= 100:
        raise ApplicationError(
            f"A ramp goes up: from {canary.canary_percent:g}% to at most 100%.",
            code="invalid_percent",
        )
    _check_gate(canary.model_version, line)
    previous = canary.canary_percent
    canary.canary_percent = target
    canary.ramped_at = timezone.now()
    canary.save(update_fields=["canary_percent", "ramped_at"])
    _audit(
        line,
        RolloutAction.CANARY_RAMP,
        canary.model_version,
        user,
        percent=target,
        automatic=automatic,
        reason=reason or f"from {previous:g}%",
    )
    _changed(line)
    return canary


@transaction.atomic
def rollout_canary_rollback(
    *, line: Any, user: Any, reason: str = "", automatic: bool = False
) -> RolloutEvent:
    """Take the canary off the line: production decides every capture again."""
    canary = _lock_deployments(line).get(DeploymentRole.CANARY)
    if canary is None:
        raise _refuse(f"{line.code} has no canary to roll back.", "state")
    canary.delete()
    event = _audit(
        line,
        RolloutAction.CANARY_ROLLBACK,
        canary.model_version,
        user,
        percent=canary.canary_percent,
        automatic=automatic,
        reason=reason or "rolled back by hand",
    )
    _changed(line, canary.model_version_id)
    return event


@transaction.atomic
def rollout_promote(
    *,
    line: Any,
    model_version: ModelVersion,
    user: Any,
    automatic: bool = False,
    reason: str = "",
) -> Deployment:
    """Make `model_version` the line's production model (the gate must hold); the version it
    replaces is remembered for a one-click rollback."""
    deployments = _lock_deployments(line)
    production = deployments.get(DeploymentRole.PRODUCTION)
    if production is not None and production.model_version_id == model_version.pk:
        raise _refuse(f"{model_version} is already production on {line.code}.", "state")
    _check_gate(model_version, line)
    previous = production.model_version if production else None
    for role in (DeploymentRole.CANARY, DeploymentRole.SHADOW):
        row = deployments.get(role)
        if row is not None and row.model_version_id == model_version.pk:
            row.delete()
    if production is not None:
        production.delete()
    deployment = Deployment.objects.create(
        line=line,
        model_version=model_version,
        role=DeploymentRole.PRODUCTION,
        deployed_by=_user(user),
    )
    _audit(
        line,
        RolloutAction.PROMOTE,
        model_version,
        user,
        previous_model_version=previous,
        automatic=automatic,
        reason=reason,
    )
    _changed(line, model_version.pk, previous.pk if previous else None)
    return deployment


def rollback_target(*, line: Any) -> ModelVersion | None:
    """The version production replaced when the current one was promoted (None if unknown)."""
    production = Deployment.objects.filter(line=line, role=DeploymentRole.PRODUCTION).first()
    if production is None:
        return None
    promotion = (
        RolloutEvent.objects.filter(
            line=line, action=RolloutAction.PROMOTE, model_version_id=production.model_version_id
        )
        .select_related("previous_model_version")
        .first()
    )
    return promotion.previous_model_version if promotion else None


@transaction.atomic
def rollout_rollback(*, line: Any, user: Any, reason: str = "") -> Deployment:
    """One click: production goes back to the version it replaced. No gate: the way back is
    always open."""
    production = _lock_deployments(line).get(DeploymentRole.PRODUCTION)
    target = rollback_target(line=line)
    if production is None or target is None:
        raise _refuse(f"{line.code} has no previous production version to go back to.", "state")
    current = production.model_version
    production.delete()
    canary = Deployment.objects.filter(line=line, model_version=target).exclude(
        role=DeploymentRole.PRODUCTION
    )
    canary.delete()
    deployment = Deployment.objects.create(
        line=line, model_version=target, role=DeploymentRole.PRODUCTION, deployed_by=_user(user)
    )
    _audit(
        line,
        RolloutAction.ROLLBACK,
        target,
        user,
        previous_model_version=current,
        reason=reason or f"back from {current}",
    )
    _changed(line, target.pk, current.pk)
    return deployment


def canary_check(*, now: datetime | None = None) -> list[RolloutEvent]:
    """For every canary: roll it back when inspectors override it more often than its bound;
    otherwise, with automatic ramp, take the next step (then promote) once its interval passed
    and enough decisions were judged. Returns the events it caused."""
    now = now or timezone.now()
    events = []
    canaries = Deployment.objects.filter(role=DeploymentRole.CANARY).select_related(
        "line", "model_version"
    )
    for canary in canaries:
        record = evidence.canary_record(deployment=canary)
        figures = (
            f"override rate {record.override_percent}% ({record.overrides} of {record.compared} "
            f"decisions) against the {canary.max_override_percent:g}% bound"
        )
        enough = record.compared >= max(canary.min_decisions, 1)
        if enough and record.override_percent > canary.max_override_percent:
            events.append(
                rollout_canary_rollback(
                    line=canary.line,
                    user=None,
                    automatic=True,
                    reason=f"Automatic rollback: {figures}.",
                )
            )
            continue
        due = (canary.ramped_at or canary.deployed_at) + timedelta(
            minutes=canary.ramp_interval_minutes
        )
        if not (canary.auto_ramp and enough and now >= due):
            continue
        try:
            if next_ramp_step(canary.canary_percent) is None:
                rollout_promote(
                    line=canary.line,
                    model_version=canary.model_version,
                    user=None,
                    automatic=True,
                    reason=f"Automatic promotion after 100% canary: {figures}.",
                )
                events.append(RolloutEvent.objects.filter(line=canary.line).first())
            else:
                rollout_canary_ramp(
                    line=canary.line, user=None, automatic=True, reason=f"Automatic: {figures}."
                )
                events.append(RolloutEvent.objects.filter(line=canary.line).first())
        except ApplicationError:
            continue  # e.g. the gate closed after a new evaluation: stays where it is
    return events
