"""Who may call which API: stations by token, users by role."""

from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from core.models import Station
from core.roles import INSPECTING, LABELING, SUPERVISING, Role, user_has_role


def is_station(request) -> bool:
    return isinstance(request.auth, Station)


class IsStation(BasePermission):
    message = "Only a station (Authorization: Token <station token>) may do this."

    def has_permission(self, request, view) -> bool:
        return is_station(request)


class IsInspector(BasePermission):
    message = "This needs an inspector, supervisor or admin account."

    def has_permission(self, request, view) -> bool:
        return user_has_role(request.user, *INSPECTING)


class IsLabeler(BasePermission):
    message = "This needs a labeler, supervisor or admin account."

    def has_permission(self, request, view) -> bool:
        return user_has_role(request.user, *LABELING)


class IsSupervisor(BasePermission):
    message = "This needs a supervisor or admin account."

    def has_permission(self, request, view) -> bool:
        return user_has_role(request.user, *SUPERVISING)


class IsStationOrStaff(BasePermission):
    """A station (its own line's captures are checked by the view) or any user with a role."""

    message = "This needs a station token or a user with a role."

    def has_permission(self, request, view) -> bool:
        return is_station(request) or user_has_role(request.user, *Role)


def page_roles_required(request, *roles: str, message: str = "") -> None:
    """For HTML pages: 403 unless the user has one of the roles."""
    if not user_has_role(request.user, *roles):
        raise PermissionDenied(message or "Your account does not have the role for this page.")
