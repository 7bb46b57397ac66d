"""Writes for the registry: registering artifacts (numbered versions with lineage) and setting
a line's deployment directly (commands, the demo); rollouts go through services.rollout."""

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from core import blobs
from core.errors import ApplicationError
from models_registry import selectors
from models_registry.models import (
    Deployment,
    DeploymentRole,
    ModelStatus,
    ModelVersion,
    RolloutAction,
    RolloutEvent,
)
from models_registry.services.edge import edge_export_request
from vision.artifacts import ArtifactError, read_metadata


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        return read_metadata(path)
    except (ArtifactError, OSError) as exc:
        raise ApplicationError(
            f"{path} is not a model artifact: {exc}", code="bad_artifact", status=400
        ) from exc


def git_commit() -> str:
    """The commit of the code that trains (lineage); CODE_VERSION wins when set (images)."""
    configured = getattr(settings, "CODE_VERSION", "")
    if configured:
        return configured
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()[:40]


@transaction.atomic
def model_version_register(
    *,
    path: Path | str,
    name: str = "",
    user: Any = None,
    metadata: dict | None = None,
    parent: ModelVersion | None = None,
    dataset_version: Any = None,
    training_data: str = "",
    code_version: str | None = None,
    notes: str = "",
) -> ModelVersion:
    """Copy an artifact into MODELS_ROOT (named by its sha256) and record it as the next
    version of `name`, with its lineage. Idempotent (same file, same version)."""
    source = Path(path)
    if not source.is_file():
        raise ApplicationError(f"No artifact at {source}", code="not_found", status=404)
    sha256 = _file_sha256(source)
    existing = ModelVersion.objects.filter(sha256=sha256).first()
    if existing:
        return existing
    artifact_metadata = {**_read_metadata(source), **(metadata or {})}
    relative = blobs.blob_copy_file(source, f"models/{sha256}.pt", store=blobs.MODELS)
    name = name or source.stem
    # Numbers per name; the lock keeps two registrations of one name from taking the same one.
    latest = (
        ModelVersion.objects.select_for_update()
        .filter(name=name)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
    )
    version = ModelVersion.objects.create(
        name=name,
        version=(latest or 0) + 1,
        artifact=str(relative),
        sha256=sha256,
        metadata=artifact_metadata,
        metrics=artifact_metadata.get("metrics", {}),
        parent=parent,
        training_data=training_data,
        code_version=git_commit() if code_version is None else code_version,
        notes=notes,
        created_by=user if getattr(user, "pk", None) else None,
        dataset_version=dataset_version,
    )
    # The stations' ONNX copy, made off this path once the registration commits.
    edge_export_request(model_version=version)
    return version


@transaction.atomic
def deployment_set(
    *,
    line: Any,
    model_version: ModelVersion,
    role: str,
    canary_percent: float = 0.0,
    user: Any = None,
) -> Deployment:
    """Make `model_version` the line's model for `role` (replacing the previous one), without
    the gate: for commands and the demo. Audited like every rollout transition."""
    if role not in DeploymentRole.values:
        raise ApplicationError(f"Unknown role {role!r}; use one of {', '.join(DeploymentRole)}")
    if role == DeploymentRole.CANARY and not 0 <= canary_percent <= 100:
        raise ApplicationError("canary_percent must be between 0 and 100")
    transaction.on_commit(lambda: selectors.forget_line_serving_models(line.pk))
    previous = Deployment.objects.filter(line=line, role=role).values_list(
        "model_version_id", flat=True
    )
    previous_id = previous.first()
    deployment, _ = Deployment.objects.update_or_create(
        line=line,
        role=role,
        defaults={
            "model_version": model_version,
            "canary_percent": canary_percent if role == DeploymentRole.CANARY else 0.0,
            "deployed_by": user if getattr(user, "pk", None) else None,
        },
    )
    if previous_id != model_version.pk:
        RolloutEvent.objects.create(
            line=line,
            action=_DIRECT_ACTIONS[role],
            model_version=model_version,
            previous_model_version_id=previous_id if role == DeploymentRole.PRODUCTION else None,
            percent=deployment.canary_percent if role == DeploymentRole.CANARY else None,
            reason="set directly (command or demo), without the gate",
            user=user if getattr(user, "pk", None) else None,
        )
    model_version_status_refresh(version_ids=[model_version.pk, previous_id])
    return deployment


_DIRECT_ACTIONS = {
    DeploymentRole.PRODUCTION: RolloutAction.PROMOTE,
    DeploymentRole.SHADOW: RolloutAction.SHADOW_START,
    DeploymentRole.CANARY: RolloutAction.CANARY_START,
}


@transaction.atomic
def deployment_remove(*, line: Any, role: str) -> None:
    ids = list(
        Deployment.objects.filter(line=line, role=role).values_list("model_version_id", flat=True)
    )
    Deployment.objects.filter(line=line, role=role).delete()
    model_version_status_refresh(version_ids=ids)
    transaction.on_commit(lambda: selectors.forget_line_serving_models(line.pk))


_STATUS_BY_ROLE = (
    (DeploymentRole.PRODUCTION, ModelStatus.PRODUCTION),
    (DeploymentRole.CANARY, ModelStatus.CANARY),
    (DeploymentRole.SHADOW, ModelStatus.SHADOW),
)


def model_version_status_refresh(*, version_ids: list[int | None]) -> None:
    """A version's status is the most exposed role it holds on any line; one that served in
    production and no longer serves anywhere is archived, any other is a candidate."""
    for version in ModelVersion.objects.filter(pk__in=[pk for pk in version_ids if pk]):
        roles = set(version.deployments.values_list("role", flat=True))
        status = next((status for role, status in _STATUS_BY_ROLE if role in roles), None)
        if status is None:
            was_production = version.status in (ModelStatus.PRODUCTION, ModelStatus.ARCHIVED)
            status = ModelStatus.ARCHIVED if was_production else ModelStatus.CANDIDATE
        if status != version.status:
            version.status = status
            version.save(update_fields=["status"])
