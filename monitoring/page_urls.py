from django.urls import path

from monitoring import views

urlpatterns = [
    path("", views.overview, name="monitor"),
    path("<slug:line_code>/", views.line_page, name="monitor-line"),
]
