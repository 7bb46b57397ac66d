"""Named sets of labelled items: what a model trains on and is measured on.

A benchmark is a short key, so two evaluations compare only when their keys are equal:
`dataset:<id>[:<split>]` (a frozen labeling.DatasetVersion, the test split by default) or
`synthetic:<count>:<seed>:<W>x<H>` (seeded synthetic phones: the demo and the tests).
"""

from dataclasses import dataclass
from typing import Any

from core.errors import ApplicationError
from labeling.models import DatasetVersion
from labeling.selectors import dataset_version_items
from vision.synth import synth_items

SPLITS = ("train", "validation", "test")
DEFAULT_SYNTHETIC = "synthetic:48:1234:256x144"


@dataclass(frozen=True)
class Benchmark:
    key: str
    kind: str  # "dataset" or "synthetic"
    dataset_version_id: int | None = None
    split: str | None = None
    count: int = 0
    seed: int = 0
    size: tuple[int, int] = (0, 0)

    @property
    def label(self) -> str:
        if self.kind == "synthetic":
            return (
                f"{self.count} synthetic phones (seed {self.seed}, {self.size[0]}x{self.size[1]})"
            )
        return f"dataset version {self.dataset_version_label()} ({self.split} split)"

    def dataset_version_label(self) -> str:
        version = _dataset_version(self.dataset_version_id, missing_ok=True)
        return str(getattr(version, "name", "") or self.dataset_version_id)


def _bad(key: str, why: str) -> ApplicationError:
    return ApplicationError(
        f"Unknown benchmark {key!r}: {why}. Use dataset:<id>[:<split>] or "
        f"synthetic:<count>:<seed>:<W>x<H>.",
        code="invalid_benchmark",
    )


def parse(key: str) -> Benchmark:
    parts = key.strip().split(":")
    try:
        if parts[0] == "dataset" and len(parts) in (2, 3):
            split = parts[2] if len(parts) == 3 else "test"
            if split not in SPLITS:
                raise _bad(key, f"split must be one of {', '.join(SPLITS)}")
            return Benchmark(f"dataset:{int(parts[1])}:{split}", "dataset", int(parts[1]), split)
        if parts[0] == "synthetic" and len(parts) == 4:
            width, height = (int(v) for v in parts[3].lower().split("x"))
            count, seed = int(parts[1]), int(parts[2])
            if not (4 <= count <= 5000 and 32 <= width <= 4096 and 32 <= height <= 4096):
                raise _bad(key, "count 4..5000, sides 32..4096")
            return Benchmark(
                f"synthetic:{count}:{seed}:{width}x{height}",
                "synthetic",
                count=count,
                seed=seed,
                size=(width, height),
            )
    except ValueError as exc:
        raise _bad(key, "numbers expected") from exc
    raise _bad(key, "not a known form")


def synthetic_key(*, count: int, seed: int, width: int, height: int) -> str:
    return f"synthetic:{count}:{seed}:{width}x{height}"


def _dataset_version(pk: int | None, *, missing_ok: bool = False) -> Any:
    version = DatasetVersion.objects.filter(pk=pk).first() if pk else None
    if version is None and not missing_ok:
        raise ApplicationError(f"No dataset version {pk}.", code="not_found", status=404)
    return version


def dataset_items(*, dataset_version: Any, split: str | None) -> list:
    return list(dataset_version_items(dataset_version=dataset_version, split=split))


def items(key: str) -> list:
    """The vision Items of a benchmark (loads nothing heavy until the images are read)."""
    benchmark = parse(key)
    if benchmark.kind == "synthetic":
        return synth_items(benchmark.count, seed=benchmark.seed, size=benchmark.size)
    version = _dataset_version(benchmark.dataset_version_id)
    return dataset_items(dataset_version=version, split=benchmark.split)


def choices() -> list[tuple[str, str]]:
    """Benchmarks a supervisor can pick: each dataset version's test split, then the demo's."""
    options = [
        (f"dataset:{version.pk}:test", f"{version.name} (test split)")
        for version in DatasetVersion.objects.order_by("-created_at")[:20]
    ]
    options.append((DEFAULT_SYNTHETIC, parse(DEFAULT_SYNTHETIC).label))
    return options
