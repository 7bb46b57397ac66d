"""Evaluations: a model version measured on a benchmark in a Celery worker (metrics, slices for
error analysis, the worst misses with overlay thumbnails), always next to the line's production
model on the same benchmark so the page and the gate compare like with like."""

import logging
import shutil
import traceback
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from core import blobs
from labeling import selectors as labeling_selectors
from models_registry import benchmarks
from models_registry.models import Deployment, Evaluation, JobStatus, ModelVersion
from models_registry.services.jobs import (
    JobReporter,
    job_claim,
    job_create,
    job_finish,
    worker_identity,
)
from models_registry.serving import artifact_path
from vision.evaluation import evaluate
from vision.inference import Predictor
from vision.train import data_hash

logger = logging.getLogger(__name__)

WORST_SHOWN = 6
SLICE_NAMES = ("line", "defect_type", "defect_size", "lighting")


def evaluation_overlay_name(evaluation: Evaluation, overlay: str) -> str:
    """Where one of an evaluation's kept overlays is stored (in the MODELS store)."""
    return f"evaluations/{evaluation.pk}/{overlay}"


@transaction.atomic
def evaluation_request(
    *, model_version: ModelVersion, benchmark: str, user: Any = None, force: bool = False
) -> Evaluation:
    """Queue an evaluation, or return the one already done or under way on that benchmark."""
    key = benchmarks.parse(benchmark).key
    if not force:
        existing = (
            Evaluation.objects.filter(model_version=model_version, benchmark=key)
            .exclude(status__in=(JobStatus.FAILED, JobStatus.CANCELLED))
            .first()
        )
        if existing:
            return existing
    return job_create(
        Evaluation,
        task="models_registry.evaluation_run_execute",
        user=user,
        model_version=model_version,
        benchmark=key,
        benchmark_label=benchmarks.parse(key).label,
    )


def evaluation_request_with_production(
    *, model_version: ModelVersion, benchmark: str, line: Any = None, user: Any = None
) -> list[Evaluation]:
    """Evaluate the version and the production model it is compared with (the line's, else its
    parent) on the same benchmark."""
    evaluations = [evaluation_request(model_version=model_version, benchmark=benchmark, user=user)]
    reference = None
    if line is not None:
        production = Deployment.objects.filter(line=line, role="production").first()
        reference = production.model_version if production else None
    reference = reference or model_version.parent
    if reference is not None and reference.pk != model_version.pk:
        evaluations.append(
            evaluation_request(model_version=reference, benchmark=benchmark, user=user)
        )
    return evaluations


def _size_bucket(mask: np.ndarray | None, label: str) -> str:
    if label != "defect":
        return "no defect"
    if mask is None:
        return "unknown"
    share = float(mask.mean())
    if share < 0.001:
        return "small (<0.1% of the image)"
    if share < 0.01:
        return "medium (0.1-1%)"
    return "large (>1%)"


def _lighting_bucket(image: np.ndarray) -> str:
    luminance = float(image.mean())
    if luminance < 60:
        return "dark"
    if luminance > 150:
        return "bright"
    return "normal"


def _item_lines(benchmark_key: str, items: list) -> dict[str, str]:
    """The line each item of a dataset benchmark came from, by the item's group."""
    benchmark = benchmarks.parse(benchmark_key)
    if benchmark.kind != "dataset":
        return {}
    groups = {item.group for item in items if item.group}
    return labeling_selectors.dataset_item_line_codes(
        dataset_version=benchmark.dataset_version_id, groups=groups
    )


def _slice_rows(entries: list[dict], fail_threshold: float) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        groups.setdefault(entry["value"], []).append(entry)
    rows = []
    for value, members in sorted(groups.items()):
        defects = [m for m in members if m["label"] == "defect"]
        oks = [m for m in members if m["label"] != "defect"]
        caught = sum(1 for m in defects if m["score"] >= fail_threshold)
        false_fail = sum(1 for m in oks if m["score"] >= fail_threshold)
        rows.append(
            {
                "value": value,
                "n": len(members),
                "defects": len(defects),
                "ok": len(oks),
                "recall": round(caught / len(defects), 4) if defects else None,
                "false_negatives": len(defects) - caught,
                "false_positive_rate": round(false_fail / len(oks), 4) if oks else None,
                "false_positives": false_fail,
                "accuracy": round((caught + len(oks) - false_fail) / len(members), 4),
            }
        )
    return rows


def evaluation_slices(
    items: list, rows: list[dict], fail_threshold: float, *, lines: dict[str, str] | None = None
) -> dict[str, list]:
    """Error analysis: recall and false positives by line (`lines`: group -> line code),
    defect type, defect size and lighting."""
    lines = lines or {}
    per_slice: dict[str, list[dict]] = {name: [] for name in SLICE_NAMES}
    for item, row in zip(items, rows, strict=True):
        image = item.load_image()
        mask = item.load_mask() if item.label == "defect" else None
        base = {"label": item.label, "score": row["score"]}
        values = {
            "line": lines.get(item.group) or ("synthetic" if item.image is not None else "files"),
            "defect_type": item.defect_type or ("none" if item.label == "ok" else "defect"),
            "defect_size": _size_bucket(mask, item.label),
            "lighting": _lighting_bucket(image),
        }
        for name, value in values.items():
            per_slice[name].append({**base, "value": value})
    return {name: _slice_rows(entries, fail_threshold) for name, entries in per_slice.items()}


def _worst(rows: list[dict], fail_threshold: float) -> dict[str, list[dict]]:
    """The defects scored lowest under the fail threshold; the clean phones scored highest."""
    misses = sorted(
        (r for r in rows if r["label"] == "defect" and r["score"] < fail_threshold),
        key=lambda r: r["score"],
    )
    false_alarms = sorted(
        (r for r in rows if r["label"] != "defect" and r["score"] >= fail_threshold),
        key=lambda r: -r["score"],
    )

    def keep(row: dict) -> dict:
        return {
            k: row.get(k)
            for k in ("item", "label", "defect_type", "score", "verdict", "overlay", "regions")
        }

    return {
        "false_negatives": [keep(r) for r in misses[:WORST_SHOWN]],
        "false_positives": [keep(r) for r in false_alarms[:WORST_SHOWN]],
        "false_negative_count": len(misses),
        "false_positive_count": len(false_alarms),
    }


def evaluation_execute(*, evaluation_id: int, hostname: str = "") -> Evaluation | None:
    """Measure the version on its benchmark. Idempotent: only a queued evaluation runs."""
    evaluation = job_claim(Evaluation, evaluation_id, worker_id=worker_identity(hostname))
    if evaluation is None:
        return None
    reporter = JobReporter(evaluation)
    scratch = blobs.blob_scratch(f"evaluation-{evaluation.pk}")
    try:
        version = evaluation.model_version
        predictor = Predictor.from_artifact(
            artifact_path(version.artifact, version.sha256),
            threads=settings.TRAINING_THREADS or None,
            expected_sha256=version.sha256,
            device=settings.SERVING_DEVICE,  # a GPU worker evaluates on its GPU
        )
        items = benchmarks.items(evaluation.benchmark)
        reporter.log(f"{version} on {evaluation.benchmark_label}: {len(items)} images")
        report = evaluate(
            predictor,
            items,
            overlays_dir=scratch,
            progress=lambda done, total: reporter.update(progress=0.95 * done / total),
        )
        fail_threshold = predictor.fail_threshold
        slices = evaluation_slices(
            items,
            report.items,
            fail_threshold,
            lines=_item_lines(evaluation.benchmark, items),
        )
        worst = _worst(report.items, fail_threshold)
        # Keep the overlays people look at, drop the rest.
        for group in ("false_negatives", "false_positives"):
            for row in worst[group]:
                if row.get("overlay"):
                    blobs.blob_copy_file(
                        scratch / row["overlay"],
                        evaluation_overlay_name(evaluation, row["overlay"]),
                        store=blobs.MODELS,
                    )
        shutil.rmtree(scratch, ignore_errors=True)
        metrics = {
            k: (round(v, 5) if isinstance(v, float) else v) for k, v in report.metrics.items()
        }
        reporter.log(
            f"done: AUROC {metrics.get('auroc')}, F1 {metrics.get('f1')}, "
            f"recall {metrics.get('recall')}"
        )
        reporter.close()
        job_finish(
            evaluation,
            JobStatus.SUCCEEDED,
            log=reporter.log_text,
            metrics=metrics,
            slices=slices,
            worst=worst,
            items_hash=data_hash(items),
        )
    except Exception as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        reporter.log(traceback.format_exc())
        reporter.close()
        job_finish(
            evaluation,
            JobStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            log=reporter.log_text,
        )
    finally:
        reporter.close()
    evaluation.refresh_from_db()
    return evaluation
