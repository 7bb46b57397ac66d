"""The soak of bench/soak.py with small numbers (CI): stations on a model-decided and on a
human-decided line, inspectors' websockets deciding, for 20 s against uvicorn (DEBUG off):
every 201 capture is in the database, every pending one reached its station decided, no 5xx,
the web process's memory flat, p99 reported. `python bench/soak.py` runs it for minutes."""

import secrets
import uuid

import pytest

from bench import soak as bench_soak
from tests.integration.conftest import child_env
from tests.integration.fault_services import WebProcess

pytestmark = [pytest.mark.integration, pytest.mark.soak, pytest.mark.django_db(transaction=True)]
SECONDS, RATE, STATIONS, INSPECTORS = 20, 8, 4, 2


def test_soak_loses_nothing_and_keeps_memory_flat(postgres, redis_url, model_artifact, tmp_path):
    prepared = bench_soak.soak_setup(
        stations=STATIONS, inspectors=INSPECTORS, artifact=model_artifact
    )
    env = child_env(
        DEBUG="0",  # as deployed: no query log growing in memory
        HTTPS="0",
        SECRET_KEY=secrets.token_urlsafe(32),
        LOG_LEVEL="WARNING",
        CHANNELS_PREFIX=f"test-{uuid.uuid4().hex[:8]}",
    )
    web = WebProcess(env, tmp_path / "uvicorn.log")
    web.start()
    try:
        soak = bench_soak.Soak(
            url=web.url,
            stations=prepared["stations"],
            inspectors=[
                bench_soak.inspector_cookies(web.url, *login) for login in prepared["inspectors"]
            ],
            seconds=SECONDS,
            rate=RATE,
            web_pids=[web.process.pid],
            grace_seconds=15,
        )
        figures, tally = bench_soak.soak_run(soak)
    finally:
        web.close()
    database = bench_soak.soak_verify(tally)
    print(f"\nsoak: {figures} database: {database}")

    assert figures["http_5xx"] == 0 and figures["transport_errors"] == 0, figures["errors"]
    assert not figures["errors"], figures["errors"]
    assert figures["captures_answered"] >= 0.8 * SECONDS * RATE, figures
    assert database["lost"] == 0 and database["in_database"] == figures["captures_answered"]
    assert figures["pending"] > 0 and database["pending_lost"] == 0, (figures, database)
    assert figures["pending_not_at_station_by_the_end"] == 0, figures
    assert figures["inspector_events"] >= figures["pending"]
    assert figures["p99_ms"] is not None and figures["pending_verdict_p99_ms"] is not None
    rss = figures["rss_mb"]
    assert rss["samples"] >= 5 and rss["last"] - rss["after_warmup"] < 64, rss
