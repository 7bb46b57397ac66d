"""`python manage.py create_station --line L1 --name S1`: prints the token as its last line."""

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from inspection import selectors, services


class Command(BaseCommand):
    help = "Create a station on a line and print its token (shown only once) as the last line."

    def add_arguments(self, parser):
        parser.add_argument("--line", required=True, help="line code, e.g. L1")
        parser.add_argument("--name", required=True, help="station name, unique on the line")
        parser.add_argument(
            "--rotate", action="store_true", help="if the station exists, give it a new token"
        )

    def handle(self, *args, line: str, name: str, rotate: bool, **options):
        try:
            production_line = selectors.line_get(code=line)
            existing = production_line.stations.filter(name=name).first()
            if existing and rotate:
                new = services.station_token_rotate(station=existing)
            else:
                new = services.station_create(line=production_line, name=name)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Station {new.station} (id {new.station.pk}); its token:")
        self.stdout.write(new.token)
