"""`python manage.py register_model PATH [--deploy-to LINE --role ROLE [--percent P]]`."""

from django.core.management.base import BaseCommand, CommandError

from core import selectors as core_selectors
from core.errors import ApplicationError
from models_registry import services


class Command(BaseCommand):
    help = "Add a trained vision artifact to the registry, and optionally deploy it to a line."

    def add_arguments(self, parser):
        parser.add_argument("path", help="artifact written by `python -m vision train`")
        parser.add_argument("--name", default="", help="a name (default: the file name)")
        parser.add_argument("--deploy-to", dest="line", help="line code to deploy it to")
        parser.add_argument(
            "--role", choices=["production", "shadow", "canary"], default="production"
        )
        parser.add_argument("--percent", type=float, default=5.0, help="canary percent")

    def handle(self, *args, path: str, name: str, line: str | None, role: str, percent, **options):
        try:
            version = services.model_version_register(path=path, name=name)
            self.stdout.write(f"Registered model version {version.pk}: {version}")
            if line:
                deployment = services.deployment_set(
                    line=core_selectors.line_get(code=line),
                    model_version=version,
                    role=role,
                    canary_percent=percent,
                )
                extra = f" ({deployment.canary_percent}%)" if role == "canary" else ""
                self.stdout.write(f"Deployed to {line} as {role}{extra}.")
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
