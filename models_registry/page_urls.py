from django.urls import path

from models_registry import views

urlpatterns = [
    path("", views.index, name="models"),
    path("runs/<int:run_id>/", views.training_run, name="models-run"),
    path("<int:version_id>/", views.model_version, name="models-version"),
    path(
        "evaluations/<int:evaluation_id>/overlays/<str:name>",
        views.evaluation_overlay,
        name="models-evaluation-overlay",
    ),
]
