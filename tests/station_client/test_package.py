"""The station client ships alone: it imports without Django or any of the platform's code."""

import subprocess
import sys

from tests.integration.conftest import ROOT

BLOCKED = ["django", "rest_framework", "channels", "celery", "torch", "core", "inspection",
           "models_registry", "labeling", "monitoring", "vision", "config"]  # fmt: skip


def test_the_client_imports_and_runs_with_django_and_our_apps_absent():
    script = (
        "import sys\n"
        f"for name in {BLOCKED!r}: sys.modules[name] = None\n"
        "import station_client, station_client.cli, station_client.watch, station_client.edge\n"
        "import station_client.mqtt\n"
        "sys.argv = ['station_client', '--help']\n"
        "import runpy; runpy.run_module('station_client', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in ("capture", "flush", "watch", "mqtt"))
