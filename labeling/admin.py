from django.contrib import admin

from labeling.models import LabelTask


@admin.register(LabelTask)
class LabelTaskAdmin(admin.ModelAdmin):
    list_display = ["capture", "source", "status", "pre_verdict", "created_at"]
    list_filter = ["source", "status"]
