"""The Prometheus metrics counted as things happen (captures, verdicts, inference times).

Services call `capture_recorded` and `human_verdict_recorded` as the last step of the
transaction that writes the rows (a failure before that step counts nothing; a commit that
fails after it, rarer still, is counted anyway). The counts are per process: with several web
workers (`python -m config.serve --workers N`), set PROMETHEUS_MULTIPROC_DIR to an empty folder
shared by the workers (prometheus-client's multiprocess mode) so that /metrics adds them up.
The figures read from the database at scrape time (queues, jobs, drift) live in
config/metrics.py and are right across processes anyway.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram

# Audit statuses once an inspector has reviewed the model's decision.
AUDIT_OUTCOMES = ("confirmed", "overridden")

CAPTURES = Counter(
    "inspection_captures",
    "Captures received from stations, by line and how they were answered "
    "(decided by the model at once, or pending for an inspector).",
    ["line", "status"],
)
VERDICTS = Counter(
    "inspection_verdicts",
    "Verdicts given, by line, verdict and who gave it (the model at ingest, the station's edge "
    "model during an outage, an inspector on a pending capture; an undone verdict and the one "
    "replacing it count twice).",
    ["line", "verdict", "decided_by"],
)
AUDIT_REVIEWS = Counter(
    "inspection_audit_reviews",
    "Inspectors' reviews of model decisions sampled for audit (full automation), by outcome.",
    ["line", "outcome"],
)
HUMAN_DECISION_SECONDS = Histogram(
    "inspection_human_decision_seconds",
    "From a pending capture's arrival to an inspector's verdict.",
    ["line"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
INFERENCE_SECONDS = Histogram(
    "inspection_inference_seconds",
    "Model inference time per prediction on the capture path (decoded image to prediction).",
    ["line", "role"],
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5),
)


def capture_recorded(*, line_code: str, decision: Any, predictions: Iterable[Any]) -> None:
    """A capture, its decision and its predictions were written."""
    CAPTURES.labels(line=line_code, status=str(decision.status)).inc()
    if decision.decided_by in ("model", "edge"):
        VERDICTS.labels(
            line=line_code, verdict=str(decision.verdict), decided_by=str(decision.decided_by)
        ).inc()
    for prediction in predictions:
        INFERENCE_SECONDS.labels(line=line_code, role=str(prediction.role)).observe(
            prediction.latency_ms / 1000
        )


def human_verdict_recorded(*, line_code: str, decision: Any, received_at: datetime) -> None:
    """An inspector gave the verdict of a pending capture, or reviewed an audit sample."""
    if decision.audit_status in AUDIT_OUTCOMES:
        AUDIT_REVIEWS.labels(line=line_code, outcome=str(decision.audit_status)).inc()
        return
    VERDICTS.labels(line=line_code, verdict=str(decision.verdict), decided_by="human").inc()
    if decision.decided_at is not None:
        seconds = max((decision.decided_at - received_at).total_seconds(), 0.0)
        HUMAN_DECISION_SECONDS.labels(line=line_code).observe(seconds)
