"""What the capture APIs answer: a capture as the station sees it, and as the inspector's page
shows it (image URLs, level, claim). The model's output appears where the policy showed it."""

import threading
import uuid
from typing import Any

from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from inspection import selectors


class RegionSerializer(serializers.Serializer):
    box = serializers.ListField(
        child=serializers.IntegerField(min_value=0), min_length=4, max_length=4
    )
    defect_type = serializers.CharField(max_length=32, default="scratch")
    # A model region the inspector rejected (the model was wrong there): a label, not a defect.
    rejected = serializers.BooleanField(required=False)

    def validate_box(self, box: list[int]) -> list[int]:
        if box[2] <= box[0] or box[3] <= box[1]:
            raise serializers.ValidationError("box must be [x0, y0, x1, y1] with x1 > x0, y1 > y0.")
        return box


class EdgeOutputSerializer(serializers.Serializer):
    """The verdict the station's edge model gave during an outage (kept after an override)."""

    verdict = serializers.CharField(source="edge_verdict")
    score = serializers.FloatField(source="edge_score", allow_null=True)
    model_version = serializers.IntegerField(source="edge_model_version_id")
    model_label = serializers.CharField(
        source="edge_model_version.label", help_text='The model\'s name and number, e.g. "tiny v3".'
    )
    model_sha256 = serializers.CharField(source="edge_model_sha256")
    decided_at = serializers.DateTimeField(
        source="edge_decided_at", help_text="When the station decided, by its own clock."
    )


class CaptureOutputSerializer(serializers.Serializer):
    """The answer stations read: id, line, status, verdict, decided_by (shared/INTERFACES.md);
    decided_by is `edge` for a verdict the station's edge model gave during an outage."""

    id = serializers.UUIDField()
    line = serializers.CharField(source="line.code")
    station = serializers.IntegerField(source="station_id")
    idempotency_key = serializers.CharField()
    status = serializers.CharField(source="decision.status")
    verdict = serializers.SerializerMethodField()
    decided_by = serializers.SerializerMethodField()
    decided_at = serializers.DateTimeField(source="decision.decided_at", allow_null=True)
    reason = serializers.CharField(source="decision.reason")
    audit = serializers.BooleanField(source="decision.audit")
    # An audit sample's review: pending, confirmed or overridden (null when not audited).
    audit_status = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    # Set when the station's edge model decided it during an outage (null otherwise).
    edge = serializers.SerializerMethodField()
    received_at = serializers.DateTimeField()
    captured_at = serializers.DateTimeField(allow_null=True)
    image_sha256 = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    metadata = serializers.JSONField()

    def get_audit_status(self, capture) -> str | None:
        return capture.decision.audit_status or None

    def get_verdict(self, capture) -> str | None:
        return capture.decision.verdict or None

    def get_decided_by(self, capture) -> str | None:
        return capture.decision.decided_by or None

    @extend_schema_field(EdgeOutputSerializer(allow_null=True))
    def get_edge(self, capture) -> dict[str, Any] | None:
        return _edge_output(capture)

    def get_model(self, capture) -> dict[str, Any] | None:
        """The acting model's output, when the line's level shows it."""
        return _model_output(capture)


_per_thread = threading.local()


def thread_serializer(cls: type[serializers.Serializer]) -> serializers.Serializer:
    """One unbound serializer of `cls` per thread, reused on the station's path (the capture
    form's): making one at each request deep-copies and binds its fields (for the answer's 19,
    under cProfile, 0.9 ms of 1.3). Use `to_representation` and `run_validation` (what `.data`
    and `is_valid` run)."""
    made = getattr(_per_thread, "made", None)
    if made is None:
        made = _per_thread.made = {}
    if cls not in made:
        made[cls] = cls()
    return made[cls]


# DRF's own date-time output (ISO 8601 in the current time zone, "Z" for UTC), as the
# serializer's fields write it.
_DATETIME = serializers.DateTimeField()


def _when(value: Any) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def capture_output(capture) -> dict[str, Any]:
    """`CaptureOutputSerializer(capture).data`, written out field by field: the station waits
    for it after the model, when the serializer's 19 fields (each fetched and converted through
    its Field) took ~0.4 ms of a cold interpreter against ~0.05 ms for this. A test compares the
    two on every kind of capture; the serializer stays the schema."""
    decision = capture.decision
    return {
        "id": str(capture.id),
        "line": capture.line.code,
        "station": int(capture.station_id),
        "idempotency_key": str(capture.idempotency_key),
        "status": str(decision.status),
        "verdict": decision.verdict or None,
        "decided_by": decision.decided_by or None,
        "decided_at": _when(decision.decided_at),
        "reason": str(decision.reason),
        "audit": bool(decision.audit),
        "audit_status": decision.audit_status or None,
        "model": _model_output(capture),
        "edge": _edge_output(capture),
        "received_at": _when(capture.received_at),
        "captured_at": _when(capture.captured_at),
        "image_sha256": str(capture.image_sha256),
        "width": int(capture.width),
        "height": int(capture.height),
        "metadata": capture.metadata,
    }


def _edge_output(capture) -> dict[str, Any] | None:
    """The station's edge decision, for a capture decided at the edge during an outage."""
    decision = capture.decision
    return EdgeOutputSerializer(decision).data if decision.edge_verdict else None


def _model_output(capture) -> dict[str, Any] | None:
    """The acting model's output, when the line's level shows it."""
    decision = capture.decision
    if not decision.model_shown:
        return None
    for prediction in capture.predictions.all():
        if prediction.pk == decision.acting_prediction_id:
            return {
                "model_version": prediction.model_version_id,
                "role": prediction.role,
                "score": round(prediction.score, 6),
                "verdict": decision.model_verdict,
                "regions": prediction.regions,
                "latency_ms": prediction.latency_ms,
            }
    return None


def capture_response(capture, code: int = status.HTTP_200_OK) -> Response:
    return Response(capture_output(capture), status=code)


def capture_answer(capture, code: int) -> HttpResponse:
    """The station's answer to its capture POST: `capture_response`'s JSON, rendered now as
    DRF's JSONRenderer writes it (the API's only renderer: compact, UTF-8, no NaN) rather than
    by the Response on its way out of the view (~0.1 ms of the station's wait)."""
    return HttpResponse(
        JSONRenderer().render(capture_output(capture)), content_type="application/json", status=code
    )


_URL_PLACEHOLDER = uuid.UUID(int=0)


class InspectorCaptureSerializer(CaptureOutputSerializer):
    """A capture as the inspector's page shows it: the station's fields, plus image URLs, the
    line's level and who holds the claim. The model's output is hidden in manual and shadow."""

    image_url = serializers.SerializerMethodField()
    heatmap_url = serializers.SerializerMethodField()
    automation_level = serializers.CharField(source="line.automation_level")
    station_name = serializers.CharField(source="station.name")
    claimed_by = serializers.SerializerMethodField()
    claim_expires_at = serializers.DateTimeField(
        source="decision.claim_expires_at", allow_null=True
    )
    claimed_at = serializers.DateTimeField(source="decision.claimed_at", allow_null=True)

    def get_image_url(self, capture) -> str:
        return self._url("inspection:capture-image", capture.pk)

    def get_heatmap_url(self, capture) -> str | None:
        if self.get_model(capture) is None:
            return None
        return self._url("inspection:capture-heatmap", capture.pk)

    def _url(self, name: str, capture_id: Any) -> str:
        # Reversed once per page (one serializer serves every item of a list), not twice per
        # capture: 400 reverses were a sixth of the inspector's queue.
        if not hasattr(self, "_url_patterns"):
            self._url_patterns: dict[str, str] = {}
        if name not in self._url_patterns:
            self._url_patterns[name] = reverse(name, args=[_URL_PLACEHOLDER])
        return self._url_patterns[name].replace(str(_URL_PLACEHOLDER), str(capture_id))

    def get_claimed_by(self, capture) -> str | None:
        user = capture.decision.claimed_by
        return user.username if user else None


def inspector_response(capture_id: Any) -> Response:
    return Response(InspectorCaptureSerializer(selectors.capture_get(capture_id=capture_id)).data)
