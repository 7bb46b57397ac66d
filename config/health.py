"""`/healthz` (the process answers) and `/readyz` (it can serve captures): no login, JSON.

A load balancer or orchestrator polls them, so both are cheap: /healthz touches nothing;
/readyz runs `SELECT 1`, a Redis PING (when REDIS_URL is set) and one small query of the
deployed models, each bounded by HEALTH_CHECK_TIMEOUT_SECONDS. Not ready is 503 with
Retry-After, and the body says which check failed and why.
"""

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from redis.backoff import NoBackoff
from redis.retry import Retry

from models_registry import serving
from models_registry.models import Deployment

RETRY_AFTER_SECONDS = 5
# The database check runs here, so a database that hangs (not refusing, just silent) costs a
# probe its timeout and no more; two threads at most, however often it is polled.
_database_checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz-db")
_warming_lock = threading.Lock()
_warming: threading.Thread | None = None


def _json(body: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    if status == 503:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@never_cache
@require_safe
def healthz(request):
    """The process is up and answering; says nothing about the database or Redis."""
    return _json({"status": "ok"})


def _database_select_one() -> float:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # this thread's connection goes back to the pool (or closes)
    return (time.perf_counter() - started) * 1000


def database_check(future: Future, timeout: float) -> dict[str, Any]:
    try:
        ms = future.result(timeout=timeout)
    except FutureTimeout:
        return {"ok": False, "error": f"no answer within {timeout:g} s"}
    except Exception as exc:  # whatever the driver raises when the database is away
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()[:300]}
    return {"ok": True, "ms": round(ms, 1)}


def redis_check(url: str, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # one try: the probe itself is the retry
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        client.close()
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _warm_in_background(rows: list[tuple[str, str]]) -> None:
    """Load the models this process has not loaded (after a failed start-up warm-up, or a
    rollout since); readiness follows once they are in. One warming thread at a time."""
    global _warming

    def run() -> None:
        for sha256, artifact in rows:
            serving.warm(sha256=sha256, artifact=artifact)

    with _warming_lock:
        if _warming is not None and _warming.is_alive():
            return
        _warming = threading.Thread(target=run, name="readyz-warm", daemon=True)
        _warming.start()


def warming_join(timeout: float | None = None) -> None:
    """Wait for the background warm-up started by /readyz (tests)."""
    thread = _warming
    if thread is not None:
        thread.join(timeout)


def models_check() -> dict[str, Any]:
    """Every deployed model (production, shadow, canary on any line) loaded in this process.

    Still loading or failed to load, the process is not ready: a web process whose models
    are not in memory would send its lines' captures to inspectors (or wait seconds to load)
    while its peers have them; a new process that cannot load a model (a missing mount, a
    store it cannot read) never takes traffic, and a rollout that brings one stops there.
    """
    rows = set(Deployment.objects.values_list("model_version__sha256", "model_version__artifact"))
    errors = serving.serving_errors()
    # serving keeps the loaded predictors by sha256; a dict read, no lock, no loading.
    loaded = set(serving._predictors)
    failed = {sha[:12]: errors[sha] for sha, _ in rows if sha in errors}
    loading = sorted(sha[:12] for sha, _ in rows if sha not in loaded and sha not in errors)
    missing = [(sha, artifact) for sha, artifact in rows if sha not in loaded]
    if missing:
        # Failed ones are retried once SERVING_ERROR_RETRY_SECONDS have passed.
        _warm_in_background(sorted(missing))
    result: dict[str, Any] = {
        "ok": not loading and not failed,
        "deployed": len(rows),
        "loaded": len(rows) - len(missing),
    }
    if loading:
        result["loading"] = loading
    if failed:
        result["failed"] = failed
    return result


@never_cache
@require_safe
def readyz(request):
    """Ready for captures: database reachable, Redis reachable (when configured), every
    deployed model loaded in this process. 503 with Retry-After otherwise."""
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    database = _database_checks.submit(_database_select_one)  # meanwhile, Redis
    redis_result = redis_check(settings.REDIS_URL, timeout) if settings.REDIS_URL else None
    checks: dict[str, Any] = {"database": database_check(database, timeout)}
    if redis_result is not None:
        checks["redis"] = redis_result
    if checks["database"]["ok"]:
        try:
            checks["models"] = models_check()
        except Exception as exc:  # e.g. not migrated yet
            checks["models"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    else:
        checks["models"] = {"ok": False, "error": "skipped: the database is not reachable"}
    ready = all(check["ok"] for check in checks.values())
    return _json(
        {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
    )
