"""The station and inspector API (v1), by capability: parse, call one service or selector,
serialize. `inspection/urls.py` routes to these."""

from inspection.apis.captures import (
    CaptureClaimApi,
    CaptureCollectionApi,
    CaptureDetailApi,
    CaptureHeatmapApi,
    CaptureImageApi,
    CaptureReleaseApi,
    CaptureUndoApi,
    CaptureVerdictApi,
    capture_detail,
)
from inspection.apis.lines import LineChangeListApi, LineDetailApi, LineListApi
from inspection.apis.queue import InspectorQueueApi
from inspection.apis.taxonomies import (
    DefectTypeCollectionApi,
    DefectTypeDetailApi,
    TaxonomyChangeListApi,
    TaxonomyCollectionApi,
    TaxonomyDetailApi,
)

__all__ = [
    "CaptureClaimApi",
    "CaptureCollectionApi",
    "CaptureDetailApi",
    "CaptureHeatmapApi",
    "CaptureImageApi",
    "CaptureReleaseApi",
    "CaptureUndoApi",
    "CaptureVerdictApi",
    "DefectTypeCollectionApi",
    "DefectTypeDetailApi",
    "InspectorQueueApi",
    "LineChangeListApi",
    "LineDetailApi",
    "LineListApi",
    "TaxonomyChangeListApi",
    "TaxonomyCollectionApi",
    "TaxonomyDetailApi",
    "capture_detail",
]
