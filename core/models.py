"""Production lines, their audited settings, the stations that post to them, and the defect
taxonomies (the defect types a line's people label) with their audit trail.

The tables keep their first names (`inspection_productionline`, ...): the models moved here
from `inspection` so that every app can refer to a line without importing the capture flow."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.choices import AutomationLevel, DefectSeverity, OutagePolicy, Verdict

__all__ = [
    "AutomationLevel",
    "DefectSeverity",
    "DefectType",
    "LineSettingsChange",
    "OutagePolicy",
    "ProductionLine",
    "Station",
    "Taxonomy",
    "TaxonomyChange",
    "Verdict",
]


class Taxonomy(models.Model):
    """A named set of defect types; a line uses its own taxonomy, or the default one.

    Defect types are data, not code: regions, dataset items and decisions keep the type's
    `name` as a string, so a type is deactivated, never deleted once something carries it.
    """

    name = models.SlugField(max_length=32, unique=True)
    label = models.CharField(max_length=120)
    # Exactly one taxonomy is the default: every line without a taxonomy of its own uses it.
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="taxonomy_one_default"
            )
        ]

    def __str__(self) -> str:
        return self.name


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
    # The share of the verdicts the edge model gave during an outage (uploaded afterwards) that
    # go to the inspectors' audit queue. All by default: outages are rare, and those phones
    # left on a model the server did not run, perhaps an older one, with no shadow or canary.
    edge_audit_percent = models.FloatField(default=100.0)
    # Inspectors see, claim and decide only the captures of lines they are assigned to;
    # supervisors and admins see every line. Edited by supervisors (audited) and in the admin.
    inspectors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="assigned_lines"
    )
    # The defect types the line's inspectors and labelers use (None: the default taxonomy).
    taxonomy = models.ForeignKey(
        Taxonomy, null=True, blank=True, on_delete=models.PROTECT, related_name="lines"
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
            models.CheckConstraint(
                condition=Q(edge_audit_percent__gte=0) & Q(edge_audit_percent__lte=100),
                name="line_edge_audit_percent_range",
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


class DefectType(models.Model):
    """One type of a taxonomy: its stable `name` (what the data carries), how pages show it
    (label, colour, hotkey, order) and whether it fails a phone (severity)."""

    taxonomy = models.ForeignKey(Taxonomy, on_delete=models.CASCADE, related_name="defect_types")
    name = models.SlugField(max_length=32)
    label = models.CharField(max_length=60)
    colour = models.CharField(max_length=7)  # #rrggbb
    # One key on the annotation page (a letter or digit the page does not use itself).
    hotkey = models.CharField(max_length=1, blank=True)
    severity = models.CharField(
        max_length=8, choices=DefectSeverity.choices, default=DefectSeverity.FAIL
    )
    order = models.PositiveSmallIntegerField(default=0)
    # Inactive types are not offered for new regions; data that carries them stays readable.
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["taxonomy", "order", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["taxonomy", "name"], name="defect_type_name_unique_per_taxonomy"
            ),
            # A deactivated type gives its hotkey back.
            models.UniqueConstraint(
                fields=["taxonomy", "hotkey"],
                condition=Q(is_active=True) & ~Q(hotkey=""),
                name="defect_type_hotkey_unique_per_taxonomy",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.taxonomy_id}:{self.name}"


class TaxonomyChange(models.Model):
    """One audited change of a taxonomy or one of its types: who, when, what, old and new."""

    taxonomy = models.ForeignKey(Taxonomy, on_delete=models.CASCADE, related_name="changes")
    defect_type = models.CharField(max_length=32, blank=True)  # the type's name, if one
    action = models.CharField(max_length=16)  # created, updated, deactivated, deleted, ...
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    changes = models.JSONField()  # {"field": {"old": ..., "new": ...}}

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.taxonomy_id} {self.action} {self.defect_type}".strip()
