"""Every write of labeling: tasks, annotations and review, dataset versions, imports."""

from labeling.services.datasets import (
    dataset_version_create,
    dataset_version_from_items,
    dataset_version_from_manifest,
)
from labeling.services.tasks import task_create_from_inspection, task_withdraw_from_inspection

__all__ = [
    "dataset_version_create",
    "dataset_version_from_items",
    "dataset_version_from_manifest",
    "task_create_from_inspection",
    "task_withdraw_from_inspection",
]
