"""User roles, carried by Django groups of the same name."""

from enum import StrEnum
from typing import Any


class Role(StrEnum):
    INSPECTOR = "inspector"
    LABELER = "labeler"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# Who may do what: supervisors and admins may do everything an inspector or labeler may.
INSPECTING = (Role.INSPECTOR, Role.SUPERVISOR, Role.ADMIN)
LABELING = (Role.LABELER, Role.SUPERVISOR, Role.ADMIN)
SUPERVISING = (Role.SUPERVISOR, Role.ADMIN)


def user_roles(user: Any) -> set[str]:
    if not getattr(user, "is_authenticated", False) or not hasattr(user, "groups"):
        return set()
    if user.is_superuser:
        return set(Role)
    cached = getattr(user, "_role_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True)) & set(Role)
        if Role.ADMIN in cached:
            cached = set(Role)
        user._role_names = cached
    return cached


def user_has_role(user: Any, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles))
