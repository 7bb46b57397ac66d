"""What a web process does once at start-up, after Django is set up."""

import gc

from django.urls import get_resolver


def startup_objects_freeze() -> None:
    """Import every view now (not on the first request), then move what start-up made out of
    the cyclic garbage collector's sight: Django, DRF, torch and the apps are ~300,000 objects
    that live as long as the process, and every full collection walked them all (~250 ms,
    the p95 of the inspector's queue in bench/scale.py); frozen, it walks only what requests
    make."""
    get_resolver().url_patterns  # noqa: B018 (imports the URLconf and every view)
    gc.freeze()
