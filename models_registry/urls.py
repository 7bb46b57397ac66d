from django.urls import path

from models_registry import apis

app_name = "models_registry"

urlpatterns = [
    path("training-runs", apis.TrainingRunListApi.as_view(), name="training-runs"),
    path("training-runs/<int:run_id>", apis.TrainingRunDetailApi.as_view(), name="training-run"),
    path(
        "training-runs/<int:run_id>/cancel",
        apis.TrainingRunCancelApi.as_view(),
        name="training-run-cancel",
    ),
    path("versions", apis.ModelVersionListApi.as_view(), name="versions"),
    path("versions/<int:version_id>", apis.ModelVersionDetailApi.as_view(), name="version"),
    path(
        "versions/<int:version_id>/evaluations",
        apis.EvaluationRequestApi.as_view(),
        name="version-evaluations",
    ),
    path("evaluations/<int:evaluation_id>", apis.EvaluationDetailApi.as_view(), name="evaluation"),
    path("lines/<slug:code>/shadow", apis.ShadowApi.as_view(), name="line-shadow"),
    path("lines/<slug:code>/canary", apis.CanaryApi.as_view(), name="line-canary"),
    path("lines/<slug:code>/canary/ramp", apis.CanaryRampApi.as_view(), name="line-canary-ramp"),
    path("lines/<slug:code>/promote", apis.PromoteApi.as_view(), name="line-promote"),
    path("lines/<slug:code>/rollback", apis.RollbackApi.as_view(), name="line-rollback"),
    path("lines/<slug:code>/gate", apis.GateApi.as_view(), name="line-gate"),
    path("batch-predictions", apis.BatchPredictionListApi.as_view(), name="batch-predictions"),
    path(
        "batch-predictions/<int:batch_id>",
        apis.BatchPredictionDetailApi.as_view(),
        name="batch-prediction",
    ),
]
