"""A simulated line for monitoring tests: captures with image statistics, the acting model's
score and embedding, and decisions (some judged by inspectors), written in bulk."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from inspection.models import Capture, Decision, Prediction
from tests.factories import DeploymentFactory, ModelVersionFactory, StationFactory

NORMAL = {"brightness": (120.0, 4.0), "contrast": (45.0, 2.0), "sharpness": (300.0, 30.0),
          "r_g": (1.0, 0.02), "b_g": (1.0, 0.02), "saturation": (0.2, 0.02)}  # fmt: skip
EMBED_DIM = 16


def reference_metadata(seed: int = 1, n: int = 300) -> dict:
    """What a trained model carries: statistics and embeddings of clean training images."""
    rng = np.random.default_rng(seed)
    return {
        "reference": {
            "image_stats": {
                name: [round(float(v), 5) for v in rng.normal(mean, sd, n)]
                for name, (mean, sd) in NORMAL.items()
            },
            "embeddings": rng.normal(0, 1, (n, EMBED_DIM)).round(4).tolist(),
            "count": n,
            "source": "validation images",
        }
    }


class SimulatedLine:
    def __init__(self, line, *, seed: int = 0, metadata: dict | None = None):
        self.line = line
        self.station = StationFactory(line=line)
        self.model_version = ModelVersionFactory(metadata=metadata or {})
        self.deployment = DeploymentFactory(line=line, model_version=self.model_version)
        self.deployment.deployed_at = timezone.now() - timedelta(days=2)
        self.deployment.save()
        self.rng = np.random.default_rng(seed)
        self.clock = self.deployment.deployed_at + timedelta(minutes=1)

    def captures(
        self,
        count: int,
        *,
        brightness_factor: float = 1.0,
        embedding_shift: float = 0.0,
        override_rate: float = 0.02,
        judged_share: float = 0.5,
        fail_rate: float = 0.1,
        seconds_apart: float = 1.0,
        image: str = "captures/none.jpg",
    ) -> None:
        captures, predictions, decisions = [], [], []
        for _ in range(count):
            self.clock += timedelta(seconds=seconds_apart)
            stats = {
                name: round(float(self.rng.normal(mean, sd)), 5)
                for name, (mean, sd) in NORMAL.items()
            }
            stats["brightness"] = round(stats["brightness"] * brightness_factor, 5)
            capture = Capture(
                line=self.line, station=self.station, idempotency_key=str(self.rng.random()),
                image=image, image_sha256="0" * 64, image_bytes=1, image_format="jpg",
                width=64, height=48, image_stats=stats, received_at=self.clock,
            )  # fmt: skip
            failing = self.rng.random() < fail_rate
            score = float(np.clip(self.rng.normal(0.85 if failing else 0.1, 0.08), 0, 1))
            embedding = self.rng.normal(0, 1, EMBED_DIM)
            embedding[:3] += embedding_shift
            prediction = Prediction(
                capture=capture, model_version=self.model_version, role="production",
                score=score, verdict="fail" if score >= 0.7 else "pass",
                embedding=embedding.round(4).tolist(), latency_ms=1.0,
            )  # fmt: skip
            judged = self.rng.random() < judged_share
            reading = "fail" if score >= 0.7 else "pass" if score < 0.3 else "uncertain"
            overrode = judged and self.rng.random() < override_rate
            verdict = ("pass" if reading == "fail" else "fail") if overrode else reading
            decisions.append(
                Decision(
                    capture=capture,
                    line=self.line,
                    status="decided",
                    verdict=verdict if verdict != "uncertain" else "pass",
                    decided_by="human" if judged else "model",
                    decided_at=self.clock,
                    reason="assisted" if judged else "confident",
                    model_shown=True,
                    acting_prediction=prediction,
                    model_verdict=reading,
                    overrode_model=overrode if judged else None,
                )  # fmt: skip
            )
            captures.append(capture)
            predictions.append(prediction)
        Capture.objects.bulk_create(captures)
        Prediction.objects.bulk_create(predictions)
        Decision.objects.bulk_create(decisions)


@pytest.fixture
def simulated_line(db):
    from tests.factories import ProductionLineFactory

    def make(code: str = "L1", **kwargs) -> SimulatedLine:
        return SimulatedLine(
            ProductionLineFactory(code=code, automation_level="assisted"), **kwargs
        )

    return make
