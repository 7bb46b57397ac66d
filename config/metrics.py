"""`/metrics` for Prometheus: what this process counted, and figures read from the database.

Counted as it happens (core/metrics.py): captures, verdicts, audit reviews, human decision
time, inference time; plus prometheus-client's process metrics. Read at scrape time with a few
small grouped queries (right whichever process answers): queue depth and oldest pending age
per line, registry jobs by status, each line's drift status per signal.

With METRICS_TOKEN set the scraper sends `Authorization: Bearer <token>` (401 without one, 403
with another); METRICS_ALLOWED_NETWORKS (CIDRs) also restricts who may scrape.
"""

import hmac
import ipaddress
import os
import time
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

import core.metrics  # noqa: F401  (defines the counters and histograms this view exposes)
from core.models import ProductionLine
from inspection.models import Decision
from inspection.selectors import AWAITS_HUMAN
from models_registry import serving
from models_registry.models import BatchPrediction, Evaluation, JobStatus, TrainingRun
from monitoring.models import LineMonitorState, Signal, SignalStatus

JOB_KINDS = {
    "training_run": TrainingRun,
    "evaluation": Evaluation,
    "batch_prediction": BatchPrediction,
}


def _queue_metrics(now) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "inspection_queue_depth",
        "Captures waiting for an inspector (pending verdicts and audit reviews), per line.",
        labels=["line"],
    )
    oldest = GaugeMetricFamily(
        "inspection_queue_oldest_pending_seconds",
        "Age of the oldest capture waiting for an inspector, per line (0 when none waits).",
        labels=["line"],
    )
    rows = {
        row["capture__line__code"]: row
        for row in Decision.objects.filter(AWAITS_HUMAN)
        .values("capture__line__code")
        .annotate(depth=Count("pk"), oldest=Min("capture__received_at"))
        .order_by()
    }
    for code in ProductionLine.objects.order_by("code").values_list("code", flat=True):
        row = rows.get(code)
        depth.add_metric([code], row["depth"] if row else 0)
        age = (now - row["oldest"]).total_seconds() if row and row["oldest"] else 0.0
        oldest.add_metric([code], max(age, 0.0))
    yield depth
    yield oldest


def _job_metrics() -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "inspection_jobs",
        "Worker jobs (training runs, evaluations, batch predictions) by status.",
        labels=["kind", "status"],
    )
    for kind, model in JOB_KINDS.items():
        counts = dict(model.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for status in JobStatus.values:
            jobs.add_metric([kind, status], counts.get(status, 0))
    yield jobs


def _drift_metrics() -> Iterator[Metric]:
    status_metric = GaugeMetricFamily(
        "inspection_drift_status",
        "Each line's monitoring status per signal, from its newest evaluation: 1 for the "
        "current status, 0 for the others.",
        labels=["line", "signal", "status"],
    )
    evaluated = GaugeMetricFamily(
        "inspection_drift_evaluated_timestamp_seconds",
        "When the monitoring job last evaluated the line (Unix time).",
        labels=["line"],
    )
    signals = list(Signal.values)
    paths = [f"last_report__signals__{signal}__status" for signal in signals]
    for code, evaluated_at, *statuses in LineMonitorState.objects.values_list(
        "line__code", "evaluated_at", *paths
    ).order_by("line__code"):
        if evaluated_at is not None:
            evaluated.add_metric([code], evaluated_at.timestamp())
        for signal, current in zip(signals, statuses, strict=True):
            if current is None:
                continue
            for status in SignalStatus.values:
                status_metric.add_metric([code, signal, status], 1 if current == status else 0)
    yield status_metric
    yield evaluated


class DatabaseCollector:
    """The figures read from the database when Prometheus scrapes."""

    def describe(self) -> list[Metric]:
        return []  # no query at registration

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily(
            "inspection_metrics_database_up",
            "1 when the database figures of this scrape could be read.",
        )
        metrics: list[Metric] = []
        try:
            now = timezone.now()
            metrics += _queue_metrics(now)
            metrics += _job_metrics()
            metrics += _drift_metrics()
        except Exception:  # the database is away: still answer with the process's own figures
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from metrics
        yield up
        yield GaugeMetricFamily(
            "inspection_metrics_database_seconds",
            "Time the database figures of this scrape took.",
            value=time.perf_counter() - started,
        )


class ServingCollector:
    """What the answering process knows of its loaded models."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "inspection_serving_model_load_errors",
            "Model versions this web process could not load (their lines' captures go to "
            "inspectors; /readyz names them).",
            value=len(serving.serving_errors()),
        )


def exposition() -> bytes:
    """The text Prometheus reads: this process's (or all workers') counters, then what is read
    now (the database figures, this process's serving errors)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    current = CollectorRegistry(auto_describe=False)
    current.register(DatabaseCollector())
    current.register(ServingCollector())
    return generate_latest(counted) + generate_latest(current)


def _refusal(request) -> JsonResponse | None:
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks:
        try:
            client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            client = None
        if client is None or not any(client in network for network in networks):
            return _error(403, "forbidden", "This address may not read the metrics.")
    token = settings.METRICS_TOKEN
    if not token:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        response = _error(401, "not_authenticated", "Send Authorization: Bearer <METRICS_TOKEN>.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return _error(403, "forbidden", "The metrics token is not valid.")
    return None


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@never_cache
@require_safe
def metrics(request):
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
