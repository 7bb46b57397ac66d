"""A Celery worker or beat with DEBUG off and no SECRET_KEY refuses to start, as the web server
does (README, Configuration): the real commands, as subprocesses (no broker needed: they stop
before connecting to one)."""

import os
import subprocess
import sys

import pytest

from tests.integration.conftest import ROOT

# Real worker and beat processes (a few seconds each), though no service is needed.
pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "command",
    [
        [
            "worker",
            "-Q",
            "never-used",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
        ],
        ["beat"],
    ],
    ids=["worker", "beat"],
)
def test_a_worker_or_beat_without_secret_key_refuses_to_start(command, tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "REDIS_URL", "DATABASE_URL"}
    }
    env.update(DEBUG="0", VAR_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    if command == ["beat"]:
        command = [*command, "-s", str(tmp_path / "schedule")]
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr, result.stderr[-2000:]
