"""Admin pages for looking around (changes of line settings go through the API, audited)."""

from django.contrib import admin

from inspection.models import Capture, Decision, Prediction


@admin.register(Capture)
class CaptureAdmin(admin.ModelAdmin):
    list_display = ["id", "line", "station", "received_at", "width", "height"]
    list_filter = ["line"]
    readonly_fields = [field.name for field in Capture._meta.fields]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["capture", "role", "model_version", "score", "verdict", "latency_ms"]
    list_filter = ["role"]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ["capture", "status", "verdict", "decided_by", "reason", "overrode_model"]
    list_filter = ["status", "verdict", "decided_by", "reason"]
