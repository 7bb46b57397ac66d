"""Figure for the registry note: a training run (as the worker runs it) timed, and its metrics
next to the production model's on the same benchmark.

    python bench/registry_training.py --production artifacts/models/<sha>.pt \
        --train synth:96 --minutes 1.5 --benchmark synthetic:48:1234:256x144 --json

`--train` is `synth:N[:SEED]` or a manifest CSV (e.g. a DatasetVersion exported by labeling:
synthetic phones plus the inspectors' reviewed feedback). Without `--production` only the new
model is measured. Runs without Django or a database (vision only).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vision.datasets import read_manifest  # noqa: E402
from vision.evaluation import evaluate  # noqa: E402
from vision.inference import Predictor  # noqa: E402
from vision.synth import synth_items  # noqa: E402
from vision.train import TrainConfig, train  # noqa: E402

KEYS = ("auroc", "average_precision", "precision", "recall", "f1", "confusion_matrix")


def items_from(spec: str, size: tuple[int, int]) -> list:
    if spec.startswith("synth:"):
        parts = spec.split(":")
        return synth_items(int(parts[1]), seed=int(parts[2]) if len(parts) > 2 else 0, size=size)
    return read_manifest(spec)


def benchmark_items(key: str) -> list:
    _, count, seed, size = key.split(":")
    width, height = (int(v) for v in size.split("x"))
    return synth_items(int(count), seed=int(seed), size=(width, height))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="synth:96")
    parser.add_argument("--size", default="256x144", help="synthetic training image size")
    parser.add_argument("--minutes", type=float, default=1.5)
    parser.add_argument("--benchmark", default="synthetic:48:1234:256x144")
    parser.add_argument("--production", help="artifact of the production model to compare")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    started = time.perf_counter()
    items = items_from(args.train, (width, height))
    result = train(items, config=TrainConfig(minutes=args.minutes, threads=args.threads))
    train_s = time.perf_counter() - started
    bench = benchmark_items(args.benchmark)
    out = {
        "train_data": args.train,
        "train_images": len(items),
        "train_seconds": round(train_s, 1),
        "stopped_because": result.stopped_because,
        "benchmark": args.benchmark,
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "candidate.pt"
        result.save(path)
        report = evaluate(Predictor.from_artifact(path, threads=args.threads), bench)
        out["candidate"] = {k: report.metrics.get(k) for k in KEYS}
    if args.production:
        report = evaluate(Predictor.from_artifact(args.production, threads=args.threads), bench)
        out["production"] = {k: report.metrics.get(k) for k in KEYS}
    print(json.dumps(out, indent=2 if not args.json else None))


if __name__ == "__main__":
    main()
