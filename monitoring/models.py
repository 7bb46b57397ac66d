"""What monitoring keeps per line: its rules, its data reference, each evaluation of each
signal (the time series the pages chart), the alert state between evaluations, alerts, their
webhook deliveries, and an audit of every change and action."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Signal(models.TextChoices):
    DATA_DRIFT = "data_drift", "Data drift (images)"
    PREDICTION_DRIFT = "prediction_drift", "Prediction drift (scores, deferrals, fails)"
    CONCEPT_DRIFT = "concept_drift", "Concept drift (inspectors' overrides)"
    YIELD = "yield", "Yield (defect rate per hour)"


class SignalStatus(models.TextChoices):
    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    DRIFTED = "drifted", "Drifted"
    INSUFFICIENT_DATA = "insufficient_data", "Not enough data"


class MonitoringRules(models.Model):
    """A line's alert rules; every change is audited (MonitoringRulesChange)."""

    line = models.OneToOneField(
        "core.ProductionLine", on_delete=models.CASCADE, related_name="monitoring_rules"
    )
    signals = models.JSONField(default=list)  # the signals that may open alerts; [] = all
    # Recent windows: the newest captures (data, predictions) and judged decisions (concept).
    data_window = models.PositiveIntegerField(default=200)
    decision_window = models.PositiveIntegerField(default=200)
    # The model's first judged decisions the override rate is compared with: at a 2% override
    # rate 300 hold only ~6 overrides, too few to see a rise to 10% within 300 decisions.
    decision_reference_size = models.PositiveIntegerField(default=1000)
    # The longer window the cumulative (CUSUM) test of slow drift runs over.
    trend_window = models.PositiveIntegerField(default=1000)
    # Without a training reference: this many captures after the model went into production.
    reference_size = models.PositiveIntegerField(default=500)
    # Hysteresis: an alert opens after this many bad evaluations in a row, closes after as
    # many ok ones. An evaluation happens only when new captures or decisions arrived.
    open_after = models.PositiveIntegerField(default=2)
    close_after = models.PositiveIntegerField(default=3)
    alert_on_warning = models.BooleanField(default=False)  # else only `drifted` opens one
    webhook_url = models.URLField(blank=True)
    webhook_secret = models.CharField(max_length=200, blank=True)
    email_recipients = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"monitoring rules of {self.line}"


class MonitoringRulesChange(models.Model):
    line = models.ForeignKey("core.ProductionLine", on_delete=models.CASCADE, related_name="+")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    changes = models.JSONField()  # {"field": {"old": ..., "new": ...}}

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.line} monitoring rules: {', '.join(self.changes)}"


class ReferenceKind(models.TextChoices):
    TRAINING_DATA = "training_data", "The production model's training data"
    PINNED = "pinned", "Captures a supervisor pinned as normal"
    FIRST_CAPTURES = "first_captures", "The first captures after the model went into production"


class Reference(models.Model):
    """What a line's images normally look like: per-capture statistics and the model's
    embeddings of a sample, with the captures they came from (for thumbnails)."""

    line = models.ForeignKey(
        "core.ProductionLine", on_delete=models.CASCADE, related_name="monitoring_references"
    )
    kind = models.CharField(max_length=24, choices=ReferenceKind.choices)
    # The model whose embeddings these are (embeddings compare only within one model).
    model_version = models.ForeignKey(
        "models_registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL
    )
    image_stats = models.JSONField(default=dict)  # {"brightness": [...], ...}
    embeddings = models.JSONField(default=list)  # [[...], ...]
    capture_ids = models.JSONField(default=list)  # a few, for the side-by-side thumbnails
    count = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=300, blank=True)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["line"], condition=Q(is_active=True), name="one_active_reference_per_line"
            )
        ]

    def __str__(self) -> str:
        return f"{self.line} reference ({self.kind}, {self.count})"


class SignalEvaluation(models.Model):
    """One evaluation of one signal on one line: a point of its time series."""

    line = models.ForeignKey("core.ProductionLine", on_delete=models.CASCADE, related_name="+")
    signal = models.CharField(max_length=24, choices=Signal.choices)
    status = models.CharField(max_length=24, choices=SignalStatus.choices)
    evaluated_at = models.DateTimeField()
    # The newest capture or decision the evaluation saw.
    through = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True)  # what the chart plots
    band_low = models.FloatField(null=True, blank=True)  # the reference band around it
    band_high = models.FloatField(null=True, blank=True)
    sample_size = models.PositiveIntegerField(default=0)
    summary = models.CharField(max_length=300, blank=True)
    evidence = models.JSONField(default=dict)

    class Meta:
        ordering = ["-evaluated_at", "-id"]
        indexes = [
            models.Index(fields=["line", "signal", "-evaluated_at"], name="evaluation_line_recent")
        ]

    def __str__(self) -> str:
        return f"{self.line} {self.signal} {self.status} at {self.evaluated_at:%Y-%m-%d %H:%M}"


class LineMonitorState(models.Model):
    """Between two runs of the job: how far it read, and each signal's alert state (streaks).
    The row is locked while a run evaluates the line, so two runs never step it twice."""

    line = models.OneToOneField(
        "core.ProductionLine", on_delete=models.CASCADE, related_name="monitor_state"
    )
    through = models.DateTimeField(null=True, blank=True)
    # The newest decision row (by id) the run saw. Rows written later with older times (a bulk
    # load, an import) are found by id, never by time: the counts kept from earlier runs (the
    # settled hours of the p-chart, the model's first judged window) are then counted again.
    decision_id_through = models.BigIntegerField(null=True, blank=True)
    alert_states = models.JSONField(default=dict)  # {"data_drift": AlertState.to_dict(), ...}
    last_report = models.JSONField(default=dict)  # the newest report, as the API shows it
    evaluated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"monitoring state of {self.line}"


class AlertSeverity(models.TextChoices):
    WARNING = "warning", "Warning"
    DRIFTED = "drifted", "Drifted"


class Alert(models.Model):
    line = models.ForeignKey("core.ProductionLine", on_delete=models.CASCADE, related_name="+")
    signal = models.CharField(max_length=24, choices=Signal.choices)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices)
    is_open = models.BooleanField(default=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    summary = models.CharField(max_length=300, blank=True)
    evidence = models.JSONField(default=dict)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["line", "signal"], condition=Q(is_open=True), name="one_open_alert"
            )
        ]
        indexes = [models.Index(fields=["is_open", "-opened_at"], name="alert_open_recent")]

    def __str__(self) -> str:
        return f"{self.line} {self.signal} {self.severity} ({'open' if self.is_open else 'closed'})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (retries exhausted)"


class WebhookDelivery(models.Model):
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16)  # opened, escalated, closed
    url = models.URLField()
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event} of alert {self.alert_id} to {self.url}: {self.status}"


class MonitoringAction(models.Model):
    """The audit of what supervisors did from the monitor page."""

    class Kind(models.TextChoices):
        PIN_REFERENCE = "pin_reference", "Pinned a new reference"
        LABEL_WINDOW = "label_window", "Opened the recent window as label tasks"
        RETRAIN = "retrain", "Started a retraining run"
        LOWER_LEVEL = "lower_level", "Moved the line down an automation level"

    line = models.ForeignKey("core.ProductionLine", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)
    detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} on {self.line}"
