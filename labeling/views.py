"""HTML pages of labeling: the labeler's queue and annotation page, review, dataset versions."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from core import selectors as core_selectors
from core.permissions import page_roles_required
from core.roles import LABELING, SUPERVISING, user_has_role
from labeling import queue, selectors, services
from labeling.models import LabelTaskSource
from labeling.services import imports


def _defect_types(config: dict) -> list[dict]:
    return config["taxonomies"][config["defaultTaxonomy"]]


def _config(request, mode: str) -> dict:
    """What the page's script needs; defect types come from the taxonomies (the task's line's,
    else the default one) with their labels, colours and hotkeys."""
    default = core_selectors.taxonomy_default()
    taxonomies = {
        taxonomy.name: [
            core_selectors.defect_type_dict(t) for t in taxonomy.defect_types.all() if t.is_active
        ]
        for taxonomy in core_selectors.taxonomy_list()
    }
    return {
        "mode": mode,
        "api": "/api/v1",
        "user": request.user.username,
        "defaultTaxonomy": default.name,
        "taxonomies": taxonomies,
        "lineTaxonomies": {
            line.code: line.taxonomy.name if line.taxonomy_id else default.name
            for line in core_selectors.line_list().select_related("taxonomy")
        },
        "leaseSeconds": services.LEASE_SECONDS,
    }


@login_required
def label(request):
    """The labeler's queue (filters) and the annotation workspace: `/label/`."""
    page_roles_required(request, *LABELING)
    config = _config(request, "label")
    return render(
        request,
        "labeling/label.html",
        {
            "config": config,
            "defect_types": _defect_types(config),
            "lines": core_selectors.line_list(),
            "sources": LabelTaskSource.choices,
            "open_count": queue.task_queue().count(),
            "stats": selectors.labeler_stats(),
        },
    )


@login_required
def review(request):
    page_roles_required(request, *SUPERVISING)
    config = _config(request, "review")
    return render(
        request,
        "labeling/label.html",
        {"config": config, "defect_types": _defect_types(config)},
    )


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
