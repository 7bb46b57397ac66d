from django.urls import path

from inspection import apis

app_name = "inspection"

urlpatterns = [
    path("captures", apis.CaptureCollectionApi.as_view(), name="captures"),
    path("captures/<uuid:capture_id>", apis.capture_detail, name="capture-detail"),
    path("captures/<uuid:capture_id>/claim", apis.CaptureClaimApi.as_view(), name="capture-claim"),
    path(
        "captures/<uuid:capture_id>/verdict",
        apis.CaptureVerdictApi.as_view(),
        name="capture-verdict",
    ),
    path(
        "captures/<uuid:capture_id>/release",
        apis.CaptureReleaseApi.as_view(),
        name="capture-release",
    ),
    path("captures/<uuid:capture_id>/undo", apis.CaptureUndoApi.as_view(), name="capture-undo"),
    path("captures/<uuid:capture_id>/image", apis.CaptureImageApi.as_view(), name="capture-image"),
    path(
        "captures/<uuid:capture_id>/heatmap.png",
        apis.CaptureHeatmapApi.as_view(),
        name="capture-heatmap",
    ),
    path("queue", apis.InspectorQueueApi.as_view(), name="inspector-queue"),
    path("lines", apis.LineListApi.as_view(), name="lines"),
    path("lines/<slug:code>", apis.LineDetailApi.as_view(), name="line-detail"),
    path("lines/<slug:code>/changes", apis.LineChangeListApi.as_view(), name="line-changes"),
    # Defect taxonomies and their types (README "Defect taxonomy").
    path("taxonomies", apis.TaxonomyCollectionApi.as_view(), name="taxonomies"),
    path("taxonomies/<slug:name>", apis.TaxonomyDetailApi.as_view(), name="taxonomy-detail"),
    path(
        "taxonomies/<slug:name>/changes",
        apis.TaxonomyChangeListApi.as_view(),
        name="taxonomy-changes",
    ),
    path(
        "taxonomies/<slug:name>/defect-types",
        apis.DefectTypeCollectionApi.as_view(),
        name="defect-types",
    ),
    path(
        "taxonomies/<slug:name>/defect-types/<slug:type_name>",
        apis.DefectTypeDetailApi.as_view(),
        name="defect-type-detail",
    ),
]
