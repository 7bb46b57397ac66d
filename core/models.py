"""Production lines, their audited settings, and the stations that post to them.

The tables keep their first names (`inspection_productionline`, ...): the models moved here
from `inspection` so that every app can refer to a line without importing the capture flow."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.choices import AutomationLevel, OutagePolicy, Verdict

__all__ = [
    "AutomationLevel",
    "LineSettingsChange",
    "OutagePolicy",
    "ProductionLine",
    "Station",
    "Verdict",
]


class ProductionLine(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=120)
    automation_level = models.CharField(
        max_length=16, choices=AutomationLevel.choices, default=AutomationLevel.MANUAL
    )
    # Scores below pass_threshold are confident passes, at or above fail_threshold confident fails.
    pass_threshold = models.FloatField(default=0.3)
    fail_threshold = models.FloatField(default=0.7)
    audit_percent = models.FloatField(default=2.0)
    # The guard rail before the model may decide (partial/full): at least this many human
    # decisions where the model gave a confident verdict (shadow or assisted), agreeing this often.
    min_shadow_captures = models.PositiveIntegerField(default=200)
    min_agreement_percent = models.FloatField(default=95.0)
    # How long capture images are kept (days; None: for ever). Older images are deleted from
    # the store by a beat job unless a label task or a dataset version uses them; rows stay.
    image_retention_days = models.PositiveIntegerField(null=True, blank=True)
    # What the line's stations do with a phone while they cannot reach the server (read by the
    # station client from GET /api/v1/lines/<code> and kept for when the server is down).
    outage_policy = models.CharField(
        max_length=8, choices=OutagePolicy.choices, default=OutagePolicy.HOLD
    )
    # Inspectors see, claim and decide only the captures of lines they are assigned to;
    # supervisors and admins see every line. Edited by supervisors (audited) and in the admin.
    inspectors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="assigned_lines"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "inspection_productionline"
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(pass_threshold__gte=0)
                & Q(fail_threshold__lte=1)
                & Q(pass_threshold__lte=models.F("fail_threshold")),
                name="line_thresholds_ordered",
            ),
            models.CheckConstraint(
                condition=Q(audit_percent__gte=0) & Q(audit_percent__lte=100),
                name="line_audit_percent_range",
            ),
        ]

    def __str__(self) -> str:
        return self.code


class LineSettingsChange(models.Model):
    """One audited change of a line's settings: who, when, and each field's old and new value."""

    line = models.ForeignKey(ProductionLine, on_delete=models.CASCADE, related_name="changes")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    changes = models.JSONField()  # {"field": {"old": ..., "new": ...}}

    class Meta:
        db_table = "inspection_linesettingschange"
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.line} changed {', '.join(self.changes)}"


class Station(models.Model):
    line = models.ForeignKey(ProductionLine, on_delete=models.PROTECT, related_name="stations")
    name = models.CharField(max_length=64)
    # Only a SHA-256 of the token is kept; the token itself is shown once, at creation.
    token_hash = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=8)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "inspection_station"
        ordering = ["line__code", "name"]
        constraints = [
            models.UniqueConstraint(fields=["line", "name"], name="station_name_unique_per_line")
        ]

    def __str__(self) -> str:
        return f"{self.line.code}/{self.name}"

    @property
    def is_authenticated(self) -> bool:
        # DRF and Channels ask the authenticated principal this.
        return True
