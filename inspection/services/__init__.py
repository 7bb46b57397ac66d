"""Every write of inspection, by capability; the names are re-exported here
(`from inspection import services`):

- captures: a station's capture checked, predicted, routed and stored (`capture_ingest`), with
  the edge model's decision when the station decided it during an outage (`EdgeDecision`)
- claims: an inspector's lease on a pending capture, and the one locking lookup
- verdicts: human verdicts, audit reviews of model decisions, undo
- lines: audited line settings behind the guard rail, lines, stations and their tokens
- predictions: the shadow model offline, heatmaps on demand
- rescoring: batch re-scoring of stored captures with a registry version
- retention: capture images deleted after each line's retention days (rows stay)
- taxonomy: defect taxonomies and their types, edited by supervisors, audited
"""

from inspection.services.captures import (
    EarlyDecode,
    EdgeDecision,
    IngestResult,
    capture_ingest,
    image_decode,
    image_format,
)
from inspection.services.claims import (
    capture_claim,
    capture_release,
    decision_claim,
    decision_for_update,
)
from inspection.services.lines import (
    NewStation,
    line_create,
    line_settings_update,
    station_create,
    station_token_rotate,
)
from inspection.services.predictions import capture_heatmap_png, prediction_record_offline
from inspection.services.rescoring import batch_predict_execute, batch_prediction_summary
from inspection.services.retention import RetentionReport, retention_apply
from inspection.services.taxonomy import (
    defect_type_create,
    defect_type_delete,
    defect_type_update,
    taxonomy_create,
    taxonomy_update,
)
from inspection.services.verdicts import UNDO_SECONDS, verdict_record, verdict_undo

__all__ = [
    "UNDO_SECONDS",
    "EarlyDecode",
    "EdgeDecision",
    "IngestResult",
    "NewStation",
    "RetentionReport",
    "batch_predict_execute",
    "batch_prediction_summary",
    "capture_claim",
    "capture_heatmap_png",
    "capture_ingest",
    "capture_release",
    "decision_claim",
    "defect_type_create",
    "defect_type_delete",
    "defect_type_update",
    "retention_apply",
    "decision_for_update",
    "image_decode",
    "image_format",
    "line_create",
    "line_settings_update",
    "prediction_record_offline",
    "station_create",
    "station_token_rotate",
    "taxonomy_create",
    "taxonomy_update",
    "verdict_record",
    "verdict_undo",
]
