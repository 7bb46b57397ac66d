"""Annotation tasks (a minimal start: tasks created from inspections, with pre-annotations)."""

from django.db import models


class LabelTaskSource(models.TextChoices):
    OVERRIDE = "override", "An inspector overrode the model"
    UNCERTAIN = "uncertain", "The model was uncertain"
    AUDIT = "audit", "Audit sample"
    MANUAL = "manual", "Decided by a human without a model"


class LabelTaskStatus(models.TextChoices):
    OPEN = "open", "Open"
    DONE = "done", "Done"


class LabelTask(models.Model):
    capture = models.ForeignKey(
        "inspection.Capture", on_delete=models.CASCADE, related_name="label_tasks"
    )
    source = models.CharField(max_length=16, choices=LabelTaskSource.choices)
    status = models.CharField(
        max_length=8, choices=LabelTaskStatus.choices, default=LabelTaskStatus.OPEN
    )
    # The inspector's verdict and boxes, offered to the labeler as a starting point.
    pre_verdict = models.CharField(max_length=8, blank=True)
    pre_annotation = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["capture", "source"], name="label_task_once_per_source")
        ]

    def __str__(self) -> str:
        return f"{self.source} task for {self.capture_id}"
