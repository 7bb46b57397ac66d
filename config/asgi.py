"""The ASGI app: HTTP (Django) and websockets (Channels). `uvicorn config.asgi:application`."""

import logging
import os

from django.conf import settings
from django.core.asgi import get_asgi_application

# uvicorn turns its access log off (`--no-access-log`, and `config.serve` unless given
# `--access-log`) by leaving the logger without handlers or propagation, and decides per
# connection by whether it has handlers; Django's LOGGING (JSON lines) would give it one back.
# Each line costs the station ~0.15 ms, written before the answer's body is sent.
_access_logger = logging.getLogger("uvicorn.access")
_access_log_off = not _access_logger.handlers and not _access_logger.propagate

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

if _access_log_off:
    _access_logger.handlers.clear()
    _access_logger.propagate = False

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from config.settings import check_production_settings  # noqa: E402
from core.asgi_limits import BodySizeLimitMiddleware  # noqa: E402
from core.asgi_threads import ThreadedRoutes  # noqa: E402
from inspection.apis.captures import capture_decode_early  # noqa: E402

check_production_settings()

from models_registry.serving import warm_deployed_in_background  # noqa: E402

warm_deployed_in_background()

from config.startup import startup_objects_freeze  # noqa: E402

startup_objects_freeze()

application = ProtocolTypeRouter(
    {
        # Oversized bodies are refused before Django reads them (core/asgi_limits.py); the
        # station's capture POST runs whole in one thread (core/asgi_threads.py), its image
        # decoded meanwhile in another.
        "http": BodySizeLimitMiddleware(
            ThreadedRoutes(
                django_asgi_app,
                threads=settings.CAPTURE_THREADS,
                early=capture_decode_early if settings.CAPTURE_DECODE_EARLY else None,
            )
        ),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
