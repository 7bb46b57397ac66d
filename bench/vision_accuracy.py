"""Accuracy and training-time figures of the vision model, as JSON.

    python bench/vision_accuracy.py --json [--minutes 4.5] [--tiles-minutes M]
        [--only synthetic,tiles,tiles_good_only,phones] [--seeds 0,1,2]
        [--set TRAINCONFIG_FIELD=VALUE ...]

Every model is trained on the default path a user takes (`vision.train` with the settings
chosen from the data, as `python -m vision train` does); no benchmark keeps its own settings.

- synthetic: train from scratch on synthetic 1024x576 phones (data generation counted in the
  time), evaluate on phones from a seed never used in training: image AUROC, and region recall
  on 300 scratch-only phones (another unused seed).
- tiles: train on 70% of shared/datasets/magnetic_tile_defect, evaluate on the other 30%,
  split off first with a seed (TILES_SPLIT_SEED) no tuning ever read the 30% of: image AUROC,
  AP, pixel IoU and region recall, once per training seed.
- tiles_good_only: the same split, trained on the clean tiles of the 70% only (a new line with
  no labelled defect), evaluated on the same unseen 30% with its real defects.
- phones: the synthetic-trained model on the real phones of shared/datasets/msd_phone_screen_subset
  (all defective): how many it flags per defect type; overlays are written for people to check
  that the regions land on the scratch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vision.datasets import read_manifest, split_items  # noqa: E402
from vision.evaluation import evaluate  # noqa: E402
from vision.inference import Predictor  # noqa: E402
from vision.synth import synth_items  # noqa: E402
from vision.train import TrainConfig, train  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
HELD_OUT_SEED = 424_242
# Ground tiles have a fixed texture direction: no quarter turns. They come at several scales
# (some were downscaled): zoom augmentation. Their validation AUROC is noisy (65 images), so the
# whole budget (--tiles-minutes) is trained rather than stopping after 20 flat epochs or 100.
# The final test part of the tiles: split off with this seed before any tuning; tuning used
# only the other 70% (split again into its own training and evaluation parts).
TILES_SPLIT_SEED = 4242
# Tuning reads only the 70%: `--tiles-part tuning` trains on 76% of it and evaluates on the
# rest, so a setting is chosen without looking at the final 30%; `--tuning-split S` draws
# that split with seed S (several give a figure less tied to one small evaluation part).
TILES_TUNING_SEED = 1


def _overrides(pairs: list[str]) -> dict:
    """`--set key=value` pairs as TrainConfig fields, values parsed as JSON where they can be."""
    fields = set(TrainConfig.__dataclass_fields__) - {"model"}
    result = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {pair}: not a TrainConfig field ({', '.join(sorted(fields))})")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _epoch_printer(event: dict) -> None:
    if event["event"] == "epoch":
        _log(
            f"  epoch {event['epoch']} val_loss {event['val_loss']:.4f} "
            f"val_auroc {event.get('val_auroc')} {event['elapsed_s']:.0f}s"
        )


def synthetic(
    minutes: float, out: Path, train_count: int, eval_count: int, overrides: dict
) -> dict:
    started = time.monotonic()
    items = synth_items(train_count, seed=0, size=(1024, 576))
    generated_s = time.monotonic() - started
    _log(f"synthetic: {train_count} phones generated in {generated_s:.0f}s; training")
    budget = max(0.5, minutes - generated_s / 60)
    config = TrainConfig(**{"minutes": budget, "seed": 0, **overrides})
    result = train(items, config=config, progress=_epoch_printer)
    model_path = out / "synthetic.pt"
    result.save(model_path)
    total_s = time.monotonic() - started
    predictor = Predictor.from_artifact(model_path)
    held_out = synth_items(eval_count, seed=HELD_OUT_SEED, size=(1024, 576))
    report = evaluate(predictor, held_out).metrics
    scratches = synth_items(
        eval_count, seed=HELD_OUT_SEED + 1, size=(1024, 576), defect_types=["scratch"]
    )
    scratch_report = evaluate(predictor, scratches, overlays_dir=out / "synthetic_overlays").metrics
    return {
        "model": str(model_path),
        "train_images": train_count,
        "train_seconds_including_data": round(total_s, 1),
        "stopped_because": result.stopped_because,
        "held_out": report,
        "scratch_phones": eval_count,
        "scratch_region_recall": scratch_report["region_recall"],
        "scratch_flagged_recall": scratch_report["flagged_recall"],
        "scratch_regions_off_defect": scratch_report["regions_off_defect"],
    }


def tiles(
    minutes: float, out: Path, overrides: dict, seeds: list[int], good_only: bool, part: str
) -> dict:
    items = read_manifest(DATASETS / "magnetic_tile_defect" / "manifest.csv")
    seen, unseen = split_items(items, fractions=(0.7, 0.3), seed=TILES_SPLIT_SEED)
    if part.startswith("tuning"):
        split_seed = int(part.partition(":")[2] or TILES_TUNING_SEED)
        seen, unseen = split_items(seen, fractions=(0.76, 0.24), seed=split_seed)
    if good_only:
        seen = [item for item in seen if item.label == "ok"]
    name = "tiles_good_only" if good_only else "tiles"
    _log(f"{name} ({part} part): training on {len(seen)}, evaluating on {len(unseen)}")
    runs = []
    for seed in seeds:
        started = time.monotonic()
        config = TrainConfig(**{"minutes": minutes, "seed": seed, **overrides})
        result = train(seen, config=config, progress=_epoch_printer)
        model_path = out / f"{name}-seed{seed}.pt"
        result.save(model_path)
        train_s = time.monotonic() - started
        predictor = Predictor.from_artifact(model_path)
        overlays = out / f"{name}_overlays-seed{seed}"
        report = evaluate(predictor, unseen, overlays_dir=overlays).metrics
        chosen = {c["setting"]: c["value"] for c in result.metadata["recipe"]["choices"]}
        _log(f"  seed {seed}: unseen AUROC {report['auroc']:.4f}, settings {chosen}")
        runs.append(
            {
                "seed": seed,
                "model": str(model_path),
                "kind": result.metadata["kind"],
                "settings": chosen,
                "epochs": result.metadata["metrics"]["epochs"],
                "precision": result.metadata["precision"],
                "train_seconds": round(train_s, 1),
                "unseen": report,
            }
        )
    aurocs = [run["unseen"]["auroc"] for run in runs]
    return {
        "part": part,
        "train_images": len(seen),
        "unseen_images": len(unseen),
        "minutes": minutes,
        "auroc_by_seed": aurocs,
        "auroc_min": min(aurocs),
        "auroc_mean": sum(aurocs) / len(aurocs),
        "pixel_iou_by_seed": [run["unseen"].get("pixel_iou") for run in runs],
        "runs": runs,
    }


def phones(model_path: Path, out: Path) -> dict:
    items = read_manifest(DATASETS / "msd_phone_screen_subset" / "manifest.csv")
    predictor = Predictor.from_artifact(model_path)
    report = evaluate(predictor, items, overlays_dir=out / "phones_overlays")
    return {
        "images": len(items),
        "flagged_by_defect_type": report.metrics["flagged_by_defect_type"],
        "scores": {row["item"].split("/")[-1]: round(row["score"], 3) for row in report.items},
        "overlays": str(out / "phones_overlays"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=4.5, help="training budget per model")
    parser.add_argument("--only", default="synthetic,tiles,tiles_good_only,phones")
    parser.add_argument("--seeds", default="0", help="training seeds of the tiles, e.g. 0,1,2")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"))
    parser.add_argument("--train-count", type=int, default=360)
    parser.add_argument("--eval-count", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiles-minutes", type=float, help="tiles budget (default: --minutes)")
    parser.add_argument(
        "--tiles-part",
        choices=("final", "tuning"),
        default="final",
        help="evaluate on the final unseen 30%% (once, for the figures) or, when tuning, on a "
        "part of the other 70%%",
    )
    parser.add_argument(
        "--tuning-split", type=int, default=TILES_TUNING_SEED, help="seed of the tuning split"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a TrainConfig field"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only.split(","))
    overrides = _overrides(args.set)
    results: dict = {"threads": args.threads, "overrides": overrides}
    if "synthetic" in wanted:
        results["synthetic"] = synthetic(
            args.minutes, out, args.train_count, args.eval_count, overrides
        )
    seeds = [int(seed) for seed in args.seeds.split(",")]
    for name in ("tiles", "tiles_good_only"):
        if name in wanted:
            results[name] = tiles(
                args.tiles_minutes or args.minutes,
                out,
                overrides,
                seeds,
                name != "tiles",
                args.tiles_part if args.tiles_part == "final" else f"tuning:{args.tuning_split}",
            )
    if "phones" in wanted:
        results["phones"] = phones(out / "synthetic.pt", out)
    print(json.dumps(results, indent=2, default=float) if args.json else results)


if __name__ == "__main__":
    main()
