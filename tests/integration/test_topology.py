"""Several machines on loopback: an S3-protocol server (moto) with the bucket, two web processes,
a Celery worker on the default queue, another on the training queue, and beat, each with empty
folders of its own (MEDIA_ROOT, MODELS_ROOT, BLOB_CACHE_ROOT, VAR_DIR), so they share nothing but
PostgreSQL, Redis and the bucket, as machines do.

(a) A capture posted by the station to web A shows up on the inspector's live feed served by
web B, which serves its image bytes; the inspector's verdict, given on B, reaches the station
waiting on A (long poll and station websocket).
(b) A supervisor starts a training run on an imported dataset (its images in the bucket): the
training worker runs it, reading the images from the bucket, and stores the artifact there; the
default worker evaluates it (its overlays in the bucket, served by B); once deployed to the line,
captures posted to A and to B are both decided by the new model, and a heatmap one web process
computed is served by the other.
"""

import asyncio
import hashlib
import json
import os
import secrets
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import pytest
import websockets
from django.conf import settings as django_settings

from labeling.models import DatasetItem
from labeling.services import dataset_version_from_manifest
from models_registry.models import Evaluation, JobStatus
from models_registry.services.evaluation import evaluation_overlay_name
from tests.factories import ProductionLineFactory, UserFactory, image_bytes, station_with_token
from tests.integration.conftest import child_env, free_port, start, stop, wait_for_port
from tests.integration.fault_services import login, wait_until
from vision.synth import write_dataset

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BUCKET = "inspection-topology"
LINE = "TOPO"
# Two training steps on 128x72 phones: a model in seconds (the smoke preset).
TRAINING = {"data_source": "dataset", "preset": "smoke", "config": {"image_size": [128, 72]}}
BENCHMARK = "synthetic:8:5:128x72"
# Splits are fixed by a hash of each phone's group: these give a validation split with both labels.
DATASET_SIZE, DATASET_SPLIT = 24, (0.5, 0.35, 0.15)
DEPLOYMENT_CACHE_SECONDS = 2.0  # how long a web process keeps a line's deployments
STARTUP_TIMEOUT = 120
JOB_TIMEOUT = 180


@dataclass
class Machine:
    """One process of the topology, as if on a machine of its own: its folders and its log."""

    name: str
    command: list[str]
    root: Path
    port: int | None = None
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def folder(self, setting: str) -> Path:
        return Path(self.env[setting])

    def start(self, common: dict[str, str]) -> None:
        self.root.mkdir(parents=True)
        self.env = {
            **common,
            "MEDIA_ROOT": str(self.root / "media"),
            "MODELS_ROOT": str(self.root / "models"),
            "BLOB_CACHE_ROOT": str(self.root / "blob-cache"),
            "VAR_DIR": str(self.root / "var"),
        }
        self.process = start(self.command, self.env, self.log)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def local_files(self, setting: str) -> list[str]:
        root = self.folder(setting)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def tail(self, chars: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return text[-chars:]


def wait_web(machine: Machine) -> None:
    wait_for_port(machine.port, machine.process, machine.log, timeout=STARTUP_TIMEOUT)

    def ready() -> bool:
        try:
            return httpx.get(f"{machine.url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(lambda: ready() or not machine.alive(), STARTUP_TIMEOUT, f"{machine.name} unready")
    assert machine.alive(), machine.tail()


def wait_log(machine: Machine, text: str) -> None:
    wait_until(
        lambda: text in machine.tail(100_000) or not machine.alive(),
        STARTUP_TIMEOUT,
        f"{machine.name} did not log {text!r}",
    )
    assert machine.alive(), f"{machine.name} exited:\n{machine.tail()}"


@contextmanager
def logs_printed_on_failure(machines: list[Machine], s3_log: Path):
    try:
        yield
    except BaseException:
        for machine in machines:
            print(f"\n----- {machine.name} ({machine.log}) -----\n{machine.tail()}")
        print(f"\n----- moto ({s3_log}) -----\n{s3_log.read_text(errors='replace')[-2000:]}")
        raise


@pytest.fixture
def s3(tmp_path):
    port = free_port()
    log = tmp_path / "moto.log"
    process = start(["moto.server", "-H", "127.0.0.1", "-p", str(port)], dict(os.environ), log)
    wait_for_port(port, process, log, timeout=30)
    url = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    yield {"url": url, "client": client, "log": log}
    stop(process)


@pytest.fixture
def bucket_storage(settings, s3):
    """This test process (where the dataset is imported) on the bucket too, as the settings
    make it from the environment."""
    from botocore.config import Config

    settings.AWS_STORAGE_BUCKET_NAME = BUCKET
    settings.AWS_S3_ENDPOINT_URL = s3["url"]
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = settings.AWS_SECRET_ACCESS_KEY = "testing"
    settings.AWS_S3_FILE_OVERWRITE = True
    settings.AWS_DEFAULT_ACL = None
    settings.AWS_QUERYSTRING_AUTH = False
    settings.AWS_S3_CLIENT_CONFIG = Config(
        s3={"addressing_style": "path"}, signature_version="s3v4", connect_timeout=2
    )
    settings.STORAGES = {
        **django_settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"location": "media"}},
        "models": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"location": "models"}},
    }
    return s3


def bucket_keys(s3, prefix: str) -> list[str]:
    keys, token = [], None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = s3["client"].list_objects_v2(Bucket=BUCKET, Prefix=prefix, **extra)
        keys += [item["Key"] for item in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return sorted(keys)
        token = page["NextContinuationToken"]


def bucket_bytes(s3, key: str) -> bytes:
    return s3["client"].get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_web_and_worker_machines_share_only_postgres_redis_and_the_bucket(
    postgres, redis_url, bucket_storage, tmp_path
):
    s3 = bucket_storage
    run = uuid.uuid4().hex[:8]  # other test runs may share this Redis
    queues = {"default": f"topo-{run}-default", "training": f"topo-{run}-training"}
    common = child_env(
        DEBUG="0",
        HTTPS="0",
        SECRET_KEY=secrets.token_urlsafe(40),  # the same on every machine (sessions)
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=f"topo-{run}",
        CACHE_KEY_PREFIX=f"topo-{run}-cache",
        CELERY_DEFAULT_QUEUE=queues["default"],
        CELERY_TRAINING_QUEUE=queues["training"],
        AWS_STORAGE_BUCKET_NAME=BUCKET,
        AWS_S3_ENDPOINT_URL=s3["url"],
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_S3_REGION_NAME="us-east-1",
        AWS_S3_ADDRESSING_STYLE="path",
        SERVING_DEPLOYMENT_CACHE_SECONDS=str(DEPLOYMENT_CACHE_SECONDS),
        LOG_FORMAT="plain",
        TRAINING_THREADS="1",
    )
    common.pop("PROMETHEUS_MULTIPROC_DIR", None)
    worker = ["celery", "-A", "config", "worker", "--concurrency", "1", "--without-gossip",
              "--without-mingle"]  # fmt: skip
    port_a, port_b = free_port(), free_port()
    web_a = Machine(
        "web-a",
        ["uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port_a)],
        tmp_path / "web-a",
        port=port_a,
    )
    web_b = Machine(
        "web-b",
        ["config.serve", "--workers", "1", "--host", "127.0.0.1", "--port", str(port_b)],
        tmp_path / "web-b",
        port=port_b,
    )
    cpu_worker = Machine(
        "worker",
        [*worker, "-Q", queues["default"], "-n", f"topo-default-{run}@%h"],
        tmp_path / "worker",
    )
    gpu_worker = Machine(
        "training-worker",
        [*worker, "-Q", queues["training"], "-n", f"topo-training-{run}@%h"],
        tmp_path / "training-worker",
    )
    beat = Machine(
        "beat",
        ["celery", "-A", "config", "beat", "-s", str(tmp_path / "beat" / "schedule")],
        tmp_path / "beat",
    )
    machines = [web_a, web_b, cpu_worker, gpu_worker, beat]

    # The people and the line, in the shared database. The line is at `partial`: without a
    # model every capture waits for an inspector; with one, 0.5/0.5 thresholds let it decide all.
    line = ProductionLineFactory(
        code=LINE, automation_level="partial", pass_threshold=0.5, fail_threshold=0.5
    )
    station = station_with_token(line=line, name="S1")
    UserFactory(username="ines", roles=["inspector"], lines=[line])
    UserFactory(username="sam", roles=["supervisor"])

    started_at = time.monotonic()
    for machine in machines:
        machine.start(common)
    clients: list[httpx.Client] = []
    try:
        with logs_printed_on_failure(machines, s3["log"]):
            # A dataset imported meanwhile (by this process, on the bucket): its images and
            # masks are objects in the bucket, on no machine's disk.
            manifest = write_dataset(tmp_path / "dataset", DATASET_SIZE, seed=11, size=(128, 72))
            dataset = dataset_version_from_manifest(
                name="topology set",
                manifest_path=manifest,
                created_by=None,
                split_fractions=DATASET_SPLIT,
            )
            items = DatasetItem.objects.filter(dataset_version=dataset)
            files = items.values_list("image", "mask")
            assert len(files) == DATASET_SIZE
            validation = set(items.filter(split="validation").values_list("label", flat=True))
            assert validation == {"ok", "defect"}  # what training needs to validate
            assert {f"media/{name}" for row in files for name in row if name} <= set(
                bucket_keys(s3, "media/")
            )

            wait_web(web_a)
            wait_web(web_b)
            for celery_worker in (cpu_worker, gpu_worker):
                wait_log(celery_worker, " ready.")
            wait_log(beat, "beat: Starting")
            up_seconds = time.monotonic() - started_at

            feed = _station_to_inspector_across_machines(web_a, web_b, station, s3, clients)
            model = _training_to_serving_across_machines(
                web_a, web_b, cpu_worker, gpu_worker, station, dataset, s3, clients
            )

            # Nothing was written to any machine's own storage folders: only to the bucket
            # (and to each one's cache of what it read from there).
            for machine in machines:
                for setting in ("MEDIA_ROOT", "MODELS_ROOT"):
                    assert machine.local_files(setting) == [], (machine.name, setting)
            assert not [p for p in Path(django_settings.MEDIA_ROOT).rglob("*") if p.is_file()]
            for machine in machines:
                assert machine.alive(), f"{machine.name} exited:\n{machine.tail()}"
    finally:
        for client in clients:
            client.close()
        for machine in reversed(machines):
            if machine.process is not None:
                stop(machine.process)
    print(
        f"\ntopology: 2 web + worker + training worker + beat up in {up_seconds:.1f} s; "
        f"capture on A to B's feed {feed['feed_ms']:.0f} ms, B's verdict to the station on A "
        f"{feed['verdict_ms']:.0f} ms; training run {model['training_s']:.1f} s on "
        f"{model['trained_on']}, evaluation {model['evaluation_s']:.1f} s; first capture "
        f"decided by the new model: A {model['first_a_ms']:.0f} ms, B {model['first_b_ms']:.0f} ms"
    )


def _station_to_inspector_across_machines(web_a, web_b, station, s3, clients) -> dict:
    """(a) The station on A, the inspector on B."""
    inspector = login(web_b.url, "ines")
    clients.append(inspector)
    station_http = httpx.Client(
        base_url=web_a.url, headers={"Authorization": f"Token {station.token}"}, timeout=60
    )
    clients.append(station_http)
    image = image_bytes(256, 144, seed=42)
    timings: dict[str, float] = {}

    async def scenario():
        station_socket = await websockets.connect(
            f"{web_a.url.replace('http', 'ws')}/ws/stations/{station.pk}/",
            additional_headers={"Authorization": f"Token {station.token}"},
        )
        feed = await websockets.connect(
            f"{web_b.url.replace('http', 'ws')}/ws/lines/{LINE}/",
            additional_headers={
                "Cookie": f"sessionid={inspector.cookies['sessionid']}",
                "Origin": web_b.url,
            },
        )
        try:
            assert json.loads(await asyncio.wait_for(station_socket.recv(), 10))["type"] == "hello"
            assert json.loads(await asyncio.wait_for(feed.recv(), 10))["type"] == "hello"

            posted_at = time.monotonic()
            response = await asyncio.to_thread(
                station_http.post,
                "/api/v1/captures",
                data={"line": LINE, "idempotency_key": "topo-1"},
                files={"image": ("p.jpg", image, "image/jpeg")},
            )
            assert response.status_code == 201, response.text
            capture = response.json()
            assert (capture["status"], capture["verdict"]) == ("pending", None)

            # On B's feed, though it was posted to A.
            event = json.loads(await asyncio.wait_for(feed.recv(), 15))
            timings["feed_ms"] = (time.monotonic() - posted_at) * 1000
            assert (event["type"], event["capture"]["id"]) == ("capture", capture["id"])
            served = await asyncio.to_thread(
                inspector.get, f"/api/v1/captures/{capture['id']}/image"
            )
            assert served.status_code == 200 and served.content == image
            assert bucket_keys(s3, "media/captures/") == [
                f"media/captures/{capture['image_sha256'][:2]}/{capture['image_sha256']}.jpg"
            ]

            # The station long-polls A while the inspector decides on B.
            answer: dict = {}

            def long_poll():
                answer["response"] = station_http.get(f"/api/v1/captures/{capture['id']}?wait=30")

            poller = threading.Thread(target=long_poll)
            poller.start()
            await asyncio.sleep(1.0)
            decided_at = time.monotonic()
            verdict = await asyncio.to_thread(
                inspector.post,
                f"/api/v1/captures/{capture['id']}/verdict",
                json={"verdict": "fail"},
            )
            assert verdict.status_code == 200, verdict.text
            pushed = json.loads(await asyncio.wait_for(station_socket.recv(), 15))
            timings["verdict_ms"] = (time.monotonic() - decided_at) * 1000
            assert (pushed["type"], pushed["capture"]["id"]) == ("decision", capture["id"])
            assert (pushed["capture"]["verdict"], pushed["capture"]["decided_by"]) == (
                "fail",
                "human",
            )
            await asyncio.to_thread(poller.join, 40)
            polled = answer["response"]
            assert polled.status_code == 200, polled.text
            assert (polled.json()["status"], polled.json()["verdict"]) == ("decided", "fail")
            assert polled.elapsed.total_seconds() < 10  # answered on the verdict, not at 30 s
            decided = json.loads(await asyncio.wait_for(feed.recv(), 15))
            assert (decided["type"], decided["capture"]["decided_by"]) == ("decision", "human")
        finally:
            await station_socket.close()
            await feed.close()

    asyncio.run(scenario())
    return timings


def _training_to_serving_across_machines(
    web_a, web_b, cpu_worker, gpu_worker, station, dataset, s3, clients
) -> dict:
    """(b) Trained on the training worker, evaluated on the default worker, served by both."""
    # One supervisor session, used on both machines (as behind a load balancer).
    supervisor = login(web_a.url, "sam")
    clients.append(supervisor)
    started_at = time.monotonic()
    response = supervisor.post(
        f"{web_a.url}/api/v1/models/training-runs",
        json={**TRAINING, "dataset_version": dataset.pk, "line": LINE, "benchmark": BENCHMARK},
    )
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]

    def finished_run():
        body = supervisor.get(f"{web_b.url}/api/v1/models/training-runs/{run_id}").json()
        return body if body["finished"] else None

    run = wait_until(finished_run, JOB_TIMEOUT, "the training run did not finish", interval=1)
    training_s = time.monotonic() - started_at
    assert run["status"] == JobStatus.SUCCEEDED, run["log"]
    assert run["worker_id"].startswith("topo-training-"), run["worker_id"]
    version = supervisor.get(f"{web_b.url}/api/v1/models/versions/{run['model_version']}").json()
    assert version["training_data"].startswith("dataset topology set")

    # The artifact is in the bucket, byte for byte what the registry recorded.
    artifact_key = f"models/{version['artifact']}"
    assert artifact_key in bucket_keys(s3, "models/")
    assert hashlib.sha256(bucket_bytes(s3, artifact_key)).hexdigest() == version["sha256"]
    # The training worker read its images from the bucket, into its own cache.
    cache = gpu_worker.folder("BLOB_CACHE_ROOT")
    train_images = list(
        DatasetItem.objects.filter(dataset_version=dataset, split="train").values_list(
            "image", flat=True
        )
    )
    assert train_images
    assert all((cache / "media" / name).is_file() for name in train_images)

    # The evaluation ran on the default worker (the artifact fetched from the bucket); the
    # overlays it kept are in the bucket, and web B serves them.
    def finished_evaluation():
        evaluation = Evaluation.objects.filter(model_version_id=version["id"]).first()
        return evaluation if evaluation and evaluation.finished else None

    evaluation = wait_until(finished_evaluation, JOB_TIMEOUT, "no evaluation", interval=1)
    evaluation_s = time.monotonic() - started_at - training_s
    assert evaluation.status == JobStatus.SUCCEEDED, evaluation.log
    assert evaluation.worker_id.startswith("topo-default-"), evaluation.worker_id
    assert (cpu_worker.folder("BLOB_CACHE_ROOT") / "models" / version["artifact"]).is_file()
    shown = evaluation.worst["false_negatives"] + evaluation.worst["false_positives"]
    assert shown, "a two-step model gets some of the 8 phones wrong: their overlays are kept"
    overlay = shown[0]["overlay"]
    overlay_key = f"models/{evaluation_overlay_name(evaluation, overlay)}"
    page = supervisor.get(f"{web_b.url}/models/evaluations/{evaluation.pk}/overlays/{overlay}")
    assert page.status_code == 200 and page.content == bucket_bytes(s3, overlay_key)

    # Deployed to the line (on B); both web processes then decide with it.
    promoted = supervisor.post(
        f"{web_b.url}/api/v1/models/lines/{LINE}/promote", json={"model_version": version["id"]}
    )
    assert promoted.status_code == 200, promoted.text
    assert {(d["role"], d["model_version"]) for d in promoted.json()["deployments"]} == {
        ("production", version["id"])
    }
    time.sleep(DEPLOYMENT_CACHE_SECONDS + 0.5)
    station_headers = {"Authorization": f"Token {station.token}"}
    answers, first_ms = {}, {}
    for machine in (web_a, web_b):
        posted_at = time.monotonic()
        response = httpx.post(
            f"{machine.url}/api/v1/captures",
            headers=station_headers,
            data={"line": LINE, "idempotency_key": f"topo-model-{machine.name}"},
            files={"image": ("p.jpg", image_bytes(256, 144, seed=7), "image/jpeg")},
            timeout=60,
        )
        first_ms[machine.name] = (time.monotonic() - posted_at) * 1000
        assert response.status_code == 201, response.text
        body = answers[machine.name] = response.json()
        assert (body["status"], body["decided_by"]) == ("decided", "model"), body
        assert body["verdict"] in ("pass", "fail")
        assert (body["model"]["model_version"], body["model"]["role"]) == (
            version["id"],
            "production",
        )
        assert 0.0 <= body["model"]["score"] <= 1.0
        # Each process fetched the artifact from the bucket into its own cache, and is ready.
        cached = machine.folder("BLOB_CACHE_ROOT") / "models" / version["artifact"]
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == version["sha256"]
        ready = httpx.get(f"{machine.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["models"]["loaded"] == 1
    # The same image and model: the same score, whichever machine answered.
    assert answers["web-a"]["model"]["score"] == answers["web-b"]["model"]["score"]

    # A heatmap computed on B (for a capture posted to A) is stored in the bucket; A serves it.
    inspector = login(web_b.url, "ines")
    clients.append(inspector)
    capture_id = answers["web-a"]["id"]
    heatmap = inspector.get(f"{web_b.url}/api/v1/captures/{capture_id}/heatmap.png")
    assert heatmap.status_code == 200, heatmap.text
    assert heatmap.content.startswith(b"\x89PNG")
    assert len(bucket_keys(s3, "media/heatmaps/")) == 1
    again = inspector.get(f"{web_a.url}/api/v1/captures/{capture_id}/heatmap.png")
    assert again.status_code == 200 and again.content == heatmap.content
    return {
        "training_s": training_s,
        "evaluation_s": evaluation_s,
        "trained_on": f"{len(train_images)} dataset images read from the bucket",
        "first_a_ms": first_ms["web-a"],
        "first_b_ms": first_ms["web-b"],
    }
