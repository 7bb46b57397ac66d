"""HTML pages of labeling: the labeler's queue and annotation page, review, dataset versions."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from core import selectors as core_selectors
from core.permissions import page_roles_required
from core.roles import LABELING, SUPERVISING, user_has_role
from labeling import queue, selectors, services
from labeling.models import LabelTaskSource
from labeling.regions import DEFECT_TYPES
from labeling.services import imports


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
    page_roles_required(request, *LABELING)
    return render(
        request,
        "labeling/label.html",
        {
            "config": _config(request, "label"),
            "lines": core_selectors.line_list(),
            "sources": LabelTaskSource.choices,
            "open_count": queue.task_queue().count(),
            "stats": selectors.labeler_stats(),
        },
    )


@login_required
def review(request):
    page_roles_required(request, *SUPERVISING)
    return render(request, "labeling/label.html", {"config": _config(request, "review")})


@login_required
def datasets(request):
    page_roles_required(request, *LABELING)
    return render(
        request,
        "labeling/datasets.html",
        {
            "versions": selectors.dataset_version_list(limit=100),
            "lines": core_selectors.line_list(),
            "may_create": user_has_role(request.user, *SUPERVISING),
            "reviewed": selectors.reviewed_annotations_since(),
            "imports": selectors.dataset_import_list(limit=10),
            "limits": imports.import_limits(),
        },
    )
