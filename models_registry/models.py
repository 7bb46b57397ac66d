"""Trained model versions (artifact files) and which of them serve each production line."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    name = models.CharField(max_length=120)
    # Path of the vision artifact, relative to MODELS_ROOT (or absolute).
    artifact = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64, unique=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:12]})"


class DeploymentRole(models.TextChoices):
    PRODUCTION = "production", "Production: decides or assists"
    SHADOW = "shadow", "Shadow: runs beside production, never acted on"
    CANARY = "canary", "Canary: decides for a stable fraction of captures"


class Deployment(models.Model):
    line = models.ForeignKey(
        "inspection.ProductionLine", on_delete=models.CASCADE, related_name="deployments"
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
