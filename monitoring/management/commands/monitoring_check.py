"""`python manage.py monitoring_check [--line CODE] [--json]`: run the monitoring job now."""

import json as _json

from django.core.management.base import BaseCommand, CommandError

from core.models import ProductionLine
from monitoring import services


class Command(BaseCommand):
    help = "Compute every line's monitoring signals now (what the beat job does) and print them."

    def add_arguments(self, parser):
        parser.add_argument("--line", help="only this line (its code, e.g. L1)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--force", action="store_true", help="evaluate even when nothing new arrived"
        )

    def handle(self, *args, line: str | None, json: bool, force: bool, **options):
        if line and not ProductionLine.objects.filter(code=line).exists():
            raise CommandError(f"Unknown production line {line!r}.")
        report = services.lines_check(line_code=line, force=force)
        if json:
            self.stdout.write(_json.dumps(report, indent=2, default=str))
            return
        for code, line_report in report["lines"].items():
            self.stdout.write(f"{code}:")
            if "error" in line_report:
                self.stdout.write(f"  {line_report['error']}")
                continue
            for name, signal in line_report["signals"].items():
                self.stdout.write(f"  {name:<17} {signal['status']:<18} {signal['summary']}")
            for alert in line_report["alerts"]:
                self.stdout.write(
                    f"  ALERT {alert['signal']} {alert['severity']}: {alert['summary']}"
                )
