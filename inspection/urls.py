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
    path("lines", apis.LineListApi.as_view(), name="lines"),
    path("lines/<slug:code>", apis.LineDetailApi.as_view(), name="line-detail"),
    path("lines/<slug:code>/changes", apis.LineChangeListApi.as_view(), name="line-changes"),
]
