"""`python manage.py seed_demo [--no-train]`: demo lines, users, stations and a first model."""

import json
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.models import AutomationLevel, ProductionLine
from core.roles import Role
from inspection import services
from models_registry import services as registry_services
from models_registry.models import ModelVersion
from vision.synth import synth_items
from vision.train import TrainConfig, train

DEMO_LINES = [
    ("L1", "Line 1: final assembly", AutomationLevel.PARTIAL),
    ("L2", "Line 2: refurbishment", AutomationLevel.ASSISTED),
]
# Demo passwords, printed on purpose: never use this command on a real deployment.
DEMO_USERS = [(role.value, f"{role.value}-demo") for role in Role]


class Command(BaseCommand):
    help = (
        "Create demo lines (L1, L2), users (inspector, labeler, supervisor, admin with DEMO "
        "passwords), a station per line, and unless --no-train a first model in production."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-train", action="store_true", help="do not train a model")
        parser.add_argument(
            "--train-minutes", type=float, default=2.0, help="training budget for the first model"
        )
        # 96 phones left the first model failing many good phones; 240 take ~8 s to make and
        # give a usable model in the 2-minute budget.
        parser.add_argument("--train-images", type=int, default=240)
        parser.add_argument(
            "--tokens-file", help="also write the stations' tokens to this JSON file"
        )
        parser.add_argument(
            "--allow-demo-passwords",
            action="store_true",
            help="create the demo users even with DEBUG off (their passwords are public)",
        )

    def handle(self, *args, no_train: bool, train_minutes: float, train_images: int, **options):
        if not settings.DEBUG and not options.get("allow_demo_passwords"):
            raise CommandError(
                "DEBUG is off: seed_demo would create users whose passwords are printed in the "
                "README (inspector / inspector-demo, ...). Run it with DEBUG=1 for the demo, or "
                "pass --allow-demo-passwords if this really is a throw-away installation."
            )
        lines = self._lines_and_users()
        tokens = self._stations(lines)
        if options.get("tokens_file"):
            path = Path(options["tokens_file"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(tokens, indent=2))
        if not no_train and not ModelVersion.objects.exists():
            self._first_model(lines, minutes=train_minutes, count=train_images)

        self.stdout.write("\nDemo logins (DEMO passwords: for this demo only):")
        for username, password in DEMO_USERS:
            self.stdout.write(f"  {username:<11} {password}")
        self.stdout.write("Stations (new tokens; old ones stop working):")
        for code, station in tokens.items():
            self.stdout.write(f"  {code}: station id {station['id']}, token {station['token']}")

    @transaction.atomic
    def _lines_and_users(self) -> list[ProductionLine]:
        lines = []
        for code, name, level in DEMO_LINES:
            line = ProductionLine.objects.filter(code=code).first()
            if line is None:
                line = services.line_create(
                    code=code, name=name, automation_level=level, audit_percent=2.0
                )
                self.stdout.write(f"Created line {code} ({level}).")
            lines.append(line)
        for username, password in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.is_staff = user.is_superuser = username == Role.ADMIN
                user.save()
            user.groups.add(Group.objects.get_or_create(name=username)[0])
            if username == Role.INSPECTOR:  # inspectors see only the lines assigned to them
                for line in lines:
                    line.inspectors.add(user)
        return lines

    def _stations(self, lines: list[ProductionLine]) -> dict[str, dict]:
        tokens = {}
        for line in lines:
            name = f"{line.code}-S1"
            station = line.stations.filter(name=name).first()
            new = (
                services.station_token_rotate(station=station)
                if station
                else services.station_create(line=line, name=name)
            )
            tokens[line.code] = {"id": new.station.pk, "name": name, "token": new.token}
        return tokens

    def _first_model(self, lines: list[ProductionLine], *, minutes: float, count: int) -> None:
        self.stdout.write(
            f"No model yet: training a first one on {count} synthetic phones "
            f"(at most {minutes:g} min)..."
        )
        items = synth_items(count, seed=0, size=(1024, 576))
        started = time.monotonic()
        last = [0.0]

        def progress(event: dict) -> None:
            if event.get("event") == "step" and time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                self.stdout.write(
                    f"  {event.get('fraction', 0) * 100:5.1f}%  step {event.get('step')}  "
                    f"loss {event.get('loss', 0):.4f}"
                )
                self.stdout.flush()

        result = train(items, config=TrainConfig(minutes=minutes, seed=0), progress=progress)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "demo-first-model.pt"
            result.save(path)
            version = registry_services.model_version_register(path=path, name="demo-first-model")
        thresholds = version.metadata.get("thresholds", {})
        for line in lines:
            registry_services.deployment_set(line=line, model_version=version, role="production")
            if "pass" in thresholds and "fail" in thresholds:
                # The model's own calibrated thresholds (validation set), recorded as a change.
                services.line_settings_update(
                    line=line,
                    user=None,
                    pass_threshold=round(float(thresholds["pass"]), 4),
                    fail_threshold=round(float(thresholds["fail"]), 4),
                )
        self.stdout.write(
            f"Trained in {time.monotonic() - started:.0f} s ({result.stopped_because}); model "
            f"{version.pk} is in production on {', '.join(line.code for line in lines)}."
        )
