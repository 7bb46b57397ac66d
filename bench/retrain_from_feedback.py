"""Does retraining on the line's feedback beat production? The registry note's figure, as JSON.

    python bench/retrain_from_feedback.py --json

1. Production: the demo's first model (`seed_demo`: synthetic phones, 1.5 minutes).
2. The line's lighting changes (warmer, brighter); inspectors label what they see the way the
   inspector page records it: a verdict, and a box around each defect they mark (no masks).
3. Candidate: trained on the demo's synthetic phones plus that feedback.
4. Both on the same benchmark: phones under the old and the new lighting, never trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vision.datasets import Item  # noqa: E402
from vision.evaluation import evaluate  # noqa: E402
from vision.inference import Predictor  # noqa: E402
from vision.metrics import auroc  # noqa: E402
from vision.synth import Lighting, synth_items  # noqa: E402
from vision.train import TrainConfig, train  # noqa: E402

SIZE = (1024, 576)
NEW_LIGHTING = Lighting(brightness=1.35, temperature=4200.0, direction=60.0)
KEYS = ("auroc", "average_precision", "precision", "recall", "f1", "flagged_recall")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def inspector_feedback(count: int, seed: int) -> list[Item]:
    """Phones under the new lighting, labelled as inspectors do: verdict plus boxes."""
    phones = synth_items(count, seed=seed, size=SIZE, lighting=NEW_LIGHTING)
    return [
        Item(label=p.label, image=p.image, defect_type=p.defect_type, boxes=p.boxes, group=p.group)
        for p in phones
    ]


def measure(model_path: Path, old: list[Item], new: list[Item]) -> dict:
    predictor = Predictor.from_artifact(model_path)
    report = evaluate(predictor, old + new)
    labels = np.array([1 if row["label"] == "defect" else 0 for row in report.items])
    scores = np.array([row["score"] for row in report.items])
    half = len(old)
    return {
        **{key: report.metrics[key] for key in KEYS},
        "auroc_old_lighting": auroc(labels[:half], scores[:half]),
        "auroc_new_lighting": auroc(labels[half:], scores[half:]),
        "confusion_matrix": report.metrics["confusion_matrix"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-images", type=int, default=240)
    parser.add_argument("--feedback", type=int, default=160)
    parser.add_argument("--production-minutes", type=float, default=2.0)
    parser.add_argument("--candidate-minutes", type=float, default=3.0)
    parser.add_argument("--benchmark", type=int, default=120, help="phones per lighting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="retrain-"))

    demo = synth_items(args.demo_images, seed=0, size=SIZE)
    _log(f"production: {len(demo)} synthetic phones, {args.production_minutes} min")
    production = train(demo, config=TrainConfig(minutes=args.production_minutes, seed=0))
    production.save(out / "production.pt")

    feedback = inspector_feedback(args.feedback, seed=77)
    _log(f"candidate: + {len(feedback)} inspector-labelled phones, {args.candidate_minutes} min")
    started = time.perf_counter()
    candidate = train(demo + feedback, config=TrainConfig(minutes=args.candidate_minutes, seed=1))
    candidate_s = time.perf_counter() - started
    candidate.save(out / "candidate.pt")

    old = synth_items(args.benchmark, seed=9001, size=SIZE)
    new = synth_items(args.benchmark, seed=9002, size=SIZE, lighting=NEW_LIGHTING)
    results = {
        "benchmark": f"{args.benchmark} phones at the old lighting + {args.benchmark} at the new",
        "production": {
            "train_data": f"synth:{args.demo_images}",
            "train_seconds": production.metadata["training_seconds"],
            **measure(out / "production.pt", old, new),
        },
        "candidate": {
            "train_data": f"synth:{args.demo_images} + {args.feedback} inspector-labelled",
            "train_seconds": round(candidate_s, 1),
            **measure(out / "candidate.pt", old, new),
        },
        "threads": args.threads,
    }
    print(json.dumps(results, indent=2, default=float) if args.json else results)


if __name__ == "__main__":
    main()
