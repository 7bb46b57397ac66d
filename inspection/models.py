"""Captures, model predictions and the decision on each capture."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce

from core.models import ProductionLine, Station, Verdict
from inspection.choices import DecisionReason


class Capture(models.Model):
    # A UUID made before the insert: the canary and audit hashes need the id before predicting.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    line = models.ForeignKey(ProductionLine, on_delete=models.PROTECT, related_name="captures")
    station = models.ForeignKey(Station, on_delete=models.PROTECT, related_name="captures")
    idempotency_key = models.CharField(max_length=64)
    image = models.CharField(max_length=200)  # path under MEDIA_ROOT, named by sha256
    image_sha256 = models.CharField(max_length=64, db_index=True)
    image_bytes = models.PositiveIntegerField()
    image_format = models.CharField(max_length=8)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    image_stats = models.JSONField(default=dict)  # for drift monitoring
    metadata = models.JSONField(default=dict, blank=True)
    captured_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(db_index=True)
    # Set when the line's retention deleted the image from the store (the row stays).
    image_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "idempotency_key"], name="capture_idempotency_key_per_station"
            )
        ]
        indexes = [models.Index(fields=["line", "-received_at"], name="capture_line_recent")]

    def __str__(self) -> str:
        return f"{self.line_id}:{self.id}"


class PredictionRole(models.TextChoices):
    PRODUCTION = "production", "Production"
    SHADOW = "shadow", "Shadow"
    CANARY = "canary", "Canary"


class Prediction(models.Model):
    capture = models.ForeignKey(Capture, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        "models_registry.ModelVersion", on_delete=models.PROTECT, related_name="predictions"
    )
    role = models.CharField(max_length=16, choices=PredictionRole.choices)
    score = models.FloatField()
    # The model's own reading with its thresholds: pass, fail or uncertain.
    verdict = models.CharField(max_length=16)
    regions = models.JSONField(default=list)
    # The model's pooled features of the image (a few dozen numbers): what monitoring compares
    # to tell a changed scene the hand-made image statistics miss.
    embedding = models.JSONField(default=list, blank=True)
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["capture", "role"]
        constraints = [
            models.UniqueConstraint(fields=["capture", "role"], name="prediction_one_per_role")
        ]
        indexes = [
            # A shadow model's newest predictions (its agreement on the version page): a few
            # percent of the table, read newest first without sorting the rest.
            models.Index(
                fields=["model_version", "-created_at"],
                condition=Q(role="shadow"),
                name="prediction_shadow_recent",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.score:.3f} on {self.capture_id}"


class DecisionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DECIDED = "decided", "Decided"


class DecidedBy(models.TextChoices):
    MODEL = "model", "Model"
    HUMAN = "human", "Human"
    # The station's copy of the model, while the server could not be reached (uploaded after).
    EDGE = "edge", "Edge model"


class AuditStatus(models.TextChoices):
    """A `full`-mode audit sample: the model decided, a human reviews it afterwards."""

    PENDING = "pending", "Waiting for an inspector"
    CONFIRMED = "confirmed", "The inspector agreed with the model"
    OVERRIDDEN = "overridden", "The inspector overrode the model"


AUDIT_FINISHED = (AuditStatus.CONFIRMED, AuditStatus.OVERRIDDEN)
# Decisions a human judged: gave the verdict, or reviewed the model's (an audit). The figures
# comparing model and human (agreement, override rates, canary rollback) read these.
HUMAN_JUDGED = Q(decided_by="human") | Q(audit_status__in=AUDIT_FINISHED)
# When a human judged it: the audit review, else the verdict (agreement reads newest first).
JUDGED_AT = Coalesce("audited_at", "decided_at")


class Decision(models.Model):
    capture = models.OneToOneField(Capture, on_delete=models.CASCADE, related_name="decision")
    # The capture's line, kept here too: monitoring reads a line's newest judged decisions by
    # (line, decided_at) without joining millions of captures.
    line = models.ForeignKey(
        ProductionLine, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=DecisionStatus.choices, default=DecisionStatus.PENDING
    )
    verdict = models.CharField(max_length=8, choices=Verdict.choices, blank=True)
    decided_by = models.CharField(max_length=8, choices=DecidedBy.choices, blank=True)
    decided_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # Why the policy routed it this way (inspection.policy.decide), and any serving error.
    reason = models.CharField(max_length=24, choices=DecisionReason.choices)
    # Whether the inspector is shown the model's verdict and regions (the policy says so).
    model_shown = models.BooleanField(default=False)
    detail = models.TextField(blank=True)
    # The prediction the decision rests on or was shown with (production or canary).
    acting_prediction = models.ForeignKey(
        Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model_verdict = models.CharField(max_length=16, blank=True)
    overrode_model = models.BooleanField(null=True, blank=True)
    audit = models.BooleanField(default=False)
    # The audit review of an audit sample (blank when not audited). `verdict` always holds the
    # verdict in force: an override replaces the model's verdict with the inspector's (the
    # station gets a correction) and decided_by becomes human; a confirmation changes nothing.
    audit_status = models.CharField(max_length=16, choices=AuditStatus.choices, blank=True)
    audit_verdict = models.CharField(max_length=8, choices=Verdict.choices, blank=True)
    audited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    audited_at = models.DateTimeField(null=True, blank=True)
    regions = models.JSONField(default=list, blank=True)  # the inspector's boxes
    note = models.TextField(blank=True)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When the claiming inspector opened it (kept after the verdict: seconds per decision).
    claimed_at = models.DateTimeField(null=True, blank=True)
    # The claim's lease; renewed while the inspector has the capture open, free again after.
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    # A verdict the station's edge model gave during an outage (uploaded with the capture; the
    # server does not decide it again). Kept after an audit override replaces the verdict.
    edge_verdict = models.CharField(max_length=8, choices=Verdict.choices, blank=True)
    edge_score = models.FloatField(null=True, blank=True)
    edge_model_version = models.ForeignKey(
        "models_registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # the partial index below: a handful of rows among millions
    )
    edge_model_sha256 = models.CharField(max_length=64, blank=True)  # of the ONNX file it ran
    edge_decided_at = models.DateTimeField(null=True, blank=True)  # the station's clock

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(status=DecisionStatus.PENDING, verdict="")
                    | Q(status=DecisionStatus.DECIDED) & ~Q(verdict="") & ~Q(decided_by="")
                ),
                name="decision_final_has_verdict",
            )
        ]
        indexes = [
            models.Index(fields=["status"], name="decision_status"),
            # Monitoring reads a line's newest (and first) judged decisions, human decisions and
            # audit reviews: partial indexes keep those reads short on millions of captures.
            # A line's newest decisions (monitoring's newest activity). With the line first:
            # on decided_at alone the planner walked every line's newest decisions to find
            # one line's judged ones.
            models.Index(fields=["line", "-decided_at"], name="decision_line_recent"),
            # An inspector's shift figures (their human verdicts since the shift began).
            models.Index(
                fields=["decided_by_user", "decided_at"],
                condition=Q(decided_by="human"),
                name="decision_human_by_user",
            ),
            models.Index(
                fields=["line", "decided_at"],
                condition=Q(overrode_model__isnull=False),
                name="decision_judged",
            ),
            models.Index(
                fields=["line", "decided_at"],
                condition=Q(decided_by="human"),
                name="decision_by_human",
            ),
            models.Index(
                fields=["audited_at"],
                condition=Q(audited_at__isnull=False),
                name="decision_audited",
            ),
            models.Index(fields=["audit_status"], name="decision_audit_status"),
            # The supervisor's agreement figures: a line's newest judged decisions, in the
            # order they were judged (inspection.selectors.line_agreement).
            models.Index(
                "line",
                JUDGED_AT.desc(),
                condition=Q(overrode_model__isnull=False),
                name="decision_judged_recent",
            ),
            models.Index(
                fields=["edge_model_version"],
                condition=Q(edge_model_version__isnull=False),
                name="decision_edge_model",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.capture_id}: {self.verdict or self.status}"
