"""Helpers for tests on real services: free ports, subprocess servers, the test DB URL."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_database_url() -> str:
    """The URL of the database pytest-django created (test_<name>), for child processes."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": child_database_url(),
        "DEBUG": "1",
        "HTTPS": "0",  # plain http://127.0.0.1 (a test rig), whatever DEBUG says
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MODELS_ROOT": str(settings.MODELS_ROOT),
        "PYTHONUNBUFFERED": "1",
        "DB_CONN_MAX_AGE": "0",
    }
    env.update(extra)
    return env


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", *command], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"server did not listen on {port} in {timeout} s:\n{log.read_text()[-3000:]}")
