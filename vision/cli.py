"""`python -m vision synth|train|evaluate|bench|export`: the package's command line."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vision.artifacts import ArtifactError
from vision.datasets import DatasetError, Item, read_folder, read_manifest
from vision.evaluation import evaluate
from vision.export import export_onnx, export_torchscript
from vision.images import decode_image, encode_jpeg
from vision.inference import Predictor
from vision.synth import Lighting, synth_items, synth_phone, write_dataset
from vision.train import TrainConfig, train

DEFAULT_SIZE = (1024, 576)
DEFAULT_EVAL_SEED = 1_000_003  # far from the training seeds, so `synth:N` evaluation is held out


class CommandError(Exception):
    """A problem the user can fix: printed without a traceback, exit status 2."""


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise CommandError(f"size must look like 1024x576, got {text!r}") from None
    if not (8 <= width <= 8192 and 8 <= height <= 8192):
        raise CommandError(f"size {text} is out of range (8..8192 per side)")
    return width, height


def load_data(spec: str, *, size: tuple[int, int], default_seed: int) -> list[Item]:
    """`synth:N[:SEED]`, a manifest CSV, or a folder of images."""
    if spec.startswith("synth:"):
        parts = spec.split(":")
        try:
            count = int(parts[1])
            seed = int(parts[2]) if len(parts) > 2 else default_seed
        except (IndexError, ValueError):
            raise CommandError(f"synthetic data is synth:COUNT[:SEED], got {spec!r}") from None
        if count < 2:
            raise CommandError("synth:COUNT needs at least 2 images")
        return synth_items(count, seed=seed, size=size)
    path = Path(spec)
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        return read_manifest(path)
    raise CommandError(f"{spec}: no such manifest or folder (or use synth:N)")


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, default=float) if args.json else text)


def _progress_printer(quiet: bool):
    def report(event: dict[str, Any]) -> None:
        if quiet:
            return
        if event["event"] == "epoch":
            auroc = event.get("val_auroc")
            print(
                f"epoch {event['epoch']:3d}  step {event['step']:5d}/{event['total_steps']}  "
                f"loss {event['train_loss']:.4f}  val_loss {event['val_loss']:.4f}  "
                f"val_auroc {auroc if auroc is None else round(auroc, 4)}  "
                f"{event['elapsed_s']:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        elif event["event"] == "loading":
            print(f"loading {event['items']} items", file=sys.stderr, flush=True)
        elif event["event"] == "recipe":
            print(f"a {event['kind']} model; settings:", file=sys.stderr, flush=True)
            for choice in event["choices"]:
                print(
                    f"  {choice['setting']} = {choice['value']}: {choice['reason']}",
                    file=sys.stderr,
                    flush=True,
                )

    return report


def command_synth(args: argparse.Namespace) -> None:
    lighting = Lighting.parse(args.lighting) if args.lighting else None
    started = time.perf_counter()
    manifest = write_dataset(
        Path(args.out),
        args.count,
        seed=args.seed,
        size=parse_size(args.size),
        defect_rate=args.defect_rate,
        lighting=lighting,
    )
    seconds = time.perf_counter() - started
    data = {"manifest": str(manifest), "count": args.count, "seconds": round(seconds, 2)}
    _emit(args, data, f"wrote {args.count} images and {manifest} in {seconds:.1f}s")


def command_train(args: argparse.Namespace) -> None:
    size = parse_size(args.size)
    items = load_data(args.data, size=size, default_seed=args.seed)
    val_items = (
        load_data(args.val_data, size=size, default_seed=args.seed + 1) if args.val_data else None
    )
    config = TrainConfig(
        minutes=args.minutes,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        max_steps=args.max_steps,
    )
    result = train(items, config=config, progress=_progress_printer(args.json), val_items=val_items)
    sha256 = result.save(args.out)
    recipe = result.metadata["recipe"]
    data = {
        "model": args.out,
        "sha256": sha256,
        "kind": result.metadata["kind"],
        "chosen_from_data": {c["setting"]: c["value"] for c in recipe["choices"] if c["chosen"]},
        "metrics": result.metadata["metrics"],
        "thresholds": result.metadata["thresholds"],
        "training_seconds": result.metadata["training_seconds"],
        "stopped_because": result.stopped_because,
    }
    _emit(
        args,
        data,
        f"saved {args.out} (sha256 {sha256[:12]}), a {data['kind']} model, after "
        f"{data['training_seconds']}s, {result.stopped_because}; chosen from the data: "
        + "; ".join(f"{c['setting']}={c['value']} ({c['reason']})" for c in recipe["choices"])
        + f"; validation {json.dumps(result.metadata['metrics'])}",
    )


def command_evaluate(args: argparse.Namespace) -> None:
    predictor = Predictor.from_artifact(args.model, threads=args.threads)
    items = load_data(args.data, size=parse_size(args.size), default_seed=DEFAULT_EVAL_SEED)
    report = evaluate(predictor, items, overlays_dir=args.overlays)
    data = report.to_dict(with_items=args.items)
    text = "\n".join(f"{key}: {value}" for key, value in report.metrics.items())
    _emit(args, data, text)


def _time_ms(function, repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def command_bench(args: argparse.Namespace) -> None:
    width, height = parse_size(args.size)
    predictor = Predictor.from_artifact(args.model)
    phones = [synth_phone(seed=seed, size=(width, height)).image for seed in range(4)]
    jpegs = [encode_jpeg(image, quality=90) for image in phones]
    results: dict[str, Any] = {"size": f"{width}x{height}", "repeats": args.repeats}
    all_threads = os.cpu_count() or 1
    for label, threads in (("1thread", 1), ("all_threads", all_threads)):
        torch.set_num_threads(threads)
        for image in phones:  # warm-up: first calls allocate and pick kernels
            predictor.predict([image])
        timings = _time_ms(lambda: [predictor.predict([image]) for image in phones], args.repeats)
        per_image = [t / len(phones) for t in timings]
        results[f"ms_per_image_{label}"] = round(statistics.median(per_image), 2)
        results[f"p95_ms_per_image_{label}"] = round(float(np.percentile(per_image, 95)), 2)
    results["threads_all"] = all_threads
    torch.set_num_threads(1)
    decode = _time_ms(lambda: [decode_image(data) for data in jpegs], args.repeats)
    results["decode_ms_per_image"] = round(statistics.median(decode) / len(jpegs), 2)
    batch = phones * 2
    timings = _time_ms(lambda: predictor.predict(batch), max(3, args.repeats // 4))
    results["batch8_ms_per_image_1thread"] = round(statistics.median(timings) / len(batch), 2)
    text = "\n".join(f"{key}: {value}" for key, value in results.items())
    _emit(args, results, text)


def command_export(args: argparse.Namespace) -> None:
    exporter = export_onnx if args.format == "onnx" else export_torchscript
    report = exporter(args.model, args.out)
    _emit(
        args,
        report.to_dict(),
        f"wrote {report.path} ({report.format}); max difference to the eager model "
        f"{report.max_abs_diff:.2e}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vision", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_synth_command,
        _add_train_command,
        _add_evaluate_command,
        _add_bench_command,
        _add_export_command,
    ):
        add_command(commands).add_argument("--json", action="store_true", help="print JSON")
    return parser


def _add_synth_command(commands: Any) -> argparse.ArgumentParser:
    command = commands.add_parser("synth", help="write synthetic phone photos with masks")
    command.add_argument("--count", type=int, required=True)
    command.add_argument("--out", required=True)
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--size", default="1024x576")
    command.add_argument("--defect-rate", type=float, default=0.5)
    command.add_argument(
        "--lighting", help="e.g. brightness=1.3,temperature=4000,direction=45 (6500 K neutral)"
    )
    command.set_defaults(handler=command_synth)
    return command


def _add_train_command(commands: Any) -> argparse.ArgumentParser:
    command = commands.add_parser("train", help="train a model from scratch")
    command.add_argument("--data", required=True, help="synth:N[:SEED], MANIFEST.csv or a folder")
    command.add_argument("--val-data", help="held-out validation data (default: a split of --data)")
    command.add_argument("--out", required=True)
    command.add_argument("--minutes", type=float, default=4.0)
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--size", default="1024x576", help="size of synthetic images")
    command.add_argument("--threads", type=int)
    command.add_argument("--device", default="auto")
    command.add_argument("--max-steps", type=int)
    command.set_defaults(handler=command_train)
    return command


def _add_evaluate_command(commands: Any) -> argparse.ArgumentParser:
    command = commands.add_parser("evaluate", help="measure a model on labelled data")
    command.add_argument("--model", required=True)
    command.add_argument("--data", required=True, help="synth:N[:SEED], MANIFEST.csv or a folder")
    command.add_argument("--size", default="1024x576", help="size of synthetic images")
    command.add_argument("--overlays", help="write heatmap overlays with boxes to this folder")
    command.add_argument("--items", action="store_true", help="include per-image results")
    command.add_argument("--threads", type=int)
    command.set_defaults(handler=command_evaluate)
    return command


def _add_bench_command(commands: Any) -> argparse.ArgumentParser:
    command = commands.add_parser("bench", help="inference latency per image")
    command.add_argument("--model", required=True)
    command.add_argument("--size", default="1024x576")
    command.add_argument("--repeats", type=int, default=20)
    command.set_defaults(handler=command_bench)
    return command


def _add_export_command(commands: Any) -> argparse.ArgumentParser:
    command = commands.add_parser("export", help="TorchScript or ONNX for edge devices")
    command.add_argument("--model", required=True)
    command.add_argument("--format", choices=["onnx", "torchscript"], required=True)
    command.add_argument("--out", required=True)
    command.set_defaults(handler=command_export)
    return command


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (CommandError, ArtifactError, DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
