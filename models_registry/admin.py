from django.contrib import admin

from models_registry.models import Deployment, ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "sha256", "created_at"]
    readonly_fields = ["artifact", "sha256", "metadata"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["line", "role", "model_version", "canary_percent", "deployed_at"]
