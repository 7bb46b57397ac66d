"""What every page's header needs: the links this user's roles open (inspectors see no
supervisor controls)."""

from core.roles import INSPECTING, SUPERVISING, user_roles
from core.selectors import lines_visible


def navigation(request) -> dict:
    roles = user_roles(getattr(request, "user", None))
    may_inspect = bool(roles & {*INSPECTING})
    may_supervise = bool(roles & {*SUPERVISING})
    line_codes: list[str] = []
    if may_inspect:
        line_codes = list(lines_visible(request.user).values_list("code", flat=True))
    return {
        "nav": {
            "inspect_lines": line_codes,
            "supervise": may_supervise,
            "roles": sorted(roles),
        }
    }
