from django.urls import path

from labeling import apis

app_name = "labeling"

urlpatterns = [
    path("label-tasks", apis.TaskListApi.as_view(), name="tasks"),
    path("label-tasks/next", apis.TaskNextApi.as_view(), name="task-next"),
    path("label-tasks/<int:task_id>", apis.TaskDetailApi.as_view(), name="task-detail"),
    path("label-tasks/<int:task_id>/image", apis.TaskImageApi.as_view(), name="task-image"),
    path(
        "annotations/<int:annotation_id>",
        apis.AnnotationDetailApi.as_view(),
        name="annotation-detail",
    ),
    path(
        "annotations/<int:annotation_id>/submit",
        apis.AnnotationSubmitApi.as_view(),
        name="annotation-submit",
    ),
    path(
        "annotations/<int:annotation_id>/release",
        apis.AnnotationReleaseApi.as_view(),
        name="annotation-release",
    ),
    path("annotations/<int:annotation_id>/accept", apis.ReviewAcceptApi.as_view(), name="accept"),
    path(
        "annotations/<int:annotation_id>/send-back",
        apis.ReviewSendBackApi.as_view(),
        name="send-back",
    ),
    path("reviews", apis.ReviewListApi.as_view(), name="reviews"),
    path("labelers/stats", apis.LabelerStatsApi.as_view(), name="labeler-stats"),
    path("datasets", apis.DatasetListApi.as_view(), name="datasets"),
    path("datasets/imports", apis.DatasetImportCollectionApi.as_view(), name="dataset-imports"),
    path(
        "datasets/imports/<int:import_id>",
        apis.DatasetImportDetailApi.as_view(),
        name="dataset-import-detail",
    ),
    path("datasets/<int:dataset_id>", apis.DatasetDetailApi.as_view(), name="dataset-detail"),
    path("datasets/<int:dataset_id>/coco", apis.DatasetCocoApi.as_view(), name="dataset-coco"),
    path("datasets/<int:dataset_id>/zip", apis.DatasetZipApi.as_view(), name="dataset-zip"),
]
