"""What every page's header needs: the links this user's roles open (inspectors see no
supervisor controls)."""

from core.roles import Role, user_roles


def navigation(request) -> dict:
    roles = user_roles(getattr(request, "user", None))
    may_inspect = bool(roles & {Role.INSPECTOR, Role.SUPERVISOR, Role.ADMIN})
    may_supervise = bool(roles & {Role.SUPERVISOR, Role.ADMIN})
    line_codes: list[str] = []
    if may_inspect:
        from core.models import ProductionLine

        line_codes = list(ProductionLine.objects.values_list("code", flat=True))
    return {
        "nav": {
            "inspect_lines": line_codes,
            "supervise": may_supervise,
            "roles": sorted(roles),
        }
    }
