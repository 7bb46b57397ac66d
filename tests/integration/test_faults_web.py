"""A web process killed (SIGKILL) while stations long-poll for their verdicts: the polls drop,
and the stations' next requests, to the process restarted on the same port, succeed; the
captures are all there and the verdicts made on the new process reach the stations."""

import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from inspection.models import Capture
from tests.factories import ProductionLineFactory, UserFactory, image_bytes, station_with_token
from tests.integration.conftest import child_env
from tests.integration.fault_services import WebProcess, login

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
STATIONS = 3


@dataclass
class Poller:
    """A station waiting for its capture's verdict: long polls, retried when they drop."""

    base: str
    token: str
    capture_id: str
    attempts: list[tuple[float, str]] = field(default_factory=list)  # (started, outcome)
    final: dict | None = None

    def run(self, give_up: float) -> None:
        headers = {"Authorization": f"Token {self.token}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=40) as client:
            while time.monotonic() < give_up:
                started = time.monotonic()
                try:
                    response = client.get(f"/api/v1/captures/{self.capture_id}?wait=30")
                except httpx.TransportError as exc:
                    self.attempts.append((started, type(exc).__name__))
                    time.sleep(0.2)
                    continue
                self.attempts.append((started, str(response.status_code)))
                if response.status_code != 200:
                    time.sleep(0.2)
                    continue
                if response.json()["status"] == "decided":
                    self.final = response.json()
                    return


def test_a_killed_web_process_leaves_long_polling_stations_able_to_go_on(postgres, tmp_path):
    line = ProductionLineFactory(code="L1", automation_level="partial")  # no model: pending
    stations = [station_with_token(line=line, name=f"S{n}") for n in range(STATIONS)]
    UserFactory(username="ines", roles=["inspector"], lines=[line])
    env = child_env(CHANNELS_PREFIX=f"test-{uuid.uuid4().hex[:8]}")
    web = WebProcess(env, tmp_path / "uvicorn-1.log")
    web.start()
    inspector = None
    try:
        pollers = []
        for station in stations:
            response = httpx.post(
                f"{web.url}/api/v1/captures",
                headers={"Authorization": f"Token {station.token}"},
                data={"line": "L1", "idempotency_key": f"{station.name}-1"},
                files={"image": ("p.jpg", image_bytes(), "image/jpeg")},
                timeout=30,
            )
            assert response.status_code == 201 and response.json()["status"] == "pending"
            pollers.append(Poller(web.url, station.token, response.json()["id"]))
        inspector = login(web.url, "ines")

        give_up = time.monotonic() + 90
        threads = [threading.Thread(target=p.run, args=(give_up,)) for p in pollers]
        for thread in threads:
            thread.start()
        time.sleep(1.5)  # every station is inside its long poll
        web.kill()
        killed_at = time.monotonic()
        time.sleep(1)  # the stations retry against nothing for a moment

        restarted = WebProcess(env, tmp_path / "uvicorn-2.log", port=web.port)
        web = restarted
        web.start()
        up_at = time.monotonic()
        time.sleep(1.5)  # the stations are long-polling the new process
        for poller in pollers:
            verdict = inspector.post(
                f"/api/v1/captures/{poller.capture_id}/verdict", json={"verdict": "fail"}
            )
            assert verdict.status_code == 200, verdict.text
        for thread in threads:
            thread.join(60)
        decided_at = time.monotonic()
    finally:
        if inspector is not None:
            inspector.close()
        web.close()

    for poller in pollers:
        outcomes = [outcome for _, outcome in poller.attempts]
        # The poll in flight when the process died dropped, as a transport error, not a 5xx.
        assert not [o for o in outcomes if o.startswith("5")], outcomes
        dropped = [o for started, o in poller.attempts if started < killed_at and o != "200"]
        assert dropped, outcomes
        # Nothing listened for a moment (refused); from the first answer of the new process
        # on, every request succeeded.
        since_kill = [o for started, o in poller.attempts if started >= killed_at]
        first_answer = since_kill.index("200")
        assert set(since_kill[first_answer:]) == {"200"}, outcomes
        assert poller.final is not None, outcomes
        assert (poller.final["verdict"], poller.final["decided_by"]) == ("fail", "human")
    assert Capture.objects.filter(pk__in=[p.capture_id for p in pollers]).count() == STATIONS
    attempts = [(s, o) for p in pollers for s, o in p.attempts]
    print(
        f"\nweb process killed: {STATIONS} stations long-polling, dropped polls: "
        f"{sum(1 for s, o in attempts if s < killed_at and o != '200')}, refused retries: "
        f"{sum(1 for s, o in attempts if s >= killed_at and o != '200')}, requests answered by "
        f"the new process: {sum(1 for s, o in attempts if s >= killed_at and o == '200')} "
        f"(5xx: 0), restart took {up_at - killed_at:.1f} s, verdicts reached the stations "
        f"{decided_at - up_at:.1f} s after it"
    )
