"""`python manage.py dataset_import ARCHIVE_OR_FOLDER --name NAME [--json]`: the API's import,
run in this process (a zip, a folder, a manifest CSV or a COCO JSON)."""

import json as _json

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from labeling.models import DatasetImportStatus
from labeling.services.imports import dataset_import_path


class Command(BaseCommand):
    help = "Import a dataset (zip, folder, manifest CSV or COCO JSON) as a new dataset version."

    def add_arguments(self, parser):
        parser.add_argument("path", help="a zip, a folder, a manifest CSV or a COCO JSON")
        parser.add_argument("--name", required=True, help="the new dataset version's name")
        parser.add_argument("--json", action="store_true", help="print the import as JSON")

    def handle(self, *args, path: str, name: str, json: bool, **options):
        try:
            job = dataset_import_path(name=name, path=path)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        report = {
            "id": job.pk,
            "name": job.name,
            "status": job.status,
            "dataset_version": job.dataset_version_id,
            "errors": job.errors,
            "error": job.error,
            "progress": job.progress,
            "counts": job.counts,
        }
        if json:
            self.stdout.write(_json.dumps(report, indent=2))
        else:
            self.stdout.write(
                f"import {job.pk}: {job.status}"
                + (f", dataset version {job.dataset_version_id}" if job.dataset_version_id else "")
                + f" ({job.counts.get('imported', 0)} imported, "
                f"{job.counts.get('refused', 0)} refused, "
                f"{job.counts.get('duplicates', 0)} duplicates)"
            )
            for message in job.errors:
                self.stdout.write(f"  refused: {message}")
            if job.error:
                self.stdout.write(f"  failed: {job.error}")
        if job.status != DatasetImportStatus.DONE:
            raise CommandError(job.error or "the import failed")
