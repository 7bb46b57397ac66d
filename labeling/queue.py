"""The labeler's queue: how valuable a task is (active learning), and which task comes next.

Disagreements (an inspector overriding the model, a shadow model disagreeing) teach the
model most, then scores near the decision boundary (uncertain), then the rest. Within one
kind, the closer the model's score is to 0.5, the sooner.
"""

from __future__ import annotations

# Base value per source: a whole band each, so the score only orders within a band.
SOURCE_VALUE = {
    "override": 300.0,
    "shadow": 300.0,
    "uncertain": 200.0,
    "audit": 100.0,
    "manual": 100.0,
    "import": 0.0,
}


def task_priority(*, source: str, model_score: float | None) -> float:
    """Higher is labeled sooner. Uncertainty 1.0 at score 0.5, 0.0 at 0 or 1."""
    base = SOURCE_VALUE.get(source, 0.0)
    if model_score is None:
        return base + 50.0  # no model output: as uncertain as it gets
    uncertainty = 1.0 - abs(float(model_score) - 0.5) * 2.0
    return base + round(100.0 * max(0.0, min(1.0, uncertainty)), 3)
