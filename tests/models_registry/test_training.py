"""Training runs, evaluations and batch predictions through their services and (eager) tasks:
a tiny model trains for two steps on synthetic phones."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from core import blobs
from core.blobs import blob_write
from core.errors import ApplicationError
from inspection.models import Decision
from models_registry import services
from models_registry.models import (
    BatchPrediction,
    Evaluation,
    JobStatus,
    LineTrainingPolicy,
    ModelStatus,
    TrainingRun,
)
from models_registry.services import training as training_services
from tests.factories import CaptureFactory, ProductionLineFactory, UserFactory, image_bytes

pytestmark = pytest.mark.django_db
TINY = {"image_size": [128, 72]}
BENCH = "synthetic:8:5:128x72"


@pytest.fixture
def line(model_artifact):
    line = ProductionLineFactory(code="L1")
    version = services.model_version_register(path=model_artifact, name="scratchnet")
    services.deployment_set(line=line, model_version=version, role="production")
    return line


def test_a_run_trains_registers_a_candidate_and_evaluates_it_beside_production(
    line, settings, django_capture_on_commit_callbacks
):
    supervisor = UserFactory(roles=["supervisor"])
    with django_capture_on_commit_callbacks(execute=True):
        run = services.training_run_start(
            user=supervisor, data_source="synthetic", synthetic_count=16, synthetic_seed=3,
            preset="smoke", config=TINY, line=line, benchmark=BENCH,
        )  # fmt: skip
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.log
    assert run.progress == 1.0 and run.step == 2 and run.total_steps == 2
    assert run.history and "val_loss" in run.history[-1]
    assert run.heartbeat_at and run.worker_id and "registered" in run.log
    version = run.model_version
    production = line.deployments.get(role="production").model_version
    assert version.status == ModelStatus.CANDIDATE
    assert (version.name, version.version, version.parent) == ("scratchnet", 2, production)
    assert version.training_data == "synthetic:16:3" and version.code_version
    assert version.metadata["train_config"]["max_steps"] == 2
    assert Path(settings.MODELS_ROOT, version.artifact).is_file()
    evaluations = {e.model_version_id: e for e in Evaluation.objects.filter(benchmark=BENCH)}
    assert set(evaluations) == {version.pk, production.pk}
    mine = evaluations[version.pk]
    assert mine.status == JobStatus.SUCCEEDED, mine.log
    assert {"auroc", "precision", "recall", "f1", "confusion_matrix"} <= set(mine.metrics)
    assert set(mine.slices) == {"line", "defect_type", "defect_size", "lighting"}
    assert sum(row["n"] for row in mine.slices["lighting"]) == 8
    shown = mine.worst["false_negatives"] + mine.worst["false_positives"]
    for row in shown:
        name = services.evaluation.evaluation_overlay_name(mine, row["overlay"])
        assert blobs.blob_exists(name, store=blobs.MODELS)
    assert not list(Path(settings.MODELS_ROOT).glob("evaluations/*/all"))
    assert not list((Path(settings.BLOB_CACHE_ROOT) / "scratch").glob("*"))  # cleaned up


def test_a_queued_run_is_cancelled_at_once_and_never_runs(line):
    run = TrainingRun.objects.create(data_source="synthetic", synthetic_count=16, config=TINY)
    services.training_run_cancel(run=run, user=None)
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED
    assert services.training_run_execute(run_id=run.pk) is None  # idempotent: nothing runs
    with pytest.raises(ApplicationError) as error:
        services.training_run_cancel(run=run, user=None)
    assert error.value.status == 409


def test_a_running_run_stops_at_the_next_step_when_cancelled(line, settings, monkeypatch):
    settings.JOB_CANCEL_POLL_SECONDS = 0
    run = TrainingRun.objects.create(
        data_source="synthetic", synthetic_count=16,
        config={**TINY, "max_steps": 50, "steps_per_epoch": 50, "batch_size": 4, "crop": 64},
    )  # fmt: skip
    original = training_services.JobReporter.update

    def update(self, **fields):
        if fields.get("step") == 1:  # the supervisor clicks cancel after the first step
            TrainingRun.objects.filter(pk=self.pk).update(cancel_requested=True)
        original(self, **fields)

    monkeypatch.setattr(training_services.JobReporter, "update", update)
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == JobStatus.CANCELLED
    assert run.step <= 2 and run.model_version is None
    assert "cancelled" in run.log


def test_a_failing_run_is_failed_with_its_traceback(line, monkeypatch):
    run = TrainingRun.objects.create(data_source="synthetic", synthetic_count=16, config=TINY)

    def broken(run):
        raise OSError("disk full")

    monkeypatch.setattr(training_services, "_training_items", broken)
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == JobStatus.FAILED and run.error == "OSError: disk full"
    assert "Traceback" in run.log


def test_reaper_fails_runs_whose_worker_went_silent():
    now = timezone.now()
    silent = TrainingRun.objects.create(
        data_source="synthetic", status="running", heartbeat_at=now - timedelta(minutes=5),
        worker_id="gpu-1 pid 42", log="epoch 1: loss 0.3",
    )  # fmt: skip
    alive = TrainingRun.objects.create(
        data_source="synthetic", status="running", heartbeat_at=now - timedelta(seconds=5)
    )
    assert [job.pk for job in services.jobs_reap(stale_seconds=120)] == [silent.pk]
    silent.refresh_from_db()
    alive.refresh_from_db()
    assert silent.status == JobStatus.FAILED and silent.error.startswith("worker lost")
    assert "gpu-1 pid 42" in silent.error
    assert silent.log.startswith("epoch 1: loss 0.3") and "worker lost" in silent.log
    assert alive.status == JobStatus.RUNNING
    assert services.training_run_execute(run_id=silent.pk) is None  # redelivery: no rerun


def test_start_refuses_bad_input(line):
    with pytest.raises(ApplicationError):
        services.training_run_start(user=None, data_source="synthetic", synthetic_count=2)
    with pytest.raises(ApplicationError):
        services.training_run_start(user=None, data_source="dataset")
    with pytest.raises(ApplicationError):
        services.training_run_start(
            user=None, data_source="synthetic", synthetic_count=16, config={"rm -rf": 1}
        )
    with pytest.raises(ApplicationError):
        services.training_run_start(
            user=None, data_source="synthetic", synthetic_count=16, benchmark="imagenet"
        )
    assert not TrainingRun.objects.exists()


def test_surface_settings_reach_the_trainer(line):
    """A supervisor training on a directional texture turns quarter turns off, and can fix the
    region threshold or the hard-positive share; the worker builds its TrainConfig from them."""
    settings_ = {"rotate": False, "hard_positive_share": 0.1, "region_threshold": 0.4}
    run = services.training_run_start(
        user=None, data_source="synthetic", synthetic_count=16, config={**settings_, **TINY}
    )
    config = training_services._train_config(run)
    assert (config.rotate, config.hard_positive_share, config.region_threshold) == (False, 0.1, 0.4)


def test_auto_retrain_starts_a_run_when_enough_reviewed_labels_arrived(line, monkeypatch):
    import types

    counts = {"n": 3}
    selectors_module = types.SimpleNamespace(
        reviewed_annotations_since=lambda *, line=None, since=None: counts["n"]
    )
    monkeypatch.setattr(training_services, "labeling_selectors", selectors_module)
    started = []
    monkeypatch.setattr(
        training_services,
        "training_run_start",
        lambda **kwargs: (
            started.append(kwargs)
            or TrainingRun.objects.create(
                data_source="reviewed_now", line=kwargs["line"], automatic=True
            )
        ),
    )
    LineTrainingPolicy.objects.create(line=line, auto_retrain=True, min_new_labels=5)
    assert services.auto_retrain_check() == []
    counts["n"] = 5
    [run] = services.auto_retrain_check()
    assert started[0]["data_source"] == "reviewed_now" and started[0]["automatic"]
    assert services.auto_retrain_check() == []  # one run per line at a time
    assert LineTrainingPolicy.objects.get(line=line).last_triggered_at is not None


def test_batch_prediction_rescores_a_date_range(line, settings, django_capture_on_commit_callbacks):
    version = line.deployments.get(role="production").model_version
    now = timezone.now()
    inside = []
    for index in range(3):
        data = image_bytes(128, 72, seed=index)
        relative, _ = blob_write(data, folder="captures", extension="jpg", sha256=f"{index:064d}")
        capture = CaptureFactory(station__line=line, image=relative, received_at=now)
        Decision.objects.create(
            capture=capture, status="decided", verdict="pass", decided_by="human",
            decided_at=now, reason="manual",
        )  # fmt: skip
        inside.append(capture)
    CaptureFactory(station__line=line, received_at=now - timedelta(days=3))  # outside
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.batch_prediction_start(
            model_version=version,
            received_after=now - timedelta(hours=1),
            received_before=now + timedelta(hours=1),
        )
    batch = BatchPrediction.objects.get(pk=batch.pk)
    assert batch.status == JobStatus.SUCCEEDED, batch.log
    assert (batch.total, batch.done, batch.progress) == (3, 3, 1.0)
    assert batch.summary["scored"] == 3
    assert set(batch.results.values_list("capture_id", flat=True)) == {c.pk for c in inside}


def test_a_run_on_a_dataset_version_records_its_lineage(
    line, tmp_path, django_capture_on_commit_callbacks
):
    from labeling.services import dataset_version_from_manifest
    from vision.synth import write_dataset

    manifest = write_dataset(tmp_path / "phones", 40, seed=11, size=(128, 72))
    dataset = dataset_version_from_manifest(
        name="phones-v1", manifest_path=manifest, created_by=None, split_fractions=(0.5, 0.25, 0.25)
    )
    benchmark = f"dataset:{dataset.pk}:test"
    with django_capture_on_commit_callbacks(execute=True):
        run = services.training_run_start(
            user=None, data_source="dataset", dataset_version=dataset, preset="smoke",
            line=line, benchmark=benchmark,
        )  # fmt: skip
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.log
    version = run.model_version
    assert version.dataset_version == dataset
    assert version.training_data == "dataset phones-v1 (train split)"
    evaluation = Evaluation.objects.get(model_version=version, benchmark=benchmark)
    assert evaluation.status == JobStatus.SUCCEEDED, evaluation.log
    assert evaluation.metrics["n_images"] == dataset.counts["split"]["test"]
    assert evaluation.benchmark_label == "dataset version phones-v1 (test split)"


def test_a_line_with_good_images_only_gets_a_good_only_model_and_the_pages_say_so(
    line, tmp_path, client, django_capture_on_commit_callbacks
):
    """A new line: its dataset holds no defect. The same "train" makes a model from the good
    images (defects synthesised on them); the run page shows the settings chosen from the
    data and why, the registry lists the version as good-images-only."""
    from labeling.services import dataset_version_from_manifest
    from vision.synth import write_dataset

    manifest = write_dataset(tmp_path / "good", 40, seed=12, size=(128, 72), defect_rate=0.0)
    dataset = dataset_version_from_manifest(
        name="new-line", manifest_path=manifest, created_by=None, split_fractions=(0.6, 0.2, 0.2)
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = services.training_run_start(
            user=None, data_source="dataset", dataset_version=dataset, preset="smoke", line=line
        )
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.log
    assert run.recipe["kind"] == "good_only"
    assert "good_only model; chosen from the data: rotate=True" in run.log
    version = run.model_version
    assert version.metadata["kind"] == "good_only"
    client.force_login(UserFactory(roles=["supervisor"]))
    page = client.get(f"/models/runs/{run.pk}/").content.decode()
    assert "Good images only" in page and "no grain direction" in page
    assert "good images only" in client.get("/models/").content.decode()
    version_page = client.get(f"/models/{version.pk}/").content.decode()
    assert "defects synthesised" in version_page
    # Its synthetic validation defects have exact masks: the outline level is calibrated on
    # them, and the page says where the areas are drawn.
    assert 0.0 < version.metadata["outline_threshold"] < 1.0
    assert "defect areas outlined (yellow on the heatmap) at level" in version_page
