"""Soak: N stations and M inspectors against the web process for T minutes; nothing lost,
memory flat, latency reported.

    DATABASE_URL=postgres://... REDIS_URL=redis://... \\
        python bench/soak.py --stations 20 --inspectors 4 --rate 20 --minutes 30 --json

It prepares two lines in the database the environment names (SOAKM: `full`, the production
model decides every phone; SOAKH: no model, every phone waits for an inspector), starts its
own web process(es) on a free port (`--workers`; DEBUG off, plain HTTP), and then:

- stations post phones at `--rate` captures/s in all (half of them on each line), each with
  its own idempotency key, retried with the same key after a 503, 429 or a dropped
  connection; a station answered `pending` long-polls (`?wait=30`) until its verdict;
- inspectors watch SOAKH on `/ws/lines/SOAKH/` (session cookie), re-read the queue on every
  (re)connect and every few seconds, and give the verdicts of their share of the captures;
- the resident memory (RSS) of the web processes is sampled every 2 s.

At the end every capture answered 201/200 is looked up in the database, and every pending one
must have been decided by an inspector (and, figures tell, reached its station by the end). It
prints the figures (JSON with `--json`) and exits 1 when a capture was lost, a pending one was
never decided, or a 5xx was seen.
tests/integration/test_soak.py runs the same code for 20 s in CI.
"""

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL_LINE, HUMAN_LINE = "SOAKM", "SOAKH"
RSS_EVERY_SECONDS = 2.0
QUEUE_REREAD_SECONDS = 5.0


@dataclass
class Soak:
    """What to run: against `url`, stations (token, line code), inspectors' cookies."""

    url: str
    stations: list[tuple[str, str]]
    inspectors: list[dict[str, str]]
    seconds: float
    rate: float
    web_pids: list[int] = field(default_factory=list)
    # After the stations stop: time for the inspectors' last verdicts to reach the stations.
    grace_seconds: float = 60.0
    image_size: tuple[int, int] = (320, 180)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


@dataclass
class Tally:
    answered: dict[str, str] = field(default_factory=dict)  # idempotency key -> capture id
    statuses: Counter = field(default_factory=Counter)  # of the POSTs
    poll_statuses: Counter = field(default_factory=Counter)  # of the long polls
    transport_errors: int = 0
    post_ms: dict[str, list[float]] = field(default_factory=lambda: {"all": []})
    pending: dict[str, float] = field(default_factory=dict)  # capture id -> posted at
    pending_decided_ms: dict[str, float] = field(default_factory=dict)
    events: int = 0
    verdicts: Counter = field(default_factory=Counter)
    ws_connects: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, bytes)
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def phone_images(count: int, size: tuple[int, int]) -> list[bytes]:
    from vision.images import encode_jpeg
    from vision.synth import synth_phone

    return [
        encode_jpeg(synth_phone(seed=seed, size=size, defect_rate=0.1).image, 90)
        for seed in range(count)
    ]


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of these processes and all their descendants (Linux /proc)."""
    total, seen, todo = 0, set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += next(
                int(x.split()[1]) * 1024 for x in status.splitlines() if x.startswith("VmRSS")
            )
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


class Run:
    """One soak: the stations', inspectors' and memory sampler's coroutines on one loop."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        self.tally = Tally()
        self.images = phone_images(8, soak.image_size)

    async def main(self) -> Tally:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.stations_end = self.started + self.soak.seconds
        self.deadline = self.stations_end + self.soak.grace_seconds
        interval = len(self.soak.stations) / self.soak.rate
        stations = [
            asyncio.create_task(self.station(index, token, line, interval))
            for index, (token, line) in enumerate(self.soak.stations)
        ]
        helpers = [asyncio.create_task(self.memory())]
        helpers += [
            asyncio.create_task(self.inspector(index, cookies))
            for index, cookies in enumerate(self.soak.inspectors)
        ]
        await asyncio.gather(*stations)
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        self.tally.rss.append((loop.time() - self.started, rss_bytes(self.soak.web_pids)))
        return self.tally

    def _in(self) -> float:
        return asyncio.get_running_loop().time() - self.started

    async def station(self, index: int, token: str, line: str, interval: float) -> None:
        loop = asyncio.get_running_loop()
        # Stations start spread over one interval, as they would on a floor.
        next_at = self.started + interval * random.random()
        headers = {"Authorization": f"Token {token}"}
        waiting: set[asyncio.Task] = set()  # this station's long polls for pending verdicts
        async with httpx.AsyncClient(base_url=self.soak.url, headers=headers, timeout=60) as http:
            n = 0
            while True:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                if loop.time() >= self.stations_end:
                    break
                key = f"soak-{self.soak.run_id}-{line}-{index}-{n}"
                image = self.images[n % len(self.images)]
                capture = await self.post(http, line, key, image)
                if capture and capture["status"] == "pending":
                    waiting.add(asyncio.create_task(self.await_verdict(http, capture["id"])))
                n += 1
                next_at += interval
            if waiting:  # the last verdicts, until the deadline
                await asyncio.wait(waiting, timeout=max(0.1, self.deadline - loop.time()))
                for task in waiting:
                    task.cancel()
                await asyncio.gather(*waiting, return_exceptions=True)

    async def post(self, http: httpx.AsyncClient, line: str, key: str, image: bytes) -> dict | None:
        loop = asyncio.get_running_loop()
        while loop.time() < self.deadline:
            started = time.perf_counter()
            try:
                response = await http.post(
                    "/api/v1/captures",
                    data={"line": line, "idempotency_key": key},
                    files={"image": ("phone.jpg", image, "image/jpeg")},
                )
            except httpx.TransportError as exc:
                self.tally.transport_errors += 1
                self.tally.errors.append(f"POST {key}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)
                continue
            ms = (time.perf_counter() - started) * 1000
            self.tally.statuses[response.status_code] += 1
            if response.status_code in (200, 201):
                body = response.json()
                self.tally.answered[key] = body["id"]
                self.tally.post_ms["all"].append(ms)
                self.tally.post_ms.setdefault(line, []).append(ms)
                if body["status"] == "pending":
                    self.tally.pending[body["id"]] = loop.time()
                return body
            if response.status_code in (429, 503):  # retry the same key when told
                await asyncio.sleep(min(5.0, float(response.headers.get("Retry-After") or 1)))
                continue
            self.tally.errors.append(f"POST {key}: {response.status_code} {response.text[:300]}")
            return None
        return None

    async def await_verdict(self, http: httpx.AsyncClient, capture_id: str) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < self.deadline:
            wait = max(1, min(30, int(self.deadline - loop.time())))
            try:
                response = await http.get(f"/api/v1/captures/{capture_id}?wait={wait}")
            except httpx.TransportError as exc:
                self.tally.transport_errors += 1
                self.tally.errors.append(f"GET {capture_id}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)
                continue
            self.tally.poll_statuses[response.status_code] += 1
            if response.status_code == 200 and response.json()["status"] == "decided":
                posted = self.tally.pending[capture_id]
                self.tally.pending_decided_ms[capture_id] = (loop.time() - posted) * 1000
                return
            if response.status_code != 200:
                self.tally.errors.append(f"GET {capture_id}: {response.status_code}")
                await asyncio.sleep(1)

    async def inspector(self, index: int, cookies: dict[str, str]) -> None:
        import websockets

        count = len(self.soak.inspectors)
        cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        headers = {"Cookie": cookie, "X-CSRFToken": cookies["csrftoken"]}
        ws_url = self.soak.url.replace("http", "ws", 1) + f"/ws/lines/{HUMAN_LINE}/"
        deciding: set[str] = set()
        tasks: set[asyncio.Task] = set()

        def mine(capture_id: str) -> bool:
            return uuid.UUID(capture_id).int % count == index

        async with httpx.AsyncClient(base_url=self.soak.url, headers=headers, timeout=60) as http:

            async def decide(capture_id: str) -> None:
                if capture_id in deciding:
                    return
                deciding.add(capture_id)
                await asyncio.sleep(random.uniform(0.1, 0.5))  # a person looks at the phone
                try:
                    response = await http.post(
                        f"/api/v1/captures/{capture_id}/verdict", json={"verdict": "pass"}
                    )
                except httpx.TransportError as exc:
                    self.tally.errors.append(f"verdict {capture_id}: {exc}")
                    deciding.discard(capture_id)
                    return
                self.tally.verdicts[response.status_code] += 1
                if response.status_code >= 500 or response.status_code in (401, 403):
                    self.tally.errors.append(f"verdict: {response.status_code} {response.text}")
                if response.status_code != 200:
                    deciding.discard(capture_id)

            def decide_soon(capture_id: str) -> None:
                task = asyncio.create_task(decide(capture_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            async def reread_queue() -> None:
                while True:
                    response = await http.get(f"/api/v1/queue?lines={HUMAN_LINE}")
                    if response.status_code == 200:
                        for item in response.json()["items"]:
                            if item["status"] == "pending" and mine(item["id"]):
                                decide_soon(item["id"])
                    await asyncio.sleep(QUEUE_REREAD_SECONDS)

            rereader = asyncio.create_task(reread_queue())
            try:
                while True:
                    try:
                        async with websockets.connect(
                            ws_url, additional_headers={"Cookie": cookie, "Origin": self.soak.url}
                        ) as socket_:
                            self.tally.ws_connects += 1
                            async for raw in socket_:
                                event = json.loads(raw)
                                if event.get("type") != "capture":
                                    continue
                                self.tally.events += 1
                                capture = event["capture"]
                                if capture["status"] == "pending" and mine(capture["id"]):
                                    decide_soon(capture["id"])
                    except (OSError, websockets.ConnectionClosed) as exc:
                        self.tally.errors.append(f"inspector websocket: {exc}")
                        await asyncio.sleep(0.5)
            finally:
                for task in (rereader, *tasks):
                    task.cancel()

    async def memory(self) -> None:
        while True:
            self.tally.rss.append((self._in(), rss_bytes(self.soak.web_pids)))
            await asyncio.sleep(RSS_EVERY_SECONDS)


def report(soak: Soak, tally: Tally) -> dict:
    mb = 1024 * 1024
    warm = min(60.0, soak.seconds / 4)  # model loads and caches fill in the first minute
    rss = [(at, size / mb) for at, size in tally.rss if size]
    after_warmup = next((size for at, size in rss if at >= warm), None)
    posts = tally.post_ms
    decided = list(tally.pending_decided_ms.values())
    return {
        "stations": len(soak.stations),
        "inspectors": len(soak.inspectors),
        "seconds": soak.seconds,
        "target_captures_per_s": soak.rate,
        "captures_answered": len(tally.answered),
        "captures_per_s": round(len(tally.answered) / soak.seconds, 2),
        "post_statuses": {str(code): n for code, n in sorted(tally.statuses.items())},
        "poll_statuses": {str(code): n for code, n in sorted(tally.poll_statuses.items())},
        "http_5xx": sum(
            n
            for counter in (tally.statuses, tally.poll_statuses, tally.verdicts)
            for code, n in counter.items()
            if code >= 500
        ),
        "transport_errors": tally.transport_errors,
        "p50_ms": percentile(posts["all"], 50),
        "p95_ms": percentile(posts["all"], 95),
        "p99_ms": percentile(posts["all"], 99),
        "max_ms": max(posts["all"], default=None),
        "model_line_p99_ms": percentile(posts.get(MODEL_LINE, []), 99),
        "human_line_p99_ms": percentile(posts.get(HUMAN_LINE, []), 99),
        "pending": len(tally.pending),
        "pending_decided_at_station": len(tally.pending_decided_ms),
        "pending_not_at_station_by_the_end": len(tally.pending) - len(tally.pending_decided_ms),
        "pending_verdict_p50_ms": percentile(decided, 50),
        "pending_verdict_p99_ms": percentile(decided, 99),
        "inspector_events": tally.events,
        "inspector_verdicts": {str(code): n for code, n in sorted(tally.verdicts.items())},
        "inspector_connects": tally.ws_connects,
        "rss_mb": {
            "first": round(rss[0][1], 1) if rss else None,
            "after_warmup": round(after_warmup, 1) if after_warmup else None,
            "last": round(rss[-1][1], 1) if rss else None,
            "max": round(max(size for _, size in rss), 1) if rss else None,
            "samples": len(rss),
        },
        "errors": tally.errors[:20],
    }


def soak_run(soak: Soak) -> tuple[dict, Tally]:
    tally = asyncio.run(Run(soak).main())
    return report(soak, tally), tally


# --- The database side (Django): preparing the lines and checking nothing was lost. ---


def soak_setup(*, stations: int, inspectors: int, artifact: Path | None = None) -> dict:
    """Lines SOAKM (full, a production model: an untrained tiny one unless it has one) and
    SOAKH (no model), `stations` new stations split between them, `inspectors` new users."""
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from core.authentication import token_generate, token_hash
    from core.models import ProductionLine, Station
    from core.roles import Role
    from models_registry import selectors as registry_selectors
    from models_registry import services as registry_services

    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise SystemExit("The database has unapplied migrations: run `manage.py migrate` first.")
    model_line, _ = ProductionLine.objects.update_or_create(
        code=MODEL_LINE,
        defaults={"name": "Soak, model decides", "automation_level": "full", "audit_percent": 0},
    )
    human_line, _ = ProductionLine.objects.update_or_create(
        code=HUMAN_LINE, defaults={"name": "Soak, inspectors decide", "automation_level": "manual"}
    )
    if "production" not in registry_selectors.line_serving_models(line_id=model_line.id):
        version = registry_services.model_version_register(path=artifact or _tiny_artifact())
        registry_services.deployment_set(line=model_line, model_version=version, role="production")
    run = uuid.uuid4().hex[:6]
    tokens = []
    for n in range(stations):
        token = token_generate()
        line = (model_line, human_line)[n % 2]
        Station.objects.create(
            line=line, name=f"soak-{run}-{n}", token_hash=token_hash(token), token_prefix=token[:8]
        )
        tokens.append((token, line.code))
    group, _ = Group.objects.get_or_create(name=Role.INSPECTOR)
    users = []
    for n in range(inspectors):
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(username=f"soak-{run}-{n}", password=password)
        user.groups.add(group)
        human_line.inspectors.add(user)  # inspectors see only their assigned lines
        users.append((user.username, password))
    return {"stations": tokens, "inspectors": users}


def _tiny_artifact() -> Path:
    import torch

    from vision.artifacts import save_artifact
    from vision.model import NORMALIZATION, build_model

    torch.manual_seed(0)
    path = Path(tempfile.mkdtemp(prefix="soak-")) / "soak-untrained.pt"
    meta = {"thresholds": {"pass": 0.3, "fail": 0.7}, "normalization": NORMALIZATION}
    save_artifact(path, build_model(), meta)
    return path


def soak_verify(tally: Tally) -> dict:
    """Every capture answered 201/200 is in the database; every pending one was decided there
    (one that no inspector ever decided was lost on the way to them)."""
    from inspection.models import Capture, Decision

    ids = list(tally.answered.values())
    found = 0
    for start in range(0, len(ids), 1000):
        found += Capture.objects.filter(pk__in=ids[start : start + 1000]).count()
    pending = list(tally.pending)
    decided = 0
    for start in range(0, len(pending), 1000):
        chunk = pending[start : start + 1000]
        decided += Decision.objects.filter(capture_id__in=chunk, status="decided").count()
    return {
        "in_database": found,
        "lost": len(ids) - found,
        "pending_decided_in_database": decided,
        "pending_lost": len(pending) - decided,
    }


def inspector_cookies(url: str, username: str, password: str) -> dict[str, str]:
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/accounts/login/")
        response = client.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
        )
        if response.status_code != 302:
            raise SystemExit(f"login of {username} failed: {response.status_code}")
        return {"sessionid": client.cookies["sessionid"], "csrftoken": client.cookies["csrftoken"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_web(workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    """uvicorn (one worker) or config.serve (several) on a free port, DEBUG off, plain HTTP."""
    port = _free_port()
    env = {
        "DEBUG": "0",
        "HTTPS": "0",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "LOG_LEVEL": "WARNING",
        **os.environ,
        "PYTHONUNBUFFERED": "1",
    }
    if workers > 1:
        command = ["-m", "config.serve", "--port", str(port), "--workers", str(workers)]
    else:
        command = ["-m", "uvicorn", "config.asgi:application", "--port", str(port),
                   "--no-access-log"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, *command], cwd=ROOT, env=env, stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the web process exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/accounts/login/", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the web process did not answer:\n{log.read_text()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--inspectors", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20, help="captures per second, in all")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--workers", type=int, default=1, help="web processes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    prepared = soak_setup(stations=args.stations, inspectors=args.inspectors)
    log = Path(tempfile.mkdtemp(prefix="soak-")) / "web.log"
    process, url = launch_web(args.workers, log)
    try:
        soak = Soak(
            url=url,
            stations=prepared["stations"],
            inspectors=[inspector_cookies(url, *login) for login in prepared["inspectors"]],
            seconds=args.minutes * 60,
            rate=args.rate,
            web_pids=[process.pid],
        )
        figures, tally = soak_run(soak)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    figures["database"] = soak_verify(tally)
    figures["web_log"] = str(log)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, value in figures.items():
            print(f"{name}: {value}")
    failed = (
        figures["database"]["lost"]
        or figures["database"]["pending_lost"]
        or figures["http_5xx"]
        or not figures["captures_answered"]
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
