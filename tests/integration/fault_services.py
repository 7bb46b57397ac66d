"""Services the fault tests own, start and kill: a Redis server and a PostgreSQL cluster of
their own on free ports (the shared ones are never touched), and web processes.

PostgreSQL refuses to run as root: as root (CI) the cluster belongs to the `postgres` user and
its commands run through `runuser`.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import free_port, start, stop, wait_for_port


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{what} (after {timeout} s)")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class OwnRedis:
    """redis-server on a free port, without persistence: killed, it comes back empty."""

    def __init__(self, folder: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: port_open(self.port), 10, "redis-server did not start")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def freeze(self) -> None:
        """Still accepting connections, never answering: a hung or partitioned Redis."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process and self.process.poll() is None:
            self.thaw()
            self.kill()


def _postgres_bin() -> Path | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class OwnPostgres:
    """A throwaway PostgreSQL cluster in a temporary folder, on a free port."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @staticmethod
    def available() -> tuple[bool, str]:
        if _postgres_bin() is None:
            return False, "no initdb (PostgreSQL server binaries) found"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return False, "running as root without a postgres user"
            if not shutil.which("runuser"):
                return False, "running as root without runuser"
        return True, ""

    def url(self, database: str = "faults") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self.as_user, *command], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            pytest.fail(f"{command[0]} failed: {result.stdout}{result.stderr}\n{log}")

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A",
                  "trust", "-E", "UTF8", "--no-sync")  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=50"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.log), "-w", "-t", "30", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects every client at once; `immediate` is a crash."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
             "-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(f"psql failed: {result.stderr}")
        return result.stdout

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                 "immediate", "-w", "stop"],
                capture_output=True, timeout=60,
            )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


class WebProcess:
    """uvicorn on a port, started (again) and killed by the test."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.env = env
        self.log = log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = start(
            ["uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port",
             str(self.port), "--no-access-log"],
            self.env,
            self.log,
        )  # fmt: skip
        wait_for_port(self.port, self.process, self.log)
        # Listening is not answering yet: wait for a real response.
        wait_until(self._answers, 60, f"uvicorn on {self.port} does not answer")

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/accounts/login/", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)


def login(base: str, username: str, password: str = "pw-for-tests") -> httpx.Client:
    """A browser-like client logged in through the login page (session cookie, CSRF header)."""
    client = httpx.Client(base_url=base, timeout=30)
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    assert response.status_code == 302, response.text
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    return client
