"""Writes for the registry: registering artifacts and deploying them to lines."""

import hashlib
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from config.errors import ApplicationError
from models_registry import selectors
from models_registry.models import Deployment, DeploymentRole, ModelVersion


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_metadata(path: Path) -> dict[str, Any]:
    from vision.artifacts import ArtifactError, read_metadata

    try:
        return read_metadata(path)
    except (ArtifactError, OSError) as exc:
        raise ApplicationError(
            f"{path} is not a model artifact: {exc}", code="bad_artifact", status=400
        ) from exc


@transaction.atomic
def model_version_register(
    *, path: Path | str, name: str = "", user: Any = None, metadata: dict | None = None
) -> ModelVersion:
    """Copy an artifact into MODELS_ROOT (named by its sha256) and record it. Idempotent."""
    source = Path(path)
    if not source.is_file():
        raise ApplicationError(f"No artifact at {source}", code="not_found", status=404)
    sha256 = _file_sha256(source)
    existing = ModelVersion.objects.filter(sha256=sha256).first()
    if existing:
        return existing
    artifact_metadata = {**_read_metadata(source), **(metadata or {})}
    relative = Path("models") / f"{sha256}.pt"
    target = Path(settings.MODELS_ROOT) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        partial = target.with_suffix(".part")
        shutil.copyfile(source, partial)
        partial.replace(target)
    return ModelVersion.objects.create(
        name=name or source.stem,
        artifact=str(relative),
        sha256=sha256,
        metadata=artifact_metadata,
        created_by=user if getattr(user, "pk", None) else None,
    )


@transaction.atomic
def deployment_set(
    *,
    line: Any,
    model_version: ModelVersion,
    role: str,
    canary_percent: float = 0.0,
    user: Any = None,
) -> Deployment:
    """Make `model_version` the line's model for `role` (replacing the previous one)."""
    if role not in DeploymentRole.values:
        raise ApplicationError(f"Unknown role {role!r}; use one of {', '.join(DeploymentRole)}")
    if role == DeploymentRole.CANARY and not 0 <= canary_percent <= 100:
        raise ApplicationError("canary_percent must be between 0 and 100")
    transaction.on_commit(lambda: selectors.forget_line_serving_models(line.pk))
    deployment, _ = Deployment.objects.update_or_create(
        line=line,
        role=role,
        defaults={
            "model_version": model_version,
            "canary_percent": canary_percent if role == DeploymentRole.CANARY else 0.0,
            "deployed_by": user if getattr(user, "pk", None) else None,
        },
    )
    return deployment


@transaction.atomic
def deployment_remove(*, line: Any, role: str) -> None:
    Deployment.objects.filter(line=line, role=role).delete()
    transaction.on_commit(lambda: selectors.forget_line_serving_models(line.pk))
