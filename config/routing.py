"""Websocket URLs. Browser feeds (session cookies) check the Origin; stations use tokens."""

from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from inspection import consumers
from monitoring import consumers as monitoring_consumers

websocket_urlpatterns = [
    path("ws/stations/<int:station_id>/", consumers.StationConsumer.as_asgi()),
    path(
        "ws/lines/<slug:line_code>/",
        AllowedHostsOriginValidator(consumers.LineConsumer.as_asgi()),
    ),
    path(
        "ws/monitoring/",
        AllowedHostsOriginValidator(monitoring_consumers.MonitoringConsumer.as_asgi()),
    ),
]
