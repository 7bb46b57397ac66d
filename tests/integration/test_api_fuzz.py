"""The OpenAPI fuzzer (schemathesis) against the live schema of a real uvicorn on PostgreSQL
and Redis, as a station and as each role: no 5xx, and every answer as the schema says (status
codes, content types, headers, bodies).

Time on 2 cores is shared out: the supervisor (who reaches every operation's logic) gets all
phases; the station the coverage sweep (boundary and invalid values of every parameter) and
fuzzing; the other roles a short fuzzing pass (mostly their 401/403/404 answers).
"""

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from core import blobs
from core.blobs import blob_write
from labeling.services import dataset_version_from_manifest, task_create_from_inspection, task_next
from tests.factories import (
    CaptureFactory,
    DecisionFactory,
    ModelVersionFactory,
    ProductionLineFactory,
    UserFactory,
    image_bytes,
    station_with_token,
)
from tests.integration.conftest import child_env, free_port, start, stop, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
# identity -> (phases, examples per operation)
PLAN = {
    "supervisor": ("examples,coverage,fuzzing,stateful", 8),
    "station": ("coverage,fuzzing", 5),
    "inspector": ("fuzzing", 4),
    "labeler": ("fuzzing", 4),
    "admin": ("fuzzing", 4),
}


def schemathesis_command() -> str:
    beside = Path(sys.executable).parent / "schemathesis"
    return str(beside) if beside.exists() else shutil.which("schemathesis") or "schemathesis"


def world() -> dict:
    """A line with no model, a station, users of each role, and a few objects of each kind,
    whose ids the fuzzer mixes into what it generates."""
    line = ProductionLineFactory(code="L1", automation_level="partial")
    station = station_with_token(line=line, name="S1")
    users = {
        role: UserFactory(username=role, roles=[role], lines=[line])
        for role in PLAN
        if role != "station"
    }
    captures = []
    for seed in range(3):
        relative, sha256 = blob_write(image_bytes(seed=seed), extension="jpg", folder="captures")
        capture = CaptureFactory(station=station, image=relative, image_sha256=sha256)
        DecisionFactory(capture=capture)
        captures.append(capture)
    task = task_create_from_inspection(capture=captures[0], reason="override")
    annotation = task_next(user=users["labeler"])
    return {
        "station": station,
        "users": users,
        "ids": {
            "code": ["L1"],
            "capture_id": [str(c.pk) for c in captures],
            "task_id": [task.pk],
            "annotation_id": [annotation.pk],
            "version_id": [edge_exported_version().pk],
        },
    }


def edge_exported_version():
    """A registered version as the training worker leaves it: its ONNX export made (no worker
    runs here, so one the fuzzer deploys would stay `edge_model_pending`, a 503 by design)."""
    onnx = b"fuzz stand-in for an exported model"
    relative, sha256 = blob_write(onnx, folder="edge", extension="onnx", store=blobs.MODELS)
    return ModelVersionFactory(
        edge_export={"status": "ready", "artifact": relative, "sha256": sha256, "bytes": len(onnx)}
    )


def add_dataset(tmp_path: Path, ids: dict) -> None:
    folder = tmp_path / "dataset"
    (folder / "images").mkdir(parents=True)
    rows = ["file,label,defect_type,mask_file"]
    for index in range(4):
        image = image_bytes(48, 32, fmt="PNG", seed=index)
        (folder / "images" / f"p{index}.png").write_bytes(image)
        rows.append(f"images/p{index}.png," + ("defect,scratch," if index % 2 else "ok,,"))
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    version = dataset_version_from_manifest(
        name="fuzz-set", manifest_path=folder / "manifest.csv", created_by=None
    )
    ids["dataset_id"] = [version.pk]


def config_file(folder: Path, ids: dict) -> Path:
    """Known ids drawn half of the time; the other half the fuzzer makes up its own."""
    lines = []
    for name, values in ids.items():
        lines.append(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n")
    lines.append("[parameters]")
    for name in ids:
        lines.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}')
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def login(base: str, username: str) -> list[str]:
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/accounts/login/")
        response = client.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": "pw-for-tests",
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
        )
        assert response.status_code == 302, response.text
        session, csrf = client.cookies["sessionid"], client.cookies["csrftoken"]
    return ["-H", f"Cookie: sessionid={session}; csrftoken={csrf}", "-H", f"X-CSRFToken: {csrf}"]


@pytest.fixture
def live(postgres, tmp_path):
    port = free_port()
    log = tmp_path / "uvicorn.log"
    run = uuid.uuid4().hex[:8]
    env = child_env(
        CHANNELS_PREFIX=f"fuzz-{run}",
        # Jobs the fuzzer starts are queued where no worker listens, and dropped with the run.
        CELERY_DEFAULT_QUEUE=f"fuzz-{run}-default",
        CELERY_TRAINING_QUEUE=f"fuzz-{run}-training",
        LOG_FORMAT="plain",
        # The fuzzer sends far faster than any person or station: limits it would hit would
        # turn its cases into 429s and test less (the throttles have tests of their own).
        THROTTLE_USER_RATE="1000000/min",
        THROTTLE_STATION_RATE="1000000/min",
        THROTTLE_ANON_RATE="1000000/min",
    )
    process = start(
        ["uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        env,
        log,
    )
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        stop(process)


def test_the_fuzzer_finds_no_5xx_and_no_answer_off_the_schema(live, tmp_path):
    base, log = live
    setup = world()
    add_dataset(tmp_path, setup["ids"])
    config = config_file(tmp_path, setup["ids"])
    totals = {"operations": 0, "cases": 0}
    problems = []
    for identity, (phases, examples) in PLAN.items():
        if identity == "station":
            headers = ["-H", f"Authorization: Token {setup['station'].token}"]
        else:
            headers = login(base, identity)
        report = tmp_path / f"schemathesis-{identity}.json"
        result = subprocess.run(
            [
                schemathesis_command(),
                "--config-file",
                str(config),
                "run",
                f"{base}/api/schema/",
                *headers,
                "--checks",
                CHECKS,
                "--phases",
                phases,
                "--max-examples",
                str(examples),
                # One worker: CPython 3.11.7's ast module is not thread-safe, and Hypothesis
                # parses lambdas ("AST constructor recursion depth mismatch" with two).
                "--workers",
                "1",
                "--seed",
                "20261201",
                "--request-timeout",
                "70",
                "--generation-with-security-parameters",
                "false",
                "--generation-database",
                "none",
                "--no-shrink",
                "--report",
                "json",
                "--report-json-path",
                str(report),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        summary = json.loads(report.read_text())
        totals["operations"] = max(totals["operations"], summary["operations"]["tested"])
        totals["cases"] += summary["test_cases"]["generated"]
        if summary["failures"] or summary["errors"] or result.returncode != 0:
            output = result.stdout[-6000:]
            problems.append(f"--- as {identity} (exit {result.returncode}):\n{output}")
    print(f"schemathesis: {totals['operations']} operations, {totals['cases']} cases")
    server_log = log.read_text()
    assert not problems, "\n".join(problems) + "\n--- server log:\n" + server_log[-4000:]
    assert totals["operations"] >= 50
    assert "Traceback" not in server_log, server_log[-4000:]
