"""The station's capture API and the inspector's actions on one capture: post, list, read
(with a long poll), claim, verdict, release, undo, image and heatmap."""

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable
from typing import Any, NoReturn

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.views import APIView

from core import blobs, live_events
from core.api_schema import CURSOR_PAGE_PARAMETERS, ID_MAX, cursor_paginated, errors
from core.authentication import station_kept
from core.errors import ApplicationError
from core.instances import instances_release
from core.models import Verdict
from core.multipart import multipart_part
from core.pagination import KeysetPagination
from core.permissions import IsInspector, IsStation, IsStationOrStaff, is_station
from core.selectors import line_ids_visible, line_is_visible
from core.throttling import station_refused_lately
from inspection import events, selectors, services
from inspection.apis.serializers import (
    CaptureOutputSerializer,
    InspectorCaptureSerializer,
    RegionSerializer,
    capture_answer,
    capture_response,
    inspector_response,
    thread_serializer,
)
from inspection.models import DecisionStatus

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60
# A waiting request re-reads the decision at least this often, so it also learns of verdicts
# recorded by another web process when the channel layer is in memory.
WAIT_RECHECK_SECONDS = 1.0


def _json_depth(value: Any) -> int:
    """How deeply objects and lists nest in `value` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


@extend_schema_field(
    {
        "type": "string",
        "description": "A JSON object (serial number, fixture id, ...), as text.",
        "example": '{"serial": "SN123"}',
    }
)
class MetadataField(serializers.Field):
    """A JSON object sent as a form field's text: at most CAPTURE_METADATA_MAX_BYTES, nested at
    most CAPTURE_METADATA_MAX_DEPTH deep, checked before and while it is parsed."""

    def to_internal_value(self, data: Any) -> dict:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        limit = settings.CAPTURE_METADATA_MAX_BYTES
        size = len(text.encode())
        if size > limit:
            raise serializers.ValidationError(
                f"metadata is {size} bytes of JSON; at most {limit} bytes are accepted."
            )
        max_depth = settings.CAPTURE_METADATA_MAX_DEPTH
        try:
            value = json.loads(text)
        except RecursionError:  # deeper than Python's parser goes
            raise serializers.ValidationError(
                f"metadata is nested too deeply; at most {max_depth} levels are accepted."
            ) from None
        except ValueError:
            raise serializers.ValidationError("metadata must be a JSON object.") from None
        depth = _json_depth(value)
        if depth > max_depth:
            raise serializers.ValidationError(
                f"metadata is nested {depth} levels deep; at most {max_depth} are accepted."
            )
        if not isinstance(value, dict):
            raise serializers.ValidationError("metadata must be a JSON object.")
        return value

    def to_representation(self, value: Any) -> Any:
        return value


EDGE_DECISION_MAX_BYTES = 2048
_EDGE_DECISION_EXAMPLE = (
    '{"verdict": "fail", "score": 0.91, "model_version": 12, "model_sha256": "9f86d0...", '
    '"decided_at": "2026-03-02T14:05:09+00:00"}'
)


class EdgeDecisionSerializer(serializers.Serializer):
    """What the station's edge model decided during an outage (the model from
    GET /api/v1/lines/{code}/model, named by the X-Model-Version and X-Model-Sha256 it came
    with)."""

    verdict = serializers.ChoiceField(choices=Verdict.choices)
    model_version = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    decided_at = serializers.DateTimeField()
    score = serializers.FloatField(required=False, allow_null=True)
    model_sha256 = serializers.RegexField(
        r"^[0-9a-f]{64}$", required=False, allow_blank=True, allow_null=True
    )

    def validate_score(self, score: float | None) -> float | None:
        if score is not None and not math.isfinite(score):
            raise serializers.ValidationError("must be a finite number.")
        return score


@extend_schema_field(
    {
        "type": "string",
        "description": "Only for a capture the station's edge model decided while the server "
        "could not be reached: that decision as a JSON object, as text: `verdict` (pass or "
        "fail), `model_version` and `model_sha256` (the X-Model-Version and X-Model-Sha256 sent "
        "with the edge model), `score`, and `decided_at` (ISO 8601, the station's clock). The "
        "server records it as an edge decision and does not decide the capture again.",
        "example": _EDGE_DECISION_EXAMPLE,
    }
)
class EdgeDecisionField(serializers.Field):
    """The edge model's decision as a form field's JSON text, checked into an EdgeDecision."""

    def _refuse(self, message: str) -> NoReturn:
        raise serializers.ValidationError(message, code="invalid_edge_decision")

    def to_internal_value(self, data: Any) -> services.EdgeDecision:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if len(text.encode()) > EDGE_DECISION_MAX_BYTES:
            self._refuse(f"at most {EDGE_DECISION_MAX_BYTES} bytes of JSON are accepted.")
        try:
            value = json.loads(text, parse_constant=_no_constants)
        except (ValueError, RecursionError):
            self._refuse("must be a JSON object (the edge model's verdict, score, ...).")
        if not isinstance(value, dict):
            self._refuse("must be a JSON object (the edge model's verdict, score, ...).")
        checked = EdgeDecisionSerializer(data=value)
        if not checked.is_valid():
            problems = "; ".join(
                f"{name}: {' '.join(str(e) for e in errors)}"
                for name, errors in checked.errors.items()
            )
            self._refuse(problems)
        edge = checked.validated_data
        return services.EdgeDecision(
            verdict=edge["verdict"],
            model_version_id=edge["model_version"],
            decided_at=edge["decided_at"],
            score=edge.get("score"),
            model_sha256=edge.get("model_sha256") or "",
        )

    def to_representation(self, value: Any) -> Any:
        return value


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a number")


EARLY_DECODE = "inspection.early_decode"  # the environ's key for the image's EarlyDecode


def capture_decode_early(environ: dict[str, Any], body: bytes) -> Callable[[], None] | None:
    """The decoding of a posted capture's image as its body comes in (core/asgi_threads.py's
    `early`: its `run`, returned, decodes on the event loop while the request goes through the
    framework), for a station this process knows by its token and has not throttled in this
    window: an unknown or refused client never gets an image decoded before it is refused."""
    station = station_kept(environ.get("HTTP_AUTHORIZATION", ""))
    if station is None or station_refused_lately(station.pk):
        return None
    image = multipart_part(body, environ.get("CONTENT_TYPE", ""), "image")
    if image is None or len(image) > settings.CAPTURE_MAX_BYTES:
        return None
    early = environ[EARLY_DECODE] = services.EarlyDecode(image)
    return early.run


class CaptureCollectionApi(APIView):
    """POST: a station sends a capture. GET: captures, newest first, with filters."""

    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        image = serializers.FileField(allow_empty_file=True)
        line = serializers.CharField(max_length=32)
        idempotency_key = serializers.CharField(max_length=64)
        captured_at = serializers.DateTimeField(required=False)
        metadata = MetadataField(required=False)
        edge_decision = EdgeDecisionField(required=False)

    class FilterSerializer(serializers.Serializer):
        line = serializers.CharField(required=False, max_length=32)
        station = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)
        status = serializers.ChoiceField(choices=DecisionStatus.choices, required=False)
        verdict = serializers.ChoiceField(choices=Verdict.choices, required=False)
        received_after = serializers.DateTimeField(required=False)
        received_before = serializers.DateTimeField(required=False)

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAuthenticated(), IsStation()]
        return [IsAuthenticated(), IsStationOrStaff()]

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={
            200: CaptureOutputSerializer,
            201: CaptureOutputSerializer,
            **errors(403, 404, 409, 413, 415, 503),
        },
        description="A capture from a station. `edge_decision`: the verdict the station's edge "
        "model gave while the server could not be reached; it is recorded as an edge decision "
        "(400 for a malformed one, an unknown model version, or a time in the future; 409 for "
        "another edge decision under an idempotency key already used).",
    )
    def post(self, request):
        # Normally refused before the body is read (core/asgi_limits.py); this covers WSGI.
        limit = settings.CAPTURE_MAX_BYTES + settings.CAPTURE_FORM_OVERHEAD_BYTES
        try:
            content_length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            content_length = 0
        if content_length > limit:
            raise ApplicationError(
                f"The request is {content_length} bytes; images may be at most "
                f"{settings.CAPTURE_MAX_BYTES} bytes.",
                code="too_large",
                status=413,
            )
        data = thread_serializer(self.InputSerializer).run_validation(request.data)
        upload = data["image"]
        if upload.size > settings.CAPTURE_MAX_BYTES:
            raise ApplicationError(
                f"The image is {upload.size} bytes; the limit is {settings.CAPTURE_MAX_BYTES}.",
                code="too_large",
                status=413,
            )
        result = services.capture_ingest(
            station=request.auth,
            line_code=data["line"],
            idempotency_key=data["idempotency_key"],
            image_data=upload.read(),
            captured_at=data.get("captured_at"),
            metadata=data.get("metadata"),
            edge_decision=data.get("edge_decision"),
            early=request.META.get(EARLY_DECODE),
        )
        response = capture_answer(
            result.capture, status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )
        if result.timings:
            response["Server-Timing"] = ", ".join(
                f"{name};dur={ms:.2f}" for name, ms in result.timings.items()
            )
        return response

    @extend_schema(
        operation_id="v1_captures_list",
        parameters=[FilterSerializer, *CURSOR_PAGE_PARAMETERS],
        responses={200: cursor_paginated(CaptureOutputSerializer, "PaginatedCaptureList")},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        if is_station(request):
            data["station"] = request.auth.pk
        captures = selectors.capture_list(
            line_ids=None if is_station(request) else line_ids_visible(request.user),
            line=data.get("line"),
            station_id=data.get("station"),
            status=data.get("status"),
            verdict=data.get("verdict"),
            received_after=data.get("received_after"),
            received_before=data.get("received_before"),
        )
        # Newest first, by cursor: no COUNT over millions of rows, no deep OFFSET.
        paginator = KeysetPagination(ordering=("-received_at", "id"))
        page = paginator.paginate_queryset(captures, request, view=self)
        response = paginator.get_paginated_response(CaptureOutputSerializer(page, many=True).data)
        instances_release(page)
        return response


def capture_check_visible(user: Any, line_id: int | None) -> None:
    """404 for a capture on a line this inspector is not assigned to (as if it did not exist:
    its id says nothing then); supervisors and admins see every line."""
    if line_id is None or not line_is_visible(user, line_id):
        raise ApplicationError("No such capture.", code="not_found", status=404)


def capture_check_image_kept(capture) -> None:
    if capture.image_deleted_at is not None:
        raise ApplicationError(
            f"The image was deleted on {capture.image_deleted_at:%Y-%m-%d} by the line's "
            "retention; the capture's record and verdict are kept.",
            code="image_deleted",
            status=410,
        )


def _wait_seconds(request) -> float | None:
    raw = request.GET.get("wait")
    if raw in (None, ""):
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise ApplicationError(
            "wait must be a number of seconds (0 to 60).", code="invalid_wait"
        ) from None
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise ApplicationError("wait must be between 0 and 60 seconds.", code="invalid_wait")
    return seconds


class CaptureDetailApi(APIView):
    """One capture. With `?wait=SECONDS` (<= 60), answers once it is decided or time is up."""

    permission_classes = [IsAuthenticated, IsStationOrStaff]

    @extend_schema(
        parameters=[
            OpenApiParameter("wait", float, description="Seconds to wait for a decision (<= 60)")
        ],
        responses=CaptureOutputSerializer,
    )
    def get(self, request, capture_id):
        _wait_seconds(request)  # validates
        capture = selectors.capture_get(capture_id=capture_id)
        if is_station(request):
            if capture.line_id != request.auth.line_id:
                raise ApplicationError("No such capture.", code="not_found", status=404)
        else:
            capture_check_visible(request.user, capture.line_id)
        return capture_response(capture)


_detail_view = CaptureDetailApi.as_view()


async def _listen_for_decision(capture_id: Any) -> tuple[Any, str | None]:
    """(layer, channel) subscribed to the capture's decision event, or (None, None) when the
    channel layer cannot be reached (Redis down): the caller then re-reads the database."""
    try:
        layer = get_channel_layer()
        channel = await asyncio.wait_for(layer.new_channel(), timeout=WAIT_RECHECK_SECONDS)
        await asyncio.wait_for(
            layer.group_add(events.capture_group(capture_id), channel),
            timeout=WAIT_RECHECK_SECONDS,
        )
    except Exception as exc:  # connection refused, timeouts, a broken layer: never a 500
        logger.warning("long poll without the channel layer (%s); re-reading the database", exc)
        return None, None
    return layer, channel


def _release_connection() -> None:
    # A waiting station must not hold a pooled database connection for its whole wait: with
    # eight stations waiting, the pool ran dry and other requests answered 503. (Inside a
    # transaction, as in tests, the connection stays: closing it would end the transaction.)
    if not connection.in_atomic_block:
        connection.close()


def _decision_status_released(capture_id: Any) -> str | None:
    try:
        return selectors.capture_decision_status(capture_id=capture_id)
    finally:
        _release_connection()


async def _wait_for_decision(capture_id: Any, seconds: float) -> None:
    """Sleep until the capture's decision event arrives (or a re-read finds it decided).

    The database is re-read at least every WAIT_RECHECK_SECONDS, so a station still gets its
    verdict when the channel layer is down or fails while it waits.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    layer, channel = await _listen_for_decision(capture_id)
    try:
        while True:
            decision_status = await sync_to_async(_decision_status_released)(capture_id)
            remaining = deadline - loop.time()
            if decision_status != DecisionStatus.PENDING or remaining <= 0:
                return
            timeout = min(remaining, WAIT_RECHECK_SECONDS)
            if channel is None:
                await asyncio.sleep(timeout)
                continue
            try:
                await asyncio.wait_for(layer.receive(channel), timeout=timeout)
            except TimeoutError:
                pass
            except Exception as exc:  # the layer went away mid-wait: keep re-reading
                logger.warning("channel layer failed during a long poll (%s)", exc)
                channel = None
    finally:
        if channel is not None:
            with contextlib.suppress(Exception):
                await layer.group_discard(events.capture_group(capture_id), channel)
            live_events.channel_forget(layer, channel)  # late messages must not pile up


@csrf_exempt
async def capture_detail(request, capture_id):
    """The long poll without a thread per waiting station: only the two reads use a thread."""
    response = await sync_to_async(_detail_view)(request, capture_id=capture_id)
    if request.method != "GET" or response.status_code != 200:
        return response
    seconds = _wait_seconds(request)
    await sync_to_async(_release_connection)()
    if not seconds or response.data["status"] != DecisionStatus.PENDING:
        return response
    await _wait_for_decision(capture_id, seconds)
    return await sync_to_async(_detail_view)(request, capture_id=capture_id)


# drf-spectacular documents the DRF view behind the async wrapper.
capture_detail.cls = CaptureDetailApi
capture_detail.initkwargs = {}


class CaptureClaimApi(APIView):
    """An inspector takes a pending capture (409 if another inspector has it)."""

    permission_classes = [IsAuthenticated, IsInspector]

    @extend_schema(request=None, responses={200: InspectorCaptureSerializer, **errors(409)})
    def post(self, request, capture_id):
        # Claiming again renews the lease: the page does so while the capture stays open.
        capture_check_visible(request.user, selectors.capture_line_id(capture_id=capture_id))
        services.capture_claim(capture=capture_id, user=request.user)
        return inspector_response(capture_id)


class CaptureVerdictApi(APIView):
    """An inspector's verdict on a pending capture, or the review of a pending audit sample
    (agreeing confirms the model; disagreeing overrides it and the station gets a correction);
    409 when decided, already reviewed, or claimed by another."""

    permission_classes = [IsAuthenticated, IsInspector]

    class InputSerializer(serializers.Serializer):
        verdict = serializers.ChoiceField(choices=Verdict.choices)
        regions = RegionSerializer(many=True, required=False)
        note = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    @extend_schema(request=InputSerializer, responses={200: CaptureOutputSerializer, **errors(409)})
    def post(self, request, capture_id):
        capture_check_visible(request.user, selectors.capture_line_id(capture_id=capture_id))
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.verdict_record(
            capture_id=capture_id, user=request.user, **serializer.validated_data
        )
        return capture_response(selectors.capture_get(capture_id=capture_id))


class CaptureReleaseApi(APIView):
    """The inspector lets go of a capture undecided; it returns to the others' queues."""

    permission_classes = [IsAuthenticated, IsInspector]

    @extend_schema(request=None, responses=InspectorCaptureSerializer)
    def post(self, request, capture_id):
        capture_check_visible(request.user, selectors.capture_line_id(capture_id=capture_id))
        services.capture_release(capture=capture_id, user=request.user)
        return inspector_response(capture_id)


class CaptureUndoApi(APIView):
    """Take back one's own verdict within a few seconds; the station gets a correction."""

    permission_classes = [IsAuthenticated, IsInspector]

    @extend_schema(request=None, responses={200: InspectorCaptureSerializer, **errors(409)})
    def post(self, request, capture_id):
        capture_check_visible(request.user, selectors.capture_line_id(capture_id=capture_id))
        services.verdict_undo(capture=capture_id, user=request.user)
        return inspector_response(capture_id)


class CaptureImageApi(APIView):
    """The captured image as the station sent it."""

    permission_classes = [IsAuthenticated, IsInspector]

    @extend_schema(responses={(200, "image/*"): bytes, **errors(410)})
    def get(self, request, capture_id):
        capture = selectors.capture_get(capture_id=capture_id)
        capture_check_visible(request.user, capture.line_id)
        capture_check_image_kept(capture)
        return blobs.blob_file_response(capture.image, content_type=f"image/{capture.image_format}")


class CaptureHeatmapApi(APIView):
    """The model's heatmap over the image (PNG), where the line's level shows the model."""

    permission_classes = [IsAuthenticated, IsInspector]

    @extend_schema(responses={(200, "image/png"): bytes, **errors(410)})
    def get(self, request, capture_id):
        capture = selectors.capture_get(capture_id=capture_id)
        capture_check_visible(request.user, capture.line_id)
        capture_check_image_kept(capture)
        if InspectorCaptureSerializer().get_model(capture) is None:
            raise ApplicationError(
                "The model's output is hidden for this capture.", code="no_heatmap", status=404
            )
        relative = services.capture_heatmap_png(capture=capture)
        return blobs.blob_file_response(relative, content_type="image/png", what="heatmap")
