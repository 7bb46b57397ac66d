"""The edge model: each registered version is exported to ONNX (off the request path, on the
training queue), checked against the eager model on the same inputs (vision.export: the largest
difference of heatmap and score must stay within 1e-4), and stored beside its artifact, for
stations that run it themselves when the server cannot be reached
(`GET /api/v1/lines/{code}/model`)."""

import logging
import shutil
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from core import blobs
from core.errors import ApplicationError
from core.queueing import task_send_on_commit
from models_registry.models import DeploymentRole, ModelVersion
from models_registry.serving import artifact_path

logger = logging.getLogger(__name__)

EXPORT_TASK = "models_registry.edge_export_execute"
PENDING, READY, FAILED = "pending", "ready", "failed"
# A pending export older than this is taken as lost (its worker died) and queued again.
PENDING_RETRY_SECONDS = 600


def edge_export_request(*, model_version: ModelVersion) -> None:
    """Queue the export (after commit); a version already exported or under way is left."""
    state = model_version.edge_export or {}
    if state.get("status") in (READY, FAILED):
        return
    if state.get("status") == PENDING:
        since = datetime.fromisoformat(state["requested_at"])
        if (timezone.now() - since).total_seconds() < PENDING_RETRY_SECONDS:
            return
    ModelVersion.objects.filter(pk=model_version.pk).update(
        edge_export={"status": PENDING, "requested_at": timezone.now().isoformat()}
    )
    task_send_on_commit(EXPORT_TASK, model_version.pk)


def edge_export_execute(*, model_version_id: int) -> dict[str, Any] | None:
    """Export one version to ONNX and store it. Idempotent: a ready export is kept."""
    from vision.export import PARITY_TOLERANCE, ExportError, export_onnx  # torch, onnx: here

    version = ModelVersion.objects.filter(pk=model_version_id).first()
    if version is None:
        return None
    if (version.edge_export or {}).get("status") == READY:
        return version.edge_export
    scratch = blobs.blob_scratch(f"onnx-{version.pk}")
    try:
        out = scratch / "model.onnx"
        report = export_onnx(artifact_path(version.artifact, version.sha256), out)
        relative = blobs.blob_copy_file(out, f"edge/{report.sha256}.onnx", store=blobs.MODELS)
        state = {
            "status": READY,
            "artifact": relative,
            "sha256": report.sha256,
            "bytes": out.stat().st_size,
            "max_abs_diff": report.max_abs_diff,
            "tolerance": PARITY_TOLERANCE,
            "input_spec": report.input_spec,
            "exported_at": timezone.now().isoformat(),
        }
        logger.info(
            "exported %s to ONNX (%d bytes, parity %.1e)",
            version,
            state["bytes"],
            report.max_abs_diff,
        )
    except (ExportError, OSError, ValueError) as exc:
        logger.warning("ONNX export of %s failed: %s", version, exc)
        state = {
            "status": FAILED,
            "error": str(exc)[:1000],
            "exported_at": timezone.now().isoformat(),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(edge_export=state)
    return state


def line_edge_model(*, line: Any) -> tuple[ModelVersion, dict[str, Any]]:
    """The line's production version and its ready export; 404 without a production model,
    503 (Retry-After) while the export is being made, 404 when it could not be made."""
    deployment = (
        line.deployments.select_related("model_version")
        .filter(role=DeploymentRole.PRODUCTION)
        .first()
    )
    if deployment is None:
        raise ApplicationError(
            f"Line {line.code} has no production model.", code="no_production_model", status=404
        )
    version = deployment.model_version
    state = version.edge_export or {}
    if state.get("status") == READY:
        return version, state
    if state.get("status") == FAILED:
        raise ApplicationError(
            f"{version.name} v{version.version} has no edge model: its ONNX export failed "
            f"({state.get('error', 'unknown error')}).",
            code="no_edge_model",
            status=404,
        )
    edge_export_request(model_version=version)
    raise ApplicationError(
        f"The edge model of {version.name} v{version.version} is being exported; retry shortly.",
        code="edge_model_pending",
        status=503,
        headers={"Retry-After": "30"},
    )
