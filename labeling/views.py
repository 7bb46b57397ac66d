"""HTML pages of labeling: the labeler's queue and annotation page, review, dataset versions."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from core.models import ProductionLine
from core.roles import Role, user_has_role
from labeling import queue, selectors, services
from labeling.models import DatasetVersion, LabelTaskSource
from labeling.regions import DEFECT_TYPES


def _roles_or_403(request, *roles: str) -> None:
    if not user_has_role(request.user, *roles):
        raise PermissionDenied("Your account does not have the role for this page.")


def _config(request, mode: str) -> dict:
    return {
        "mode": mode,
        "api": "/api/v1",
        "user": request.user.username,
        "defectTypes": list(DEFECT_TYPES),
        "leaseSeconds": services.LEASE_SECONDS,
    }


@login_required
def label(request):
    """The labeler's queue (filters) and the annotation workspace: `/label/`."""
    _roles_or_403(request, Role.LABELER, Role.SUPERVISOR, Role.ADMIN)
    return render(
        request,
        "labeling/label.html",
        {
            "config": _config(request, "label"),
            "lines": ProductionLine.objects.all(),
            "sources": LabelTaskSource.choices,
            "open_count": queue.task_queue().count(),
            "stats": selectors.labeler_stats(),
        },
    )


@login_required
def review(request):
    _roles_or_403(request, Role.SUPERVISOR, Role.ADMIN)
    return render(request, "labeling/label.html", {"config": _config(request, "review")})


@login_required
def datasets(request):
    _roles_or_403(request, Role.LABELER, Role.SUPERVISOR, Role.ADMIN)
    return render(
        request,
        "labeling/datasets.html",
        {
            "versions": DatasetVersion.objects.select_related("created_by")[:100],
            "lines": ProductionLine.objects.all(),
            "may_create": user_has_role(request.user, Role.SUPERVISOR, Role.ADMIN),
            "reviewed": selectors.reviewed_annotations_since(),
        },
    )
