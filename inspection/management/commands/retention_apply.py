"""`python manage.py retention_apply [--json]`: delete capture images past each line's
retention now (what the hourly beat job does) and say what was freed."""

import json

from django.core.management.base import BaseCommand

from inspection import services


class Command(BaseCommand):
    help = "Delete capture images older than each line's image_retention_days (rows stay)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=5000, help="images per line, at most")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options) -> None:
        report = services.retention_apply(batch_size=options["batch_size"])
        if options["json"]:
            self.stdout.write(json.dumps(report.to_dict(), indent=2))
            return
        if not report.lines:
            self.stdout.write("No line has an image retention set: nothing to do.")
        for line in report.lines.values():
            self.stdout.write(
                f"{line.code} ({line.days} days): deleted {line.deleted_images} images "
                f"({line.freed_bytes / 1e6:.1f} MB) and {line.heatmaps_deleted} heatmaps; "
                f"{line.kept_in_use} older images kept (label tasks, datasets, awaiting a human)"
            )
