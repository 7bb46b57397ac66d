"""Project configuration: settings, URLs, the ASGI app, the Celery app and websocket routing."""

from config.celery import app as celery_app

__all__ = ["celery_app"]
