"""URLs: pages, the v1 API, the OpenAPI schema and docs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.errors import json_not_found
from inspection import views as inspection_views

urlpatterns = [
    path("", inspection_views.home, name="home"),
    path("inspect/<str:line_codes>/", inspection_views.inspect, name="inspect"),
    path("supervise/", inspection_views.supervise, name="supervise"),
    path("models/", include("models_registry.page_urls")),
    path("label/", include("labeling.page_urls")),
    path("monitor/", include("monitoring.page_urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/models/", include("models_registry.urls")),
    path("api/v1/monitoring/", include("monitoring.urls")),
    path("api/v1/", include("inspection.urls")),
    path("api/v1/", include("labeling.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Unknown API URLs answer JSON even with DEBUG on (Django's debug 404 page is HTML).
    re_path(r"^api/", json_not_found),
]

handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"
