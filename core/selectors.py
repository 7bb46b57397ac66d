"""Reads of lines that every app needs (the capture flow's reads live in inspection.selectors)."""

from django.db.models import QuerySet

from core.errors import ApplicationError
from core.models import ProductionLine


def line_get(*, code: str) -> ProductionLine:
    line = ProductionLine.objects.filter(code=code).first()
    if line is None:
        raise ApplicationError(
            f"Unknown production line {code!r}.", code="unknown_line", status=404
        )
    return line


def line_list() -> QuerySet[ProductionLine]:
    return ProductionLine.objects.all()
