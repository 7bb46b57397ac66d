"""Drift detection figures of line monitoring: false alarms, detection delays, the smallest
lighting change caught, and (with --db) the job's time per line on a large database, as JSON.

    python bench/drift_detection.py --json [--seeds 3] [--model MODEL.pt] [--size 384x216]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_drift \
        python bench/drift_detection.py --json --db [--captures 1000000] [--lines 2]

Detection (no database): simulated lines of real synthetic phones, the phones
`simulate_line --varied-lighting` posts at 1 capture/s (each under a mild random light, as the
training phones are). Each capture gets what the server stores for it: image statistics
(vision.reference.capture_stats) and the model's score, verdict and embedding. A small model is
trained in-process (vision.train, ~45 s) unless --model is given; its training reference is 300
clean training-like phones scored by it, as training stores it in the artifact.

The windows and samples are the job's own: its sample builders
(monitoring.services.checks._data_samples / _prediction_samples, fed the rows its selectors
would return) and the default MonitoringRules, every 60 captures; concept drift on the newest
300 judged decisions against the first 300 (monitoring.selectors.judged_overrides) of an
`assisted` line, where every capture gets a human verdict next to the model's. Each status goes
through the alert hysteresis (vision.drift_charts.alert_step, open after 2 bad evaluations,
close after 3 ok) as monitoring.services.alerts._step_status reads it (by default only
`drifted` opens an alert). Delays are captures (decisions, for overrides) from the change to the
evaluation that opened the alert; null means no alert within the scenario's horizon.

Scenarios, each per seed, changing the line 1,200-1,259 captures in (the windows full):
stable (3,000 captures: alerts opened are false alarms; and a stable day of verdicts for the
hourly yield chart); simulate_line's default fixed lamp;
an abrupt lighting shift (simulate_line's SHIFTED_LIGHTING); a gradual one reaching it over
600 captures; a camera shift (simulate_line's CAMERA_SHIFT); inspectors' override rate from 2%
to 10%; and a sweep of abrupt brightness drops (0.98 ... 0.8 of the light).

The --db part needs PostgreSQL and a database of its own (the name must contain "bench"; it is
created when missing and migrated). It bulk-loads --captures captures with predictions and
decisions (COPY, batches of 5,000) over --lines lines at 1 capture/s each, then times
monitoring.services.line_check(force=True) per line. The database is left for reruns (a rerun
with the same counts reuses it, unless --db-reload); --db-drop drops it at the end.

BLAS: numpy's OpenBLAS runs one thread here (OPENBLAS_NUM_THREADS=1 unless set). On a busy
2-core machine its default threads made monitoring's domain classifier (17 ms) take ~800 ms.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: see the docstring
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import django  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
django.setup()  # the job's code and models, never its database (until --db)

from inspection.management.commands.simulate_line import (  # noqa: E402
    CAMERA_SHIFT,
    SHIFTED_LIGHTING,
    Drift,
    station_phone,
)
from monitoring import detectors  # noqa: E402
from monitoring.models import MonitoringRules, Reference, ReferenceKind  # noqa: E402
from monitoring.selectors import CaptureRow  # noqa: E402
from monitoring.services.alerts import _step_status  # noqa: E402
from monitoring.services.checks import _data_samples, _prediction_samples  # noqa: E402
from vision.drift_charts import AlertState, alert_step  # noqa: E402
from vision.drift_statistics import Status  # noqa: E402
from vision.inference import Predictor  # noqa: E402
from vision.reference import capture_stats, reference_from_images  # noqa: E402
from vision.synth import item_seed, synth_items, synth_phone  # noqa: E402
from vision.synth.phones import _random_lighting  # noqa: E402
from vision.train import TrainConfig, train  # noqa: E402

RULES = MonitoringRules()  # the defaults every line starts with
EVERY = 60  # beat runs the job every minute; the line makes a capture a second
MODEL_VERSION_ID = 1
LINE_START = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)  # capture i arrives i seconds later

IMAGE_SIGNALS = ("data_drift", "prediction_drift")
SIGNALS = ("data_drift", "prediction_drift", "concept_drift", "yield")
STABLE_CAPTURES = 3000
CHANGE_AT = 1200  # plus a per-seed offset of 0-59: a change falls anywhere between two runs
GOAL = 300
HORIZON = 600  # captures after a change before a scenario gives up
GRADUAL_OVER = 600
DEFECT_RATE = 0.1  # simulate_line's default
OVERRIDE_BEFORE, OVERRIDE_AFTER = 0.02, 0.10
SWEEP = (0.98, 0.95, 0.9, 0.85, 0.8)
REFERENCE_SEED = 777_001
TRAIN_SEED = 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the model and its training reference ---------------------------------------------------


def model_and_reference(args) -> tuple[Predictor, dict, dict]:
    size = _size(args.size)
    started = time.monotonic()
    if args.model:
        predictor = Predictor.from_artifact(args.model)
        about: dict = {"model": args.model}
    else:
        items = synth_items(args.train_count, seed=TRAIN_SEED, size=size)
        _log(f"training a small model on {len(items)} synthetic phones for {args.train_s:.0f} s")
        config = TrainConfig(minutes=args.train_s / 60, seed=TRAIN_SEED, reference_images=0)
        result = train(items, config=config)
        path = Path(tempfile.mkdtemp(prefix="drift-bench-")) / "model.pt"
        result.save(path)
        predictor = Predictor.from_artifact(path)
        about = {
            "model": "trained in-process",
            "train_images": len(items),
            "train_s": round(time.monotonic() - started, 1),
            "stopped_because": result.stopped_because,
            "val_auroc": result.metadata.get("metrics", {}).get("auroc"),
        }
    about["thresholds"] = {"pass": predictor.pass_threshold, "fail": predictor.fail_threshold}
    # Clean training-like phones (a mild random light each), scored as training stores its
    # reference in the artifact; at the bench's size, so sharpness compares like for like.
    clean = synth_items(args.reference_count, seed=REFERENCE_SEED, size=size, defect_types=[])
    reference = reference_from_images(
        predictor, (item.image for item in clean), source="clean synthetic phones", clean_only=True
    )
    about["reference_count"] = reference["count"]
    about["embedding_dims"] = len(reference["embeddings"][0])
    _log(f"model and reference ready in {time.monotonic() - started:.0f} s")
    return predictor, reference, about


# --- a simulated line -----------------------------------------------------------------------

Render = Callable[[int], tuple[np.ndarray, str]]  # capture index -> (image, true label)


def decided_verdict(model_verdict: str, truth: str) -> str:
    """The verdict in force on a partial line: the model's, or the inspector's (the truth)
    where the model was unsure."""
    if model_verdict == "uncertain":
        return "fail" if truth == "defect" else "pass"
    return model_verdict


class Bench:
    """The model, the line's training reference, and the job's sample builders."""

    def __init__(self, predictor: Predictor, reference: dict, size: tuple[int, int]):
        self.predictor = predictor
        self.size = size
        # What reference_for_line makes from the production model's metadata.
        self.reference = Reference(
            kind=ReferenceKind.TRAINING_DATA,
            model_version_id=MODEL_VERSION_ID,
            image_stats=reference["image_stats"],
            embeddings=reference["embeddings"],
            count=reference["count"],
        )
        self.rendered = 0
        self.evaluations = 0
        self.evaluation_s = 0.0
        self.pool_rows: list[CaptureRow] = []  # a stable line's captures, for the --db part

    def extend(self, rows: list[CaptureRow], render: Render, until: int) -> None:
        """Render, measure and score captures len(rows) .. until-1, as the server stores them."""
        indices = list(range(len(rows), until))
        if not indices:
            return
        phones = [render(index) for index in indices]
        predictions = self.predictor.predict([image for image, _ in phones])
        for index, (image, truth), prediction in zip(indices, phones, predictions, strict=True):
            rows.append(
                CaptureRow(
                    id=index,
                    received_at=LINE_START + timedelta(seconds=index),
                    image_stats=capture_stats(image),
                    score=round(prediction.score, 6),
                    embedding=prediction.embedding_list(),
                    model_version_id=MODEL_VERSION_ID,
                    model_verdict=prediction.verdict,
                    status="decided",
                    verdict=decided_verdict(prediction.verdict, truth),
                )
            )
        self.rendered += len(indices)

    def image_signals(self, rows: list[CaptureRow]) -> dict[str, str]:
        """Data and prediction drift of the line now, from the rows the job's selectors would
        read (recent_captures, baseline_captures) through the job's own sample builders."""
        started = time.perf_counter()
        trend = rows[-max(RULES.trend_window, RULES.data_window) :]
        recent = trend[-RULES.data_window :]
        baseline = rows[: RULES.reference_size]  # the production model's first captures
        data = detectors.data_drift(_data_samples(RULES, self.reference, baseline, trend))
        prediction = detectors.prediction_drift(
            _prediction_samples(recent, baseline, MODEL_VERSION_ID)
        )
        self.evaluations += 1
        self.evaluation_s += time.perf_counter() - started
        return {"data_drift": data.status, "prediction_drift": prediction.status}


def concept_status(overrides: np.ndarray, n: int) -> str:
    """Concept drift after n judged decisions (the counts of selectors.judged_overrides)."""
    recent_start = max(0, n - RULES.decision_window)
    # The model's first judged decisions, ending where the recent window begins.
    first = overrides[: min(recent_start, RULES.decision_reference_size)]
    recent = overrides[recent_start:n]
    return detectors.concept_drift(
        detectors.ConceptSamples(
            baseline_overrides=int(first.sum()),
            baseline_judged=int(first.size),
            recent_overrides=int(recent.sum()),
            recent_judged=int(recent.size),
        )
    ).status


def yield_status(fails: np.ndarray) -> str:
    """The hourly p-chart over the last 24 hours (selectors.hourly_yield) of a line whose
    captures arrive one a second, `fails` the verdicts so far (1: fail), centred on the first
    500 decided captures' fail rate as checks._yield_samples does."""
    n = fails.size
    hours = (n - 1) // 3600 + 1
    hour_of = np.arange(n) // 3600
    totals = np.bincount(hour_of, minlength=hours)[-24:]
    defects = np.bincount(hour_of, weights=fails, minlength=hours)[-24:]
    pad = [0] * (24 - totals.size)
    first = fails[: RULES.reference_size]
    baseline_rate = float(first.mean()) if first.size >= 100 else None
    if baseline_rate is not None and not 0 < baseline_rate < 1:
        # The job passes 0 (or 1) on to p_chart, which raises: that line's monitoring fails.
        baseline_rate = None
    return detectors.yield_signal(
        detectors.YieldSamples(
            hours=[(LINE_START + timedelta(hours=hours - 24 + i)).isoformat() for i in range(24)],
            defects=pad + [int(d) for d in defects],
            totals=pad + [int(t) for t in totals],
            baseline_rate=baseline_rate,
            baseline_count=RULES.reference_size,
        )
    ).status


def _fails(rows: list[CaptureRow]) -> np.ndarray:
    return np.array([row.verdict == "fail" for row in rows], dtype=np.int64)


def yield_day(rows: list[CaptureRow], seed: int, hours: int) -> dict:
    """`hours` of a stable line at 1 capture/s, its verdicts drawn from a stable run's, with
    the job's evaluation every minute: does yield alert on a line whose defect rate never
    changed?"""
    fails = np.random.default_rng([seed, 4]).choice(_fails(rows), size=hours * 3600)
    alerts = Alerts()
    for n in range(EVERY, fails.size + 1, EVERY):
        alerts.step(n, {"yield": yield_status(fails[:n])})
    evaluations = fails.size // EVERY
    return {
        "alerts_opened": len(alerts.opened.get("yield", [])),
        "first_opened_after_captures": (alerts.opened.get("yield") or [None])[0],
        "drifted_share_of_evaluations": round(alerts.drifted.get("yield", 0) / evaluations, 3),
        "fail_rate": round(float(fails.mean()), 4),
        "first_500_fail_rate": round(float(fails[: RULES.reference_size].mean()), 4),
    }


@dataclass
class Alerts:
    """Each signal's alert state through the hysteresis, and when each opened."""

    states: dict[str, AlertState] = field(default_factory=dict)
    opened: dict[str, list[int]] = field(default_factory=dict)  # signal -> capture counts
    warnings: dict[str, int] = field(default_factory=dict)
    drifted: dict[str, int] = field(default_factory=dict)

    def step(self, n: int, statuses: dict[str, str]) -> None:
        for signal, status in statuses.items():
            state = self.states.get(signal, AlertState())
            self.warnings[signal] = self.warnings.get(signal, 0) + (status == Status.WARNING)
            self.drifted[signal] = self.drifted.get(signal, 0) + (status == Status.DRIFTED)
            step = alert_step(
                state,
                _step_status(status, RULES, state.is_open),
                open_after=RULES.open_after,
                close_after=RULES.close_after,
            )
            self.states[signal] = step.state
            if step.event == "opened":
                self.opened.setdefault(signal, []).append(n)

    def copy(self) -> Alerts:
        return Alerts(
            dict(self.states),
            {k: list(v) for k, v in self.opened.items()},
            dict(self.warnings),
            dict(self.drifted),
        )


# --- scenarios ------------------------------------------------------------------------------


def phone_seed(seed: int) -> int:
    return 1_000_003 * seed


def station_render(bench: Bench, seed: int, drift: Drift, *, varied: bool = True) -> Render:
    """The simulate_line station's phone `index` at 1 capture/s (elapsed = index seconds)."""

    def render(index: int) -> tuple[np.ndarray, str]:
        phone = station_phone(
            seed=phone_seed(seed),
            index=index,
            size=bench.size,
            defect_rate=DEFECT_RATE,
            drift=drift,
            elapsed=float(index),
            varied_lighting=varied,
        )
        return phone.image, phone.truth

    return render


def dimmed_render(bench: Bench, seed: int, factor: float, change: int) -> Render:
    """The same phones with every light `factor` as bright from capture `change` on."""

    def render(index: int) -> tuple[np.ndarray, str]:
        # The light station_phone(varied_lighting=True) gives phone `index`, dimmed.
        lighting = _random_lighting(np.random.default_rng(item_seed(phone_seed(seed), index)))
        if index >= change:
            lighting = replace(lighting, brightness=lighting.brightness * factor)
        phone = synth_phone(
            seed=phone_seed(seed) + index,
            size=bench.size,
            defect_rate=DEFECT_RATE,
            lighting=lighting,
        )
        return phone.image, phone.label

    return render


@dataclass
class StableRun:
    rows: list[CaptureRow]
    alerts_at: dict[int, Alerts]  # capture count of each evaluation -> alert states after it
    alerts: Alerts


def stable_run(bench: Bench, seed: int, length: int, render: Render) -> StableRun:
    rows: list[CaptureRow] = []
    overrides = _overrides(seed, length, lambda index: OVERRIDE_BEFORE)
    alerts = Alerts()
    alerts_at: dict[int, Alerts] = {}
    for n in range(EVERY, length + 1, EVERY):
        bench.extend(rows, render, n)
        status = bench.image_signals(rows)
        status["concept_drift"] = concept_status(overrides, n)
        status["yield"] = yield_status(_fails(rows))
        alerts.step(n, status)
        alerts_at[n] = alerts.copy()
    return StableRun(rows, alerts_at, alerts)


def change_run(
    bench: Bench,
    stable: StableRun,
    render: Render,
    change: int,
    horizon: int,
    stop_on_first: bool = False,
) -> dict[str, int | None | str]:
    """The line as the stable run up to capture `change`, rendered by `render` from there:
    how many captures after the change each image signal's alert opened (None: not within
    `horizon`)."""
    last_shared = (change // EVERY) * EVERY
    alerts = stable.alerts_at[last_shared].copy() if last_shared else Alerts()
    rows = stable.rows[:change]
    delays: dict[str, int | None | str] = {
        signal: "open before the change"
        if alerts.states.get(signal, AlertState()).is_open
        else None
        for signal in IMAGE_SIGNALS
    }
    for n in range(last_shared + EVERY, change + horizon + 1, EVERY):
        bench.extend(rows, render, n)
        opened_before = {s: len(alerts.opened.get(s, [])) for s in IMAGE_SIGNALS}
        alerts.step(n, bench.image_signals(rows))
        for signal in IMAGE_SIGNALS:
            newly_opened = len(alerts.opened.get(signal, [])) > opened_before[signal]
            if delays[signal] is None and newly_opened:
                delays[signal] = n - change
        pending = [s for s in IMAGE_SIGNALS if delays[s] is None]
        if not pending or (stop_on_first and len(pending) < len(IMAGE_SIGNALS)):
            break
    return delays


def concept_delay(seed: int, change: int, horizon: int) -> int | None:
    """Overrides rise from 2% to 10% of judged decisions at decision `change`."""
    length = change + horizon

    def rate(index: int) -> float:
        return OVERRIDE_AFTER if index >= change else OVERRIDE_BEFORE

    overrides = _overrides(seed, length, rate)
    alerts = Alerts()
    for n in range(EVERY, length + 1, EVERY):
        alerts.step(n, {"concept_drift": concept_status(overrides, n)})
        opened = alerts.opened.get("concept_drift", [])
        if opened and opened[-1] >= change:
            return opened[-1] - change
    return None


def _overrides(seed: int, length: int, rate: Callable[[int], float]) -> np.ndarray:
    """Whether the inspector overrode each judged decision (the same draws for every rate, so
    the stable line and the changed one differ only where the rate does)."""
    draws = np.random.default_rng([seed, 2]).random(length)
    return np.array([draw < rate(index) for index, draw in enumerate(draws)], dtype=np.int64)


def _median(values: list) -> float | None:
    """Median delay over seeds, a missed detection counting as never (None when half or more
    missed)."""
    numbers = [v if isinstance(v, int) else float("inf") for v in values]
    if not numbers:
        return None
    middle = statistics.median(numbers)
    return None if middle == float("inf") else middle


def _summary(per_seed: dict[int, dict]) -> dict:
    signals = sorted({s for delays in per_seed.values() for s in delays if s != "change_at"})
    return {
        "per_seed": {str(seed): delays for seed, delays in per_seed.items()},
        "median": {s: _median([d.get(s) for d in per_seed.values()]) for s in signals},
        "within_goal": {
            s: sum(1 for d in per_seed.values() if isinstance(d.get(s), int) and d[s] <= GOAL)
            for s in signals
        },
        "seeds": len(per_seed),
    }


def detection(args, predictor: Predictor, reference: dict) -> tuple[dict, list[CaptureRow]]:
    bench = Bench(predictor, reference, _size(args.size))
    seeds = list(range(1, args.seeds + 1))
    sweep_seeds = seeds[: args.sweep_seeds]
    false_alarms, bad_evaluations, yield_days = {}, {}, {}
    delays: dict[str, dict[int, dict]] = {
        "lighting_abrupt": {},
        "lighting_gradual": {},
        "camera_shift": {},
        "override_rise": {},
    }
    sweep: dict[float, dict[int, dict]] = {factor: {} for factor in SWEEP}
    started = time.monotonic()
    for seed in seeds:
        change = CHANGE_AT + int(np.random.default_rng([seed, 1]).integers(0, EVERY))
        _log(f"seed {seed}: stable line, {args.stable_captures} captures")
        stable = stable_run(bench, seed, args.stable_captures, station_render(bench, seed, Drift()))
        bench.pool_rows = bench.pool_rows or stable.rows
        false_alarms[str(seed)] = {s: len(stable.alerts.opened.get(s, [])) for s in SIGNALS}
        bad_evaluations[str(seed)] = {
            s: {
                "warning": stable.alerts.warnings.get(s, 0),
                "drifted": stable.alerts.drifted.get(s, 0),
            }
            for s in SIGNALS
        }
        scenarios = {
            "lighting_abrupt": (Drift(lighting_shift_after=change), HORIZON),
            "lighting_gradual": (
                Drift(gradual_drift_after=change, gradual_drift_over=GRADUAL_OVER),
                GRADUAL_OVER + HORIZON // 2,
            ),
            "camera_shift": (Drift(camera_shift_after=change), HORIZON),
        }
        for name, (drift, horizon) in scenarios.items():
            _log(f"seed {seed}: {name} at capture {change} ({time.monotonic() - started:.0f} s)")
            render = station_render(bench, seed, drift)
            delays[name][seed] = {"change_at": change} | change_run(
                bench, stable, render, change, horizon
            )
        _log(f"seed {seed}: yield over {args.yield_hours} stable hours")
        yield_days[str(seed)] = yield_day(stable.rows, seed, args.yield_hours)
        delays["override_rise"][seed] = {
            "change_at": change,
            "concept_drift": concept_delay(seed, change, 900),
        }
        if seed in sweep_seeds:
            for factor in SWEEP:
                _log(f"seed {seed}: light x{factor} ({time.monotonic() - started:.0f} s)")
                render = dimmed_render(bench, seed, factor, change)
                sweep[factor][seed] = change_run(
                    bench, stable, render, change, HORIZON, stop_on_first=True
                )
    results: dict = {
        "false_alarms": {
            "captures": args.stable_captures,
            "evaluations_per_seed": args.stable_captures // EVERY,
            "alerts_opened_per_seed": false_alarms,
            "alerts_opened_total": {
                s: sum(seed_alarms[s] for seed_alarms in false_alarms.values()) for s in SIGNALS
            },
            "bad_evaluations_per_seed": bad_evaluations,
            "note": "yield needs 3 hours for its p-chart; 3,000 captures at 1/s are 50 minutes, "
            "so it stays insufficient_data: see yield_stable_day",
        },
        "yield_stable_day": {
            "hours": args.yield_hours,
            "per_seed": yield_days,
            "alerts_opened_total": sum(day["alerts_opened"] for day in yield_days.values()),
            "note": "verdicts drawn at random from the stable run's, so the true defect rate "
            "never changes",
        },
    }
    results["delays"] = {name: _summary(per_seed) for name, per_seed in delays.items()}
    results["delays"]["goal"] = GOAL
    results["delays"]["changes"] = {
        "lighting_abrupt": f"every light to {SHIFTED_LIGHTING}",
        "lighting_gradual": f"linearly to it over {GRADUAL_OVER} captures",
        "camera_shift": ", ".join(f"{k} {v}" for k, v in CAMERA_SHIFT.items()),
        "override_rise": f"{OVERRIDE_BEFORE:.0%} -> {OVERRIDE_AFTER:.0%} of judged decisions",
    }
    results["brightness_sweep"] = _sweep_summary(sweep)
    results["station_fixed_light"] = fixed_light(bench, seeds[0], args)
    results["rendered_captures"] = bench.rendered
    results["evaluation_ms_mean"] = round(1000 * bench.evaluation_s / max(bench.evaluations, 1), 1)
    return results, bench.pool_rows


def _sweep_summary(sweep: dict[float, dict[int, dict]]) -> dict:
    out: dict = {"horizon": HORIZON, "factors": {}}
    caught_all, caught_goal = [], []
    for factor, per_seed in sweep.items():
        if not per_seed:
            continue
        first = {
            seed: min((v for v in delays.values() if isinstance(v, int)), default=None)
            for seed, delays in per_seed.items()
        }
        out["factors"][str(factor)] = {
            "per_seed": {str(seed): delays for seed, delays in per_seed.items()},
            "first_alert_median": _median(list(first.values())),
        }
        if all(v is not None for v in first.values()):
            caught_all.append(factor)
        if all(v is not None and v <= GOAL for v in first.values()):
            caught_goal.append(factor)
    out["smallest_change_caught"] = max(caught_all, default=None)
    out["smallest_change_caught_within_goal"] = max(caught_goal, default=None)
    return out


def fixed_light(bench: Bench, seed: int, args) -> dict:
    """simulate_line without --varied-lighting: one fixed lamp for every phone (a narrower
    slice of the training conditions, which must not read as drift)."""
    _log("simulate_line's default fixed lamp")
    render = station_render(bench, seed, Drift(), varied=False)
    run = stable_run(bench, seed, args.fixed_light_captures, render)
    return {
        "captures": args.fixed_light_captures,
        "alerts_opened_at": {s: run.alerts.opened.get(s, []) for s in SIGNALS},
        "bad_evaluations": {
            s: {"warning": run.alerts.warnings.get(s, 0), "drifted": run.alerts.drifted.get(s, 0)}
            for s in IMAGE_SIGNALS
        },
    }


# --- the database part ----------------------------------------------------------------------


def db_timing(args, pool: dict) -> dict:
    """Bulk-load a dedicated PostgreSQL database and time the monitoring job per line."""
    from django.core.management import call_command
    from django.db import connections

    from bench.benchdb import bench_database, database_create_missing, database_drop

    name, server = bench_database(
        script="--db", needs=f"loads {args.captures:,} captures into", any_name=args.db_any_name
    )
    database_create_missing(name, server, _log)
    _log(f"migrating {name}")
    call_command("migrate", verbosity=0)
    lines, load = _db_load(args, pool)
    from monitoring.services import line_check

    timings: dict[str, list[float]] = {}
    statuses: dict[str, dict] = {}
    for line in lines:
        for _ in range(args.db_repeats):
            started = time.perf_counter()
            report = line_check(line=line, force=True)
            timings.setdefault(line.code, []).append(time.perf_counter() - started)
        statuses[line.code] = {k: v["status"] for k, v in report["signals"].items()}
        _log(f"line_check {line.code}: {[round(t, 3) for t in timings[line.code]]} s")
    warm = [t for values in timings.values() for t in values[1:]] or [
        t for values in timings.values() for t in values
    ]
    result = {
        "database": name,
        **load,
        "line_check_s": {code: [round(t, 3) for t in values] for code, values in timings.items()},
        "p50_s": round(statistics.median(warm), 3),
        "max_s": round(max(warm), 3),
        "per_line": {
            code: {
                "p50_s": round(statistics.median(values[1:] or values), 3),
                "max_s": round(max(values[1:] or values), 3),
            }
            for code, values in timings.items()
        },
        "first_call_s": {code: round(values[0], 3) for code, values in timings.items()},
        "statuses": statuses,
        "goal_s": 1.0,
        "note": "p50/max over the calls after each line's first (which also makes its reference)",
    }
    if args.db_drop:
        connections.close_all()
        database_drop(name, server)
        result["dropped"] = True
    else:
        result["left_in_place"] = f'DROP DATABASE "{name}" (or rerun with --db-drop)'
    return result


def _db_load(args, pool: dict):
    """Lines B1..Bk (partial, assisted, ...) with a station, an inspector, a production model
    whose metadata holds the training reference, and captures with their prediction and
    decision COPYed in batches; reused when a previous run loaded the same counts."""
    import uuid

    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction

    from core.authentication import token_generate, token_hash
    from core.models import AutomationLevel, ProductionLine, Station
    from inspection.models import Capture, Decision, Prediction
    from models_registry.models import Deployment, ModelVersion

    per_line = args.captures // args.lines
    codes = [f"B{i + 1}" for i in range(args.lines)]
    counts = {
        code: Capture.objects.filter(line__code=code).count()
        for code in codes
        if ProductionLine.objects.filter(code=code).exists()
    }
    if not args.db_reload and len(counts) == len(codes) and set(counts.values()) == {per_line}:
        _log(f"reusing the {per_line * len(codes):,} captures already loaded")
        lines = list(ProductionLine.objects.filter(code__in=codes).order_by("code"))
        return lines, {"captures": per_line * len(codes), "lines": len(codes), "reused": True}
    with connection.cursor() as cursor:  # a database of its own: start from empty tables
        tables = connection.introspection.django_table_names(only_existing=True)
        tables = [t for t in tables if t != "django_migrations"]
        cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
    rng = np.random.default_rng(0)
    inspector = User.objects.create(username="bench-inspector")
    inspector.groups.add(Group.objects.get_or_create(name="inspector")[0])
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(seconds=per_line)
    model = ModelVersion.objects.create(
        name="bench",
        version=1,
        sha256=uuid.uuid4().hex * 2,
        artifact="models/bench.pt",
        metadata={"reference": pool["reference"], "thresholds": {"pass": 0.3, "fail": 0.7}},
    )
    lines = []
    for index, code in enumerate(codes):
        level = AutomationLevel.ASSISTED if index % 2 else AutomationLevel.PARTIAL
        line = ProductionLine.objects.create(
            code=code, name=f"Bench {code}", automation_level=level
        )
        token = token_generate()
        Station.objects.create(
            line=line, name="S1", token_hash=token_hash(token), token_prefix=token[:8]
        )
        deployment = Deployment.objects.create(line=line, model_version=model, role="production")
        Deployment.objects.filter(pk=deployment.pk).update(deployed_at=start)
        lines.append(line)

    started = time.monotonic()
    rows = pool["rows"]
    next_id = 1
    for line_index, line in enumerate(lines):
        station = line.stations.get()
        assisted = line.automation_level == AutomationLevel.ASSISTED
        for batch_start in range(0, per_line, args.batch):
            captures, predictions, decisions = [], [], []
            for index in range(batch_start, min(per_line, batch_start + args.batch)):
                row = rows[index % len(rows)]
                capture_id = uuid.uuid4()
                received = start + timedelta(seconds=index)
                captures.append(
                    {
                        "id": capture_id,
                        "line_id": line.pk,
                        "station_id": station.pk,
                        "idempotency_key": capture_id.hex,
                        "image": "captures/00/bench.jpg",
                        "image_sha256": capture_id.hex * 2,
                        "image_bytes": 60_000,
                        "image_format": "jpg",
                        "width": 1024,
                        "height": 576,
                        "image_stats": row["stats_json"],
                        "metadata": "{}",
                        "captured_at": received,
                        "received_at": received,
                    }
                )
                predictions.append(
                    {
                        "id": next_id,
                        "capture_id": capture_id,
                        "model_version_id": model.pk,
                        "role": "production",
                        "score": row["score"],
                        "verdict": row["model_verdict"],
                        "regions": "[]",
                        "embedding": row["embedding_json"],
                        "latency_ms": 20.0,
                        "created_at": received,
                    }
                )
                decision = _decision_row(
                    next_id, capture_id, received, row, assisted, inspector.pk, rng
                )
                decision["line_id"] = line.pk
                if assisted and index >= per_line - 10:  # a few still wait for a human
                    decision |= PENDING
                decisions.append(decision)
                next_id += 1
            with transaction.atomic():
                _copy(connection, Capture, captures)
                _copy(connection, Prediction, predictions)
                _copy(connection, Decision, decisions)
            done = min(per_line, batch_start + args.batch)
            if done % 100_000 == 0 or done == per_line:
                rate = (line_index * per_line + done) / (time.monotonic() - started)
                _log(f"  {line.code}: {done:,}/{per_line:,} captures loaded ({rate:,.0f}/s)")
    with connection.cursor() as cursor:
        for model_class in (Prediction, Decision):
            table = model_class._meta.db_table
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT MAX(id) FROM {table}))"
            )
        cursor.execute("ANALYZE")
    return lines, {
        "captures": per_line * len(lines),
        "lines": len(lines),
        "reused": False,
        "load_s": round(time.monotonic() - started, 1),
    }


PENDING = {
    "status": "pending",
    "verdict": "",
    "decided_by": "",
    "decided_by_user_id": None,
    "decided_at": None,
    "overrode_model": None,
    "claimed_by_id": None,
    "claimed_at": None,
}


def _decision_row(pk, capture_id, received, row, assisted: bool, user_id: int, rng) -> dict:
    """What capture_ingest and the inspector leave: on a partial line the model decides
    unless unsure; on an assisted line an inspector decides every capture (2% overrides)."""
    human = assisted or row["model_verdict"] == "uncertain"
    judged = human and row["model_verdict"] != "uncertain"
    overrode = bool(rng.random() < OVERRIDE_BEFORE) if judged else None
    verdict = row["verdict"] if not judged else row["model_verdict"]
    if overrode:
        verdict = "pass" if verdict == "fail" else "fail"
    reason = "assisted" if assisted else ("uncertain" if human else "confident")
    return {
        "id": pk,
        "capture_id": capture_id,
        "status": "decided",
        "verdict": verdict,
        "decided_by": "human" if human else "model",
        "decided_by_user_id": user_id if human else None,
        "decided_at": received + timedelta(seconds=15 if human else 0),
        "reason": reason,
        "model_shown": assisted,
        "acting_prediction_id": pk,
        "model_verdict": row["model_verdict"],
        "overrode_model": overrode,
        "claimed_by_id": user_id if human else None,
        "claimed_at": received + timedelta(seconds=5) if human else None,
    }


def _copy(connection, model_class, rows: list[dict]) -> None:
    """COPY rows (dicts by column; a missing column takes its field's default) into the
    model's table, within the current transaction."""
    fields = model_class._meta.concrete_fields
    columns = [f.column for f in fields]
    defaults = {}
    for f in fields:
        if f.has_default():
            value = f.get_default()
            defaults[f.column] = json.dumps(value) if isinstance(value, dict | list) else value
        elif f.blank and not f.null:
            defaults[f.column] = ""
    names = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor under Django's wrapper
        with raw.copy(f'COPY "{model_class._meta.db_table}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[c] if c in row else defaults.get(c) for c in columns])


def db_pool(reference: dict | None, rows: list[CaptureRow], seed: int = 0) -> dict:
    """Per-capture values the load cycles through: a simulated stable line's captures (real
    statistics, scores and embeddings) and the training reference, else draws of that shape."""
    if reference is None or not rows:
        rng = np.random.default_rng(seed)
        dims, names = 32, ("brightness", "contrast", "sharpness", "r_g", "b_g", "saturation")
        reference = {
            "image_stats": {name: rng.normal(50, 10, 300).round(5).tolist() for name in names},
            "embeddings": rng.normal(0, 1, (300, dims)).round(4).tolist(),
            "count": 300,
            "source": "random draws",
        }
        rows = []
        for index in range(3000):
            defect = rng.random() < DEFECT_RATE
            score = round(float(rng.beta(8, 2) if defect else rng.beta(1, 8)), 6)
            verdict = "fail" if score >= 0.7 else "pass" if score < 0.3 else "uncertain"
            rows.append(
                CaptureRow(
                    id=index,
                    received_at=LINE_START,
                    image_stats={name: round(float(rng.normal(50, 10)), 5) for name in names},
                    score=score,
                    embedding=rng.normal(0, 1, dims).round(4).tolist(),
                    model_version_id=MODEL_VERSION_ID,
                    model_verdict=verdict,
                    status="decided",
                    verdict=decided_verdict(verdict, "defect" if defect else "ok"),
                )
            )
    return {
        "reference": reference,
        "rows": [
            {
                "stats_json": json.dumps(row.image_stats),
                "embedding_json": json.dumps(row.embedding),
                "score": row.score,
                "model_verdict": row.model_verdict,
                "verdict": row.verdict,
            }
            for row in rows
        ],
    }


# --- main -----------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="simulated lines per scenario")
    parser.add_argument(
        "--sweep-seeds", type=int, default=1, help="of those, how many run the brightness sweep"
    )
    parser.add_argument("--size", default="384x216", help="synthetic phones' size (WxH)")
    parser.add_argument("--model", help="a vision artifact (default: train one in-process)")
    parser.add_argument("--train-s", type=float, default=45.0, help="in-process training budget")
    parser.add_argument("--train-count", type=int, default=160)
    parser.add_argument("--reference-count", type=int, default=300)
    parser.add_argument("--stable-captures", type=int, default=STABLE_CAPTURES)
    parser.add_argument("--fixed-light-captures", type=int, default=1500)
    parser.add_argument("--yield-hours", type=int, default=24, help="the stable day's length")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-detection", action="store_true", help="only the --db part")
    parser.add_argument("--db", action="store_true", help="also time line_check on PostgreSQL")
    parser.add_argument("--captures", type=int, default=1_000_000, help="--db: captures to load")
    parser.add_argument("--lines", type=int, default=2, help="--db: lines sharing them")
    parser.add_argument("--batch", type=int, default=5000, help="--db: rows per COPY batch")
    parser.add_argument("--db-repeats", type=int, default=5, help="--db: line_check calls per line")
    parser.add_argument("--db-drop", action="store_true", help="--db: drop the database after")
    parser.add_argument(
        "--db-reload", action="store_true", help="--db: load again even if the counts match"
    )
    parser.add_argument("--db-any-name", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.stable_captures < CHANGE_AT + EVERY:
        parser.error(f"--stable-captures must be at least {CHANGE_AT + EVERY}")
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    results: dict = {
        "settings": {
            "size": args.size,
            "seeds": args.seeds,
            "sweep_seeds": min(args.sweep_seeds, args.seeds),
            "every_captures": EVERY,
            "rules": {
                name: getattr(RULES, name)
                for name in (
                    "data_window",
                    "trend_window",
                    "decision_window",
                    "reference_size",
                    "open_after",
                    "close_after",
                    "alert_on_warning",
                )
            },
            "defect_rate": DEFECT_RATE,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "torch_threads": args.threads,
        }
    }
    reference, rows = None, []
    if not args.no_detection:
        predictor, reference, about = model_and_reference(args)
        results["settings"]["model"] = about
        found, rows = detection(args, predictor, reference)
        results.update(found)
        results["detection_s"] = round(time.monotonic() - started, 1)
    if args.db:
        results["db"] = db_timing(args, db_pool(reference, rows))
    print(json.dumps(results, indent=2) if args.json else results)


if __name__ == "__main__":
    main()
