"""Trained model versions (artifact files) and which of them serve each production line; the
training runs, evaluations and batch predictions that make and judge them; the audited rollout
events of every line."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelStatus(models.TextChoices):
    """Where a version stands, across all lines: the most exposed role it holds somewhere."""

    CANDIDATE = "candidate", "Candidate"
    SHADOW = "shadow", "Shadow"
    CANARY = "canary", "Canary"
    PRODUCTION = "production", "Production"
    ARCHIVED = "archived", "Archived"


class ModelVersion(models.Model):
    name = models.CharField(max_length=120)
    # 1, 2, 3, ... per name: "scratchnet v3".
    version = models.PositiveIntegerField(default=1)
    # Path of the vision artifact, relative to MODELS_ROOT (or absolute).
    artifact = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64, unique=True)
    # The artifact's own metadata: architecture, thresholds, training config and data hash.
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE
    )
    # Lineage: the production model it was meant to replace, the data and the code it came from.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    dataset_version = models.ForeignKey(
        "labeling.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="model_versions",
    )
    # Where the training data came from in words, e.g. "dataset v3 (train split)", "synthetic:96".
    training_data = models.CharField(max_length=200, blank=True)
    code_version = models.CharField(max_length=64, blank=True)  # git commit of the trainer
    metrics = models.JSONField(default=dict, blank=True)  # validation metrics from training
    # The ONNX export stations run at the edge (made after registration, parity-checked against
    # the eager model): {"status": "pending"|"ready"|"failed", "artifact", "sha256", "bytes",
    # "max_abs_diff", "tolerance", "input_spec", "exported_at", "error"}.
    edge_export = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="model_version_number_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


class DeploymentRole(models.TextChoices):
    PRODUCTION = "production", "Production: decides or assists"
    SHADOW = "shadow", "Shadow: runs beside production, never acted on"
    CANARY = "canary", "Canary: decides for a stable fraction of captures"


class Deployment(models.Model):
    line = models.ForeignKey(
        "core.ProductionLine", on_delete=models.CASCADE, related_name="deployments"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="deployments"
    )
    role = models.CharField(max_length=16, choices=DeploymentRole.choices)
    canary_percent = models.FloatField(default=0)
    deployed_at = models.DateTimeField(auto_now_add=True)
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Canary only: ramp 5 -> 25 -> 50 -> 100 -> production on a schedule while the inspectors'
    # override rate on its decisions stays at or under the bound; roll back when it passes it.
    auto_ramp = models.BooleanField(default=False)
    ramp_interval_minutes = models.PositiveIntegerField(default=60)
    max_override_percent = models.FloatField(default=10.0)
    min_decisions = models.PositiveIntegerField(default=20)  # before the bound is judged
    ramped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["line", "role"]
        constraints = [
            models.UniqueConstraint(fields=["line", "role"], name="deployment_one_per_role"),
            models.CheckConstraint(
                condition=Q(canary_percent__gte=0) & Q(canary_percent__lte=100),
                name="deployment_canary_percent_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.line_id} {self.role}: {self.model_version_id}"


class RolloutAction(models.TextChoices):
    SHADOW_START = "shadow_start", "Shadow started"
    SHADOW_STOP = "shadow_stop", "Shadow stopped"
    CANARY_START = "canary_start", "Canary started"
    CANARY_RAMP = "canary_ramp", "Canary ramped"
    CANARY_ROLLBACK = "canary_rollback", "Canary rolled back"
    PROMOTE = "promote", "Promoted to production"
    ROLLBACK = "rollback", "Production rolled back"


class RolloutEvent(models.Model):
    """One audited rollout transition on a line: who (or the schedule), when, what and why."""

    line = models.ForeignKey(
        "core.ProductionLine", on_delete=models.CASCADE, related_name="rollout_events"
    )
    action = models.CharField(max_length=24, choices=RolloutAction.choices)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="rollout_events"
    )
    # promote: the production model it replaced (what a rollback goes back to).
    previous_model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    percent = models.FloatField(null=True, blank=True)
    reason = models.TextField(blank=True)
    automatic = models.BooleanField(default=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.line_id} {self.action} {self.model_version_id}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class DataSource(models.TextChoices):
    DATASET = "dataset", "A frozen dataset version"
    REVIEWED_NOW = "reviewed_now", "All reviewed labels now (freezes a new dataset version)"
    SYNTHETIC = "synthetic", "Synthetic phones (demo, smoke tests)"


class Job(models.Model):
    """What every worker-run job shares: status, progress and a heartbeat in its database row."""

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0)  # 0..1
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker_id = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def percent(self) -> int:
        return round(100 * self.progress)


class TrainingRun(Job):
    name = models.CharField(max_length=120, default="scratchnet")
    data_source = models.CharField(max_length=16, choices=DataSource.choices)
    dataset_version = models.ForeignKey(
        "labeling.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="training_runs",
    )
    synthetic_count = models.PositiveIntegerField(default=0)
    synthetic_seed = models.IntegerField(default=0)
    # vision.train.TrainConfig fields (minutes, max_steps, crop, ...); "image_size" (synthetic).
    config = models.JSONField(default=dict, blank=True)
    # The line whose production model is the parent, and the benchmark to evaluate the result on.
    line = models.ForeignKey(
        "core.ProductionLine",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_runs",
    )
    parent = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    benchmark = models.CharField(max_length=120, blank=True)  # see models_registry.benchmarks
    automatic = models.BooleanField(default=False)  # started by the auto-retrain schedule
    cancel_requested = models.BooleanField(default=False)
    epoch = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    last_loss = models.FloatField(null=True, blank=True)
    history = models.JSONField(default=list, blank=True)  # one entry per epoch: loss, val metrics
    # The settings chosen from the data at the start, with what was measured and why
    # (vision.train.recipe); {} until training has loaded its data.
    recipe = models.JSONField(default=dict, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"training run {self.pk} ({self.status})"


class Evaluation(Job):
    """A model version measured on a benchmark; comparisons only between equal benchmark keys."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="evaluations"
    )
    benchmark = models.CharField(max_length=120)  # e.g. "dataset:3:test", "synthetic:64:7:128x72"
    benchmark_label = models.CharField(max_length=200, blank=True)
    items_hash = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    slices = models.JSONField(default=dict, blank=True)  # {"defect_type": [{"value", "n", ...}]}
    worst = models.JSONField(default=dict, blank=True)  # {"false_negatives": [...], ...}

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"evaluation {self.pk} of {self.model_version_id} on {self.benchmark}"


class BatchPrediction(Job):
    """Re-score stored captures of a date range with a chosen version (e.g. nightly)."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="batch_predictions"
    )
    line = models.ForeignKey("core.ProductionLine", null=True, blank=True, on_delete=models.CASCADE)
    received_after = models.DateTimeField()
    received_before = models.DateTimeField()
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"batch prediction {self.pk} ({self.status})"


class BatchPredictionResult(models.Model):
    batch = models.ForeignKey(BatchPrediction, on_delete=models.CASCADE, related_name="results")
    capture = models.ForeignKey("inspection.Capture", on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()
    verdict = models.CharField(max_length=16)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "capture"], name="batch_result_once")
        ]

    def __str__(self) -> str:
        return f"{self.capture_id}: {self.verdict} {self.score:.3f}"


class LineTrainingPolicy(models.Model):
    """Per line: start a training run by itself once enough new reviewed labels arrived."""

    line = models.OneToOneField(
        "core.ProductionLine", on_delete=models.CASCADE, related_name="training_policy"
    )
    auto_retrain = models.BooleanField(default=False)
    min_new_labels = models.PositiveIntegerField(default=200)
    benchmark = models.CharField(max_length=120, blank=True)
    config = models.JSONField(default=dict, blank=True)
    last_triggered_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"training policy of {self.line_id}"
