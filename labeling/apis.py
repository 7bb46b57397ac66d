"""The labeling API (v1): tasks, annotations (autosave, submit), review, labeler statistics,
dataset versions (create, import an archive, export as COCO). Parse, call one service or
selector, serialize."""

import asyncio
import mimetypes
import os

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_schema import INT_MAX, errors
from core.blobs import blob_file_response
from core.errors import ApplicationError
from core.permissions import IsLabeler, IsSupervisor
from core.roles import SUPERVISING, user_has_role
from labeling import queue, selectors, services
from labeling.models import (
    Annotation,
    DatasetImport,
    DatasetVersion,
    LabelTask,
    LabelTaskSource,
)
from labeling.services import imports


class TaskSerializer(serializers.ModelSerializer):
    line = serializers.CharField(source="line.code", default=None, allow_null=True)
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = LabelTask
        fields = [
            "id",
            "capture",
            "line",
            "source",
            "source_detail",
            "status",
            "width",
            "height",
            "group",
            "pre_verdict",
            "pre_annotation",
            "model_regions",
            "model_score",
            "priority",
            "required_annotations",
            "agreement",
            "accepted_annotation",
            "reviewed_at",
            "created_at",
            "image_url",
        ]

    def get_image_url(self, task) -> str:
        return f"/api/v1/label-tasks/{task.pk}/image"


class AnnotationSerializer(serializers.ModelSerializer):
    task = TaskSerializer()
    labeler = serializers.CharField(source="labeler.username")
    reviewed_by = serializers.CharField(
        source="reviewed_by.username", default=None, allow_null=True
    )

    class Meta:
        model = Annotation
        fields = [
            "id",
            "task",
            "labeler",
            "status",
            "label",
            "regions",
            "revision",
            "lease_expires_at",
            "started_at",
            "updated_at",
            "submitted_at",
            "reviewed_by",
            "reviewed_at",
            "review_note",
            "rework_count",
        ]


def _annotation_response(annotation_id, code=status.HTTP_200_OK) -> Response:
    annotation = selectors.annotation_get(annotation_id=annotation_id)
    return Response(AnnotationSerializer(annotation).data, status=code)


class QueueFilterSerializer(serializers.Serializer):
    line = serializers.CharField(required=False, allow_blank=True)
    source = serializers.ChoiceField(
        choices=LabelTaskSource.choices, required=False, allow_blank=True
    )
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class TaskListApi(APIView):
    """Open tasks in queue order (disagreements and uncertain scores first)."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(parameters=[QueueFilterSerializer], responses=TaskSerializer(many=True))
    def get(self, request):
        filters = QueueFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        tasks = queue.task_queue(**filters.validated_data).select_related("line")[:200]
        return Response(TaskSerializer(tasks, many=True).data)


class TaskNextApi(APIView):
    """Take the next task (or get one's unfinished or sent-back work again): 204 when none."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(request=QueueFilterSerializer, responses={200: AnnotationSerializer, 204: None})
    def post(self, request):
        filters = QueueFilterSerializer(data=request.data)
        filters.is_valid(raise_exception=True)
        data = {k: v for k, v in filters.validated_data.items() if v not in ("", None)}
        annotation = services.task_next(user=request.user, **data)
        if annotation is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return _annotation_response(annotation.pk)


class TaskDetailApi(APIView):
    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(responses=TaskSerializer)
    def get(self, request, task_id):
        return Response(TaskSerializer(selectors.task_get(task_id=task_id)).data)


class TaskImageApi(APIView):
    """The task's image as stored."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(responses={(200, "image/*"): bytes})
    def get(self, request, task_id):
        task = selectors.task_get(task_id=task_id)
        content_type = mimetypes.guess_type(task.image or "")[0] or "application/octet-stream"
        return blob_file_response(task.image, content_type=content_type)


class AnnotationInputSerializer(serializers.Serializer):
    label = serializers.ChoiceField(choices=["", "ok", "defect"], required=False)
    regions = serializers.JSONField(required=False)
    revision = serializers.IntegerField(required=False, min_value=0, max_value=INT_MAX)


class AnnotationDetailApi(APIView):
    """GET one annotation; PUT autosaves (label, regions) and renews the lease; a stale
    `revision` answers 409 stale_revision."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(responses=AnnotationSerializer)
    def get(self, request, annotation_id):
        annotation = selectors.annotation_get(annotation_id=annotation_id)
        # Blind labeling: a labeler never reads another's annotation (of a two-labeler task
        # before both submitted, or ever); reviewers (supervisors, admins) read them all.
        if annotation.labeler_id != request.user.pk and not user_has_role(
            request.user, *SUPERVISING
        ):
            raise ApplicationError("No such annotation.", code="not_found", status=404)
        return Response(AnnotationSerializer(annotation).data)

    @extend_schema(
        request=AnnotationInputSerializer, responses={200: AnnotationSerializer, **errors(409)}
    )
    def put(self, request, annotation_id):
        data = AnnotationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.annotation_save(
            annotation_id=annotation_id, user=request.user, **data.validated_data
        )
        return _annotation_response(annotation_id)


class AnnotationSubmitApi(APIView):
    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(
        request=AnnotationInputSerializer, responses={200: AnnotationSerializer, **errors(409)}
    )
    def post(self, request, annotation_id):
        data = AnnotationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.annotation_submit(
            annotation_id=annotation_id, user=request.user, **data.validated_data
        )
        return _annotation_response(annotation_id)


class AnnotationReleaseApi(APIView):
    """Skip: give the task back."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(request=None, responses={204: None, **errors(409)})
    def post(self, request, annotation_id):
        services.annotation_release(annotation_id=annotation_id, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReviewListApi(APIView):
    """Submitted annotations waiting for review (conflicts of two labelers first)."""

    permission_classes = [IsAuthenticated, IsSupervisor]

    @extend_schema(responses=AnnotationSerializer(many=True))
    def get(self, request):
        annotations = selectors.review_queue(reviewer=request.user)[:100]
        return Response(AnnotationSerializer(annotations, many=True).data)


class ReviewInputSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="")
    label = serializers.ChoiceField(choices=["ok", "defect"], required=False)
    regions = serializers.JSONField(required=False)


class ReviewAcceptApi(APIView):
    permission_classes = [IsAuthenticated, IsSupervisor]

    @extend_schema(
        request=ReviewInputSerializer, responses={200: AnnotationSerializer, **errors(409)}
    )
    def post(self, request, annotation_id):
        data = ReviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.review_accept(
            annotation_id=annotation_id, reviewer=request.user, **data.validated_data
        )
        return _annotation_response(annotation_id)


class ReviewSendBackApi(APIView):
    permission_classes = [IsAuthenticated, IsSupervisor]

    @extend_schema(
        request=ReviewInputSerializer, responses={200: AnnotationSerializer, **errors(409)}
    )
    def post(self, request, annotation_id):
        data = ReviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.review_send_back(
            annotation_id=annotation_id, reviewer=request.user, note=data.validated_data["note"]
        )
        return _annotation_response(annotation_id)


class LabelerStatsSerializer(serializers.Serializer):
    labeler = serializers.CharField()
    submitted = serializers.IntegerField()
    accepted = serializers.IntegerField()
    sent_back = serializers.IntegerField()
    rework_rate = serializers.FloatField()
    median_seconds = serializers.FloatField(allow_null=True)
    per_hour = serializers.FloatField(allow_null=True)
    agreement_rate = serializers.FloatField(allow_null=True)
    mean_region_iou = serializers.FloatField(allow_null=True)


class LabelerStatsApi(APIView):
    """Per labeler: throughput, agreement with a second labeler, rework."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(responses=LabelerStatsSerializer(many=True))
    def get(self, request):
        return Response(LabelerStatsSerializer(selectors.labeler_stats(), many=True).data)


class DatasetVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "name",
            "created_at",
            "created_by",
            "description",
            "content_hash",
            "split_fractions",
            "seed",
            "counts",
            "import_errors",
        ]


class DatasetCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    line = serializers.CharField(required=False, allow_blank=True)
    sources = serializers.ListField(
        child=serializers.ChoiceField(choices=LabelTaskSource.choices), required=False
    )
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    split_fractions = serializers.ListField(
        child=serializers.FloatField(), min_length=3, max_length=3, required=False
    )
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=INT_MAX)


class DatasetListApi(APIView):
    """GET the versions; POST freezes the reviewed labels matching the filters into a new one."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(responses=DatasetVersionSerializer(many=True))
    def get(self, request):
        versions = selectors.dataset_version_list(limit=200)
        return Response(DatasetVersionSerializer(versions, many=True).data)

    @extend_schema(
        request=DatasetCreateSerializer,
        responses={201: DatasetVersionSerializer, **errors(409)},
    )
    def post(self, request):
        if not user_has_role(request.user, *SUPERVISING):
            raise ApplicationError(
                "Creating a dataset version needs a supervisor.", code="forbidden", status=403
            )
        data = DatasetCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = {k: v for k, v in data.validated_data.items() if v not in ("", None)}
        version = services.dataset_version_create(created_by=request.user, **values)
        return Response(DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(APIView):
    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(responses=DatasetVersionSerializer)
    def get(self, request, dataset_id):
        version = selectors.dataset_version_get(dataset_version_id=dataset_id)
        return Response(DatasetVersionSerializer(version).data)


class DatasetCocoApi(APIView):
    """The version as COCO JSON (boxes, polygons; image label, split, group, mask per image)."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(
        parameters=[OpenApiParameter("download", bool, required=False)],
        responses={(200, "application/json"): dict},
    )
    def get(self, request, dataset_id):
        version = selectors.dataset_version_get(dataset_version_id=dataset_id)
        response = Response(services.dataset_version_coco(dataset_version=version))
        if request.query_params.get("download"):
            # Any name a supervisor typed makes a valid header (quoted, or RFC 5987 encoded).
            response["Content-Disposition"] = content_disposition_header(
                True, f"{version.name}.coco.json"
            )
        return response


async def _chunks(stream, size: int = 1 << 20):
    """The file in pieces, each read in a thread: under ASGI Django would read a synchronous
    iterator whole into memory before sending any of it."""
    try:
        while chunk := await asyncio.to_thread(stream.read, size):
            yield chunk
    finally:
        stream.close()


def _download(request, stream, *, content_type: str, filename: str):
    """An open file as an attachment, streamed without holding it in memory (ASGI or not)."""
    if isinstance(request._request, ASGIRequest):
        response = StreamingHttpResponse(_chunks(stream), content_type=content_type)
        response["Content-Length"] = str(os.fstat(stream.fileno()).st_size)
    else:
        response = FileResponse(stream, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


class DatasetZipApi(APIView):
    """The version as a zip in the shared/datasets layout: images/, masks/ (one PNG per defect
    image, nonzero where the defect is), manifest.csv (file,label,defect_type,mask_file,group,
    split) and regions.json (every region by file). POST /datasets/imports takes it back."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request, dataset_id):
        version = selectors.dataset_version_get(dataset_version_id=dataset_id)
        archive = services.dataset_version_zip(dataset_version=version)
        return _download(
            request, archive, content_type="application/zip", filename=f"{version.name}.zip"
        )


class DatasetImportSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)

    class Meta:
        model = DatasetImport
        fields = [
            "id",
            "name",
            "status",
            "dataset_version",
            "errors",
            "error",
            "progress",
            "counts",
            "archive_name",
            "archive_size",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]


class DatasetImportCollectionApi(APIView):
    """POST a zip (a manifest CSV with its images and masks, or a COCO JSON with its images):
    202 with the queued import; GET the recent imports."""

    permission_classes = [IsAuthenticated, IsLabeler]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        archive = serializers.FileField()
        name = serializers.CharField(max_length=120)

    def initial(self, request, *args, **kwargs):
        # Refused before the body is read (authentication reads the form for its CSRF check);
        # under ASGI core/asgi_limits.py answers even earlier.
        if request.method == "POST":
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.IMPORT_MAX_BYTES:
                raise ApplicationError(
                    f"The request is {length} bytes; imports may be at most "
                    f"{settings.IMPORT_MAX_BYTES} bytes.",
                    code="too_large",
                    status=413,
                )
        super().initial(request, *args, **kwargs)

    @extend_schema(responses=DatasetImportSerializer(many=True))
    def get(self, request):
        jobs = selectors.dataset_import_list(limit=50)
        return Response(DatasetImportSerializer(jobs, many=True).data)

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={202: DatasetImportSerializer, **errors(409, 413, 415)},
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["archive"]
        job = imports.dataset_import_create(
            name=data.validated_data["name"],
            archive=upload,
            archive_name=upload.name,
            size=upload.size,
            created_by=request.user,
        )
        job = selectors.dataset_import_get(import_id=job.pk)
        return Response(DatasetImportSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class DatasetImportDetailApi(APIView):
    """One import as it progresses: status, progress 0..1, counts, the refused files."""

    permission_classes = [IsAuthenticated, IsLabeler]

    @extend_schema(responses=DatasetImportSerializer)
    def get(self, request, import_id):
        job = selectors.dataset_import_get(import_id=import_id)
        return Response(DatasetImportSerializer(job).data)
