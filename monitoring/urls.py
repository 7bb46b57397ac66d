from django.urls import path

from monitoring import apis

app_name = "monitoring"

urlpatterns = [
    path("lines", apis.LineReportListApi.as_view(), name="lines"),
    path("lines/<slug:code>", apis.LineReportApi.as_view(), name="line"),
    path("lines/<slug:code>/history", apis.LineHistoryApi.as_view(), name="line-history"),
    path("lines/<slug:code>/rules", apis.LineRulesApi.as_view(), name="line-rules"),
    path(
        "lines/<slug:code>/rules/changes",
        apis.LineRulesChangesApi.as_view(),
        name="line-rules-changes",
    ),
    path("lines/<slug:code>/deliveries", apis.LineDeliveriesApi.as_view(), name="line-deliveries"),
    path("lines/<slug:code>/reference", apis.PinReferenceApi.as_view(), name="line-reference"),
    path("lines/<slug:code>/label-tasks", apis.LabelWindowApi.as_view(), name="line-label-tasks"),
    path("lines/<slug:code>/retrain", apis.RetrainApi.as_view(), name="line-retrain"),
    path("lines/<slug:code>/lower-level", apis.LowerLevelApi.as_view(), name="line-lower-level"),
    path("alerts", apis.AlertListApi.as_view(), name="alerts"),
]
