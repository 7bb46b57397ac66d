"""`python manage.py run_demo`: web server, Celery worker and beat, and simulated stations.

`make demo` runs it after `seed_demo`. Ctrl-C stops all three.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inspection.management.commands.seed_demo import DEMO_USERS


class Command(BaseCommand):
    help = "Start uvicorn, a Celery worker, beat and simulate_line on L1 and L2; Ctrl-C stops all."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--tokens-file", default=str(Path(settings.VAR_DIR) / "demo-stations.json")
        )
        parser.add_argument("--rate", default="1/s", help="the simulated station's rate")
        parser.add_argument("--no-station", action="store_true")

    def handle(self, *args, port: int, host: str, tokens_file: str, rate: str, **options):
        tokens_path = Path(tokens_file)
        if not tokens_path.exists():
            raise CommandError(f"{tokens_path} is missing: run `python manage.py seed_demo` first")
        tokens = json.loads(tokens_path.read_text())
        python = sys.executable
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        url = f"http://{host}:{port}"
        worker = [python, "-m", "celery", "-A", "config", "worker", "-Q", "default,training"]
        worker += ["--concurrency", "1", "--loglevel", "INFO"]
        if not settings.REDIS_URL:
            # The filesystem broker has no broadcast: skip the worker-to-worker chatter.
            worker += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        processes: dict[str, subprocess.Popen] = {}
        try:
            processes["web"] = subprocess.Popen(
                [python, "-m", "uvicorn", "config.asgi:application", "--host", host,
                 "--port", str(port), "--no-access-log"],
                env=env,
            )  # fmt: skip
            processes["worker"] = subprocess.Popen(worker, env=env)
            # Beat runs the periodic jobs: the canary check, the reaper of dead workers' jobs,
            # automatic retraining (and the monitoring of every line).
            schedule = Path(settings.VAR_DIR) / "celerybeat-schedule"
            processes["beat"] = subprocess.Popen(
                [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                 "--schedule", str(schedule)],
                env=env,
            )  # fmt: skip
            self._wait_until_up(url, processes["web"])
            if not options["no_station"] and "L1" in tokens:
                processes["station"] = subprocess.Popen(
                    [python, "manage.py", "simulate_line", "--line", "L1",
                     f"--token={tokens['L1']['token']}", "--url", url, "--rate", rate,
                     "--lighting-shift-after", "300s"],
                    env=env,
                )  # fmt: skip
            if not options["no_station"] and "L2" in tokens:
                # L2 is assisted: every phone waits for an inspector, so the queue has work.
                processes["station-L2"] = subprocess.Popen(
                    [python, "manage.py", "simulate_line", "--line", "L2",
                     f"--token={tokens['L2']['token']}", "--url", url, "--rate", "6/min"],
                    env=env,
                )  # fmt: skip
            self._banner(url, tokens)
            while all(p.poll() is None for p in processes.values()):
                time.sleep(0.5)
            stopped = [name for name, p in processes.items() if p.poll() is not None]
            self.stderr.write(f"{', '.join(stopped)} stopped; stopping the rest.")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping...")
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 10
            for process in processes.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()

    def _wait_until_up(self, url: str, web: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if web.poll() is not None:
                raise CommandError("the web server exited; see its output above")
            try:
                httpx.get(f"{url}/accounts/login/", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise CommandError(f"the web server did not answer at {url} within 60 s")

    def _banner(self, url: str, tokens: dict) -> None:
        lines = [
            "",
            "=" * 64,
            f"  Inspection platform: {url}/   (API docs: {url}/api/docs/)",
            "  Logins (demo passwords):",
            *[f"    {username:<11} {password}" for username, password in DEMO_USERS],
            "  Stations:",
            *[f"    {code}: id {s['id']}, token {s['token']}" for code, s in tokens.items()],
            "  A simulated station posts phones to L1. Ctrl-C stops everything.",
            "=" * 64,
            "",
        ]
        self.stdout.write("\n".join(lines))
