"""Admin pages for lines and stations (line settings change through the API, audited)."""

from django.contrib import admin

from core.models import LineSettingsChange, ProductionLine, Station


@admin.register(ProductionLine)
class ProductionLineAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "automation_level", "pass_threshold", "fail_threshold"]
    readonly_fields = [
        "automation_level",
        "pass_threshold",
        "fail_threshold",
        "audit_percent",
        "outage_policy",
    ]
    filter_horizontal = ["inspectors"]  # who may inspect the line (supervisors see all)


@admin.register(LineSettingsChange)
class LineSettingsChangeAdmin(admin.ModelAdmin):
    list_display = ["line", "changed_by", "changed_at"]
    readonly_fields = ["line", "changed_by", "changed_at", "changes"]


@admin.register(Station)
class StationAdmin(admin.ModelAdmin):
    list_display = ["name", "line", "token_prefix", "is_active", "last_seen_at"]
    readonly_fields = ["token_hash", "token_prefix"]
