"""Every write of labeling: tasks, annotations and review, dataset versions, imports."""

from labeling.services.annotations import (
    LEASE_SECONDS,
    annotation_release,
    annotation_save,
    annotation_submit,
    review_accept,
    review_send_back,
    task_import,
    task_next,
)
from labeling.services.datasets import (
    dataset_version_coco,
    dataset_version_create,
    dataset_version_from_coco,
    dataset_version_from_items,
    dataset_version_from_manifest,
)
from labeling.services.exports import dataset_version_zip
from labeling.services.tasks import (
    task_create_from_inspection,
    task_create_if_shadow_disagrees,
    task_withdraw_from_inspection,
)

__all__ = [
    "LEASE_SECONDS",
    "annotation_release",
    "annotation_save",
    "annotation_submit",
    "review_accept",
    "review_send_back",
    "task_create_if_shadow_disagrees",
    "task_import",
    "task_next",
    "dataset_version_coco",
    "dataset_version_create",
    "dataset_version_from_coco",
    "dataset_version_from_items",
    "dataset_version_from_manifest",
    "dataset_version_zip",
    "task_create_from_inspection",
    "task_withdraw_from_inspection",
]
