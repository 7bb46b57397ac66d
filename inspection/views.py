"""HTML pages of inspection: home by role, the inspector's station, the supervisor's lines."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from core import selectors as core_selectors
from core.models import AutomationLevel, DefectSeverity, OutagePolicy
from core.permissions import page_roles_required
from core.roles import INSPECTING, SUPERVISING, user_roles
from inspection import selectors, services


@login_required
def home(request):
    return render(
        request,
        "home.html",
        {
            "roles": sorted(user_roles(request.user)),
            "lines": core_selectors.lines_visible(request.user),
            "sees_all_lines": core_selectors.user_sees_all_lines(request.user),
        },
    )


@login_required
def inspect(request, line_codes: str):
    """The inspector's station: `/inspect/L1/`, or several lines at once: `/inspect/L1,L2/`."""
    page_roles_required(request, *INSPECTING)
    codes = [code for code in line_codes.split(",") if code]
    lines = list(core_selectors.line_list().filter(code__in=codes))
    if not codes or len(lines) != len(set(codes)):
        raise Http404("Unknown production line.")
    for line in lines:
        if not core_selectors.line_is_visible(request.user, line.pk):
            raise PermissionDenied(
                f"Line {line.code} is not assigned to you; a supervisor can assign it."
            )
    config = {
        "lines": codes,
        "user": request.user.username,
        "userId": request.user.pk,
        "undoSeconds": services.UNDO_SECONDS,
        "leaseSeconds": selectors.claim_lease_seconds(),
        "api": "/api/v1",
        # What a drawn box may be, per line: its taxonomy's active types (name, label, colour).
        "defectTypes": {
            line.code: core_selectors.defect_type_catalogue(
                taxonomy=core_selectors.taxonomy_for_line(line)
            )
            for line in lines
        },
    }
    return render(request, "inspection/inspect.html", {"lines": lines, "config": config})


@login_required
def supervise(request):
    """All lines at a glance; automation levels, thresholds and guard rails, audited."""
    page_roles_required(request, *SUPERVISING)
    return render(
        request,
        "inspection/supervise.html",
        {
            "overview": selectors.line_overview(now=timezone.now()),
            "levels": AutomationLevel.choices,
            "outage_policies": OutagePolicy.choices,
            "changes": selectors.recent_line_changes(),
            "inspectors": core_selectors.inspector_users(),
        },
    )


@login_required
def defect_taxonomy(request):
    """The defect taxonomies: types with their labels, colours, hotkeys and severity, the
    lines that use each, and the audit trail; edited through /api/v1/taxonomies."""
    page_roles_required(request, *SUPERVISING)
    taxonomies = [
        {"taxonomy": t, "lines": core_selectors.taxonomy_line_codes(taxonomy=t)}
        for t in core_selectors.taxonomy_list()
    ]
    return render(
        request,
        "inspection/taxonomy.html",
        {
            "taxonomies": taxonomies,
            "lines": core_selectors.line_list(),
            "severities": DefectSeverity.choices,
            "changes": core_selectors.taxonomy_changes_recent(),
        },
    )
