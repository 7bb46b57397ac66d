"""A line's data reference: what its images normally look like. By default the production
model's training data (statistics the model carries in its metadata); for a model without
them, its first captures on the line; or a window of captures a supervisor pins as normal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from core.errors import ApplicationError
from core.models import ProductionLine
from monitoring import selectors
from monitoring.models import LineMonitorState, MonitoringAction, Reference, ReferenceKind
from monitoring.selectors import STAT_FEATURES, CaptureRow

THUMBNAILS = 8
MAX_PINNED = 2000
MIN_PINNED = 30


def _stats_of(rows: list[CaptureRow]) -> dict[str, list[float]]:
    return {
        name: [float(r.image_stats[name]) for r in rows if name in r.image_stats]
        for name in STAT_FEATURES
    }


def _embeddings_of(rows: list[CaptureRow], model_version_id: int | None) -> list[list[float]]:
    return [r.embedding for r in rows if r.embedding and r.model_version_id == model_version_id]


def _thumbnails(rows: list[CaptureRow]) -> list[str]:
    if not rows:
        return []
    step = max(1, len(rows) // THUMBNAILS)
    return [str(r.id) for r in rows[::step][:THUMBNAILS]]


@transaction.atomic
def _activate(line: ProductionLine, *, persist: bool = True, **fields: Any) -> Reference:
    if not persist:  # a read (an API GET) sees the reference the next run will store
        return Reference(line=line, is_active=True, **fields)
    # One activation at a time per line: two runs (beat and the command) that both found no
    # reference would otherwise both make one.
    ProductionLine.objects.select_for_update().filter(pk=line.pk).first()
    current = Reference.objects.filter(line=line, is_active=True).first()
    model = fields.get("model_version")
    model_id = model.pk if model is not None else fields.get("model_version_id")
    if (
        current is not None
        and fields["kind"] != ReferenceKind.PINNED
        and current.kind == fields["kind"]
        and current.model_version_id == model_id
    ):
        return current  # the other run made it meanwhile
    Reference.objects.filter(line=line, is_active=True).update(is_active=False)
    return Reference.objects.create(line=line, is_active=True, **fields)


def _from_training_data(
    line: ProductionLine, deployment: Any, size: int, persist: bool
) -> Reference | None:
    reference = (deployment.model_version.metadata or {}).get("reference") or {}
    image_stats = {k: v for k, v in (reference.get("image_stats") or {}).items() if v}
    if not image_stats:
        return None
    # Thumbnails of "normal" come from the model's first captures on the line.
    first = selectors.baseline_captures(line=line, deployment=deployment, limit=size)
    return _activate(
        line,
        persist=persist,
        kind=ReferenceKind.TRAINING_DATA,
        model_version=deployment.model_version,
        image_stats=image_stats,
        embeddings=reference.get("embeddings") or [],
        capture_ids=_thumbnails(first),
        count=int(reference.get("count") or max(len(v) for v in image_stats.values())),
        description=f"{reference.get('source', 'training images')} of "
        f"{deployment.model_version.name} v{deployment.model_version.version}",
    )


def _from_first_captures(
    line: ProductionLine, deployment: Any, size: int, persist: bool
) -> Reference | None:
    rows = selectors.baseline_captures(line=line, deployment=deployment, limit=size)
    if len(rows) < size:
        return None
    return _activate(
        line,
        persist=persist,
        kind=ReferenceKind.FIRST_CAPTURES,
        model_version=deployment.model_version,
        image_stats=_stats_of(rows),
        embeddings=_embeddings_of(rows, deployment.model_version_id),
        capture_ids=_thumbnails(rows),
        count=len(rows),
        window_start=rows[0].received_at,
        window_end=rows[-1].received_at,
        description=f"the first {len(rows)} captures of "
        f"{deployment.model_version.name} v{deployment.model_version.version} on {line.code}",
    )


def reference_for_line(
    *, line: ProductionLine, size: int = 500, persist: bool = True
) -> Reference | None:
    """The line's active reference, made when missing or when production changed model (a
    pinned reference stays until a supervisor pins another). With persist=False nothing is
    written: the reference a run would make is returned unsaved."""
    current = selectors.active_reference(line=line)
    deployment = selectors.production_deployment(line=line)
    if current is not None and (
        current.kind == ReferenceKind.PINNED
        or deployment is None
        or current.model_version_id == deployment.model_version_id
    ):
        return current
    if deployment is None:
        return current
    made = _from_training_data(line, deployment, size, persist) or _from_first_captures(
        line, deployment, size, persist
    )
    return made or current


def reference_pin(
    *,
    line: ProductionLine,
    user: Any,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
) -> Reference:
    """ "These captures are normal": the window becomes the line's reference (audited)."""
    if last is not None:
        if not MIN_PINNED <= last <= MAX_PINNED:
            raise ApplicationError(
                f"last must be between {MIN_PINNED} and {MAX_PINNED} captures.", code="invalid"
            )
        rows = selectors.recent_captures(line=line, limit=last)
    elif since is not None:
        if until is not None and until <= since:
            raise ApplicationError("The window must end after it starts.", code="invalid_range")
        rows = selectors.captures_between(line=line, since=since, until=until, limit=MAX_PINNED)
    else:
        raise ApplicationError("Give `last` (captures) or `since` (and `until`).", code="invalid")
    if len(rows) < MIN_PINNED:
        raise ApplicationError(
            f"The window holds {len(rows)} captures; a reference needs at least {MIN_PINNED}.",
            code="too_few",
        )
    deployment = selectors.production_deployment(line=line)
    model_version_id = deployment.model_version_id if deployment else None
    with transaction.atomic():
        reference = _activate(
            line,
            kind=ReferenceKind.PINNED,
            model_version_id=model_version_id,
            image_stats=_stats_of(rows),
            embeddings=_embeddings_of(rows, model_version_id),
            capture_ids=_thumbnails(rows),
            count=len(rows),
            window_start=rows[0].received_at,
            window_end=rows[-1].received_at,
            description=f"{len(rows)} captures pinned as normal",
            created_by=user if getattr(user, "pk", None) else None,
        )
        # The stored report used the old setting: the next read or run computes anew.
        LineMonitorState.objects.filter(line=line).update(through=None)
        MonitoringAction.objects.create(
            line=line,
            kind=MonitoringAction.Kind.PIN_REFERENCE,
            user=user if getattr(user, "pk", None) else None,
            detail={
                "reference": reference.pk,
                "count": len(rows),
                "window_start": rows[0].received_at.isoformat(),
                "window_end": rows[-1].received_at.isoformat(),
            },
        )
    return reference
