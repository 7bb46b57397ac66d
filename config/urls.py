"""URLs: pages, the v1 API, the OpenAPI schema and docs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config import health, metrics
from core.errors import json_not_found
from inspection import views as inspection_views
from models_registry import apis as registry_apis

urlpatterns = [
    # Operations (shared/INTERFACES.md): probes and the Prometheus scrape, no login.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("", inspection_views.home, name="home"),
    path("inspect/<str:line_codes>/", inspection_views.inspect, name="inspect"),
    path("supervise/", inspection_views.supervise, name="supervise"),
    path("supervise/defect-types/", inspection_views.defect_taxonomy, name="defect-taxonomy"),
    path("models/", include("models_registry.page_urls")),
    path("label/", include("labeling.page_urls")),
    path("monitor/", include("monitoring.page_urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/models/", include("models_registry.urls")),
    path("api/v1/monitoring/", include("monitoring.urls")),
    # The line's edge model (ONNX) for its stations (shared/INTERFACES.md).
    path("api/v1/lines/<slug:code>/model", registry_apis.LineEdgeModelApi.as_view()),
    path("api/v1/", include("inspection.urls")),
    path("api/v1/", include("labeling.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI from our own static files (drf-spectacular-sidecar: factories are often
    # offline), its start-up script a file of its own (the CSP refuses inline scripts).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # Unknown API URLs answer JSON even with DEBUG on (Django's debug 404 page is HTML).
    re_path(r"^api/", json_not_found),
]

handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"
