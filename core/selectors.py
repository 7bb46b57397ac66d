"""Reads of lines that every app needs (the capture flow's reads live in inspection.selectors)."""

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet

from core.errors import ApplicationError
from core.models import ProductionLine
from core.roles import SUPERVISING, Role, user_has_role


def line_get(*, code: str) -> ProductionLine:
    line = ProductionLine.objects.filter(code=code).first()
    if line is None:
        raise ApplicationError(
            f"Unknown production line {code!r}.", code="unknown_line", status=404
        )
    return line


def line_list() -> QuerySet[ProductionLine]:
    return ProductionLine.objects.all()


# --- Which lines a user may see: inspectors their assigned lines, supervisors and admins all ---


def user_sees_all_lines(user: Any) -> bool:
    return user_has_role(user, *SUPERVISING)


def line_ids_visible(user: Any) -> set[int] | None:
    """The ids of the lines this user may see, or None for every line."""
    if user_sees_all_lines(user):
        return None
    if getattr(user, "pk", None) is None:
        return set()
    assignments = ProductionLine.inspectors.through.objects.filter(user_id=user.pk)
    return set(assignments.values_list("productionline_id", flat=True))


def line_is_visible(user: Any, line_id: int) -> bool:
    visible = line_ids_visible(user)
    return visible is None or line_id in visible


def lines_visible(user: Any, lines: QuerySet[ProductionLine] | None = None) -> QuerySet:
    lines = ProductionLine.objects.all() if lines is None else lines
    visible = line_ids_visible(user)
    return lines if visible is None else lines.filter(pk__in=visible)


def line_get_visible(*, code: str, user: Any) -> ProductionLine:
    """The line, or 403 when it is not one of this inspector's lines (404 when unknown)."""
    line = line_get(code=code)
    if not line_is_visible(user, line.pk):
        raise ApplicationError(
            f"Line {code} is not assigned to you; a supervisor can assign it.",
            code="line_not_assigned",
            status=403,
        )
    return line


def inspector_users() -> QuerySet:
    """Active accounts with the inspector role, for assigning to lines."""
    return (
        User.objects.filter(is_active=True, groups__name=Role.INSPECTOR)
        .distinct()
        .order_by("username")
    )
