"""PostgreSQL restarted under load: stations keep posting to a uvicorn whose database is a
cluster of the test's own (never the shared server). While the database is down, the API
answers 503 with Retry-After and a JSON error (pages a short 503), never another 5xx; the
stations retry with the same idempotency key; every capture answered 201 or 200, before,
during or after, is in the database."""

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest

from tests.factories import image_bytes
from tests.integration.conftest import ROOT, child_database_url, child_env
from tests.integration.fault_services import OwnPostgres, WebProcess, login, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
STATIONS = 4
DOWN_SECONDS = 12  # longer than the pool's wait for a connection (10 s): 503s are seen
IMAGES = [image_bytes(seed=seed) for seed in range(8)]

SEED = """
import json
from tests.factories import ProductionLineFactory, UserFactory, station_with_token
line = ProductionLineFactory(code="L1", automation_level="partial")  # no model: pending
stations = [station_with_token(line=line, name=f"S{{n}}") for n in range({stations})]
UserFactory(username="sam", roles=["supervisor"])
print(json.dumps([s.token for s in stations]))
"""


@pytest.fixture
def cluster(postgres, require_service):
    ok, why = OwnPostgres.available()
    require_service("a PostgreSQL cluster of the test's own", ok, why)
    own = OwnPostgres()
    try:
        own.init()
        own.start()
        own.psql("CREATE DATABASE faults")
        # The schema pytest-django migrated, copied (faster than migrating again).
        dump = subprocess.run(
            [str(own.bin / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
             child_database_url()],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        load = subprocess.run(
            ["psql", own.url(), "-v", "ON_ERROR_STOP=1", "-q"],
            input=dump.stdout, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert load.returncode == 0, load.stderr[-2000:]
        yield own
    finally:
        own.close()


@dataclass
class Tally:
    answered: dict[str, str] = field(default_factory=dict)  # idempotency key -> capture id
    statuses: Counter = field(default_factory=Counter)
    unavailable_bodies: list[dict] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    transport_errors: int = 0
    first_201_after: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def station_loop(base: str, token: str, name: str, tally: Tally, stop: threading.Event):
    """Posts captures one after another; a 503 or a dropped connection is retried with the
    same idempotency key, as a station does."""
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30
    ) as client:
        n = 0
        while not stop.is_set():
            key = f"{name}-{n}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    response = client.post(
                        "/api/v1/captures",
                        data={"line": "L1", "idempotency_key": key},
                        files={"image": ("p.jpg", IMAGES[n % len(IMAGES)], "image/jpeg")},
                    )
                except httpx.TransportError:
                    with tally.lock:
                        tally.transport_errors += 1
                    time.sleep(0.2)
                    continue
                with tally.lock:
                    tally.statuses[response.status_code] += 1
                    if response.status_code in (200, 201):
                        tally.answered[key] = response.json()["id"]
                        tally.first_201_after.setdefault("t", time.monotonic())
                    elif response.status_code == 503:
                        tally.unavailable_bodies.append(
                            {"retry_after": response.headers.get("Retry-After"),
                             **response.json()}
                        )  # fmt: skip
                    else:
                        tally.unexpected.append(f"{response.status_code} {response.text[:300]}")
                if response.status_code in (200, 201):
                    break
                time.sleep(0.5)  # the station honours Retry-After in its own way: soon
            n += 1
            time.sleep(0.02)


def test_postgres_restarted_under_load(cluster, tmp_path):
    seeded = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED.format(stations=STATIONS)],
        cwd=ROOT, env=child_env(DATABASE_URL=cluster.url()), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    tokens = json.loads(seeded.stdout.strip().splitlines()[-1])

    web = WebProcess(child_env(DATABASE_URL=cluster.url()), tmp_path / "uvicorn.log")
    web.start()
    tally, stop = Tally(), threading.Event()
    threads = [
        threading.Thread(target=station_loop, args=(web.url, token, f"s{i}", tally, stop))
        for i, token in enumerate(tokens)
    ]
    page: dict = {}
    try:
        supervisor = login(web.url, "sam")
        for thread in threads:
            thread.start()
        wait_until(lambda: len(tally.answered) >= 20, 30, "the stations got no answers")
        before = len(tally.answered)

        cluster.stop("fast")  # every connection dropped, as in a restart
        down_at = time.monotonic()

        def open_page():
            started = time.monotonic()
            response = supervisor.get("/supervise/")
            page.update(status=response.status_code, text=response.text,
                        retry_after=response.headers.get("Retry-After"),
                        seconds=time.monotonic() - started)  # fmt: skip

        page_thread = threading.Thread(target=open_page)
        page_thread.start()
        time.sleep(DOWN_SECONDS)
        during = len(tally.answered) - before
        tally.first_201_after.clear()
        cluster.start()
        up_at = time.monotonic()
        wait_until(lambda: tally.first_201_after.get("t"), 60, "no capture stored after restart")
        recovered = tally.first_201_after["t"] - up_at
        time.sleep(3)
        page_thread.join(30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(90)
        web.close()

    assert not tally.unexpected, tally.unexpected[:5]  # no 500, nor any other surprise
    assert tally.statuses[503] >= 1, tally.statuses  # the outage was seen
    for body in tally.unavailable_bodies:
        assert body["retry_after"] == "5" and body["error"]["code"] == "database_unavailable"
    assert page["status"] == 503 and page["retry_after"] == "5", page
    assert "database" in page["text"]

    with psycopg.connect(cluster.url("faults")) as connection:
        stored = {str(row[0]) for row in connection.execute("SELECT id FROM inspection_capture")}
    answered = set(tally.answered.values())
    lost = answered - stored
    assert not lost, f"{len(lost)} captures answered 201/200 are not in the database"
    print(
        f"\npostgres restart: captures answered {len(answered)} (201: {tally.statuses[201]}, "
        f"200 on retry: {tally.statuses[200]}), in the database: {len(answered & stored)}, "
        f"lost: {len(lost)}; while down {DOWN_SECONDS} s: {tally.statuses[503]} x 503, "
        f"{during} answered 201 (before the stop took), other 5xx: 0, dropped connections: "
        f"{tally.transport_errors}; first 201 {recovered:.1f} s after the restart; "
        f"page 503 after {page['seconds']:.1f} s; down since {up_at - down_at:.1f} s"
    )
