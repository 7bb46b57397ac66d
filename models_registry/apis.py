"""The registry API (/api/v1/models/...): training runs, model versions, evaluations, rollouts
per line and batch predictions. Supervisors write; every view parses, calls one service or
selector, and serializes."""

from django.http import FileResponse, HttpResponseNotModified
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core import blobs
from core import selectors as core_selectors
from core.api_schema import ID_MAX, INT_MAX, errors
from core.errors import ApplicationError
from core.permissions import IsStationOrStaff, IsSupervisor, is_station
from core.roles import SUPERVISING, user_has_role
from labeling.selectors import dataset_version_get
from models_registry import selectors, services
from models_registry.models import (
    BatchPrediction,
    DataSource,
    Deployment,
    Evaluation,
    ModelVersion,
    TrainingRun,
)
from models_registry.services.training import TRAINING_PRESETS

SUPERVISOR = [IsAuthenticated, IsSupervisor]


def _get(model, pk, what: str):
    obj = model.objects.filter(pk=pk).first()
    if obj is None:
        raise ApplicationError(f"No {what} {pk}.", code="not_found", status=404)
    return obj


class TrainingRunSerializer(serializers.ModelSerializer):
    line = serializers.CharField(source="line.code", default=None, allow_null=True)
    model_version = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    percent = serializers.IntegerField()
    finished = serializers.BooleanField()

    class Meta:
        model = TrainingRun
        fields = [
            "id", "name", "status", "progress", "percent", "finished", "epoch", "step",
            "total_steps", "last_loss", "history", "log", "error", "cancel_requested",
            "data_source", "dataset_version", "synthetic_count", "config", "line", "parent",
            "benchmark", "automatic", "model_version", "worker_id", "celery_task_id",
            "heartbeat_at", "created_at", "started_at", "finished_at",
        ]  # fmt: skip


class EvaluationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Evaluation
        fields = [
            "id", "model_version", "benchmark", "benchmark_label", "status", "progress",
            "metrics", "slices", "worst", "error", "items_hash", "created_at", "finished_at",
        ]  # fmt: skip


class ModelVersionSerializer(serializers.ModelSerializer):
    label = serializers.CharField()
    deployments = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id", "name", "version", "label", "status", "sha256", "artifact", "parent",
            "dataset_version", "training_data", "code_version", "metrics", "notes",
            "created_at", "created_by", "deployments",
        ]  # fmt: skip

    def get_deployments(self, version) -> list[dict]:
        return [
            {"line": d.line.code, "role": d.role, "canary_percent": d.canary_percent}
            for d in version.deployments.select_related("line")
        ]


class TrainingRunListApi(APIView):
    """GET: recent training runs. POST (supervisors): start one."""

    permission_classes = SUPERVISOR

    class InputSerializer(serializers.Serializer):
        data_source = serializers.ChoiceField(choices=DataSource.choices)
        dataset_version = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=ID_MAX
        )
        synthetic_count = serializers.IntegerField(
            required=False, default=0, min_value=0, max_value=INT_MAX
        )
        synthetic_seed = serializers.IntegerField(
            required=False, default=0, min_value=0, max_value=INT_MAX
        )
        line = serializers.CharField(required=False, allow_blank=True)
        benchmark = serializers.CharField(required=False, allow_blank=True)
        preset = serializers.ChoiceField(
            choices=list(TRAINING_PRESETS), required=False, allow_blank=True
        )
        config = serializers.JSONField(required=False)
        name = serializers.CharField(required=False, max_length=120)

        def validate_config(self, value):
            if value is not None and not isinstance(value, dict):
                raise serializers.ValidationError("config must be a JSON object.")
            return value

    @extend_schema(responses=TrainingRunSerializer(many=True))
    def get(self, request):
        runs = selectors.training_runs()[:50]
        return Response(TrainingRunSerializer(runs, many=True).data)

    @extend_schema(
        request=InputSerializer, responses={201: TrainingRunSerializer, **errors(404, 409)}
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        line_code = data.pop("line", "")
        dataset_id = data.pop("dataset_version", None)
        dataset = None
        if dataset_id:
            dataset = dataset_version_get(dataset_version_id=dataset_id)
        run = services.training_run_start(
            user=request.user,
            line=core_selectors.line_get(code=line_code) if line_code else None,
            dataset_version=dataset,
            **data,
        )
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)


class TrainingRunDetailApi(APIView):
    permission_classes = SUPERVISOR

    @extend_schema(responses=TrainingRunSerializer)
    def get(self, request, run_id):
        return Response(TrainingRunSerializer(_get(TrainingRun, run_id, "training run")).data)


class TrainingRunCancelApi(APIView):
    permission_classes = SUPERVISOR

    @extend_schema(request=None, responses={200: TrainingRunSerializer, **errors(409)})
    def post(self, request, run_id):
        run = services.training_run_cancel(
            run=_get(TrainingRun, run_id, "training run"), user=request.user
        )
        return Response(TrainingRunSerializer(run).data)


class ModelVersionListApi(APIView):
    permission_classes = SUPERVISOR

    @extend_schema(responses=ModelVersionSerializer(many=True))
    def get(self, request):
        versions = selectors.model_versions()[:100]
        return Response(ModelVersionSerializer(versions, many=True).data)


class ModelVersionDetailApi(APIView):
    permission_classes = SUPERVISOR

    @extend_schema(responses=ModelVersionSerializer)
    def get(self, request, version_id):
        version = _get(ModelVersion, version_id, "model version")
        return Response(ModelVersionSerializer(version).data)


class EvaluationRequestApi(APIView):
    """POST: evaluate a version on a benchmark (and the line's production model beside it)."""

    permission_classes = SUPERVISOR

    class InputSerializer(serializers.Serializer):
        benchmark = serializers.CharField()
        line = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(request=InputSerializer, responses={202: EvaluationSerializer(many=True)})
    def post(self, request, version_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        code = serializer.validated_data.get("line")
        evaluations = services.evaluation_request_with_production(
            model_version=_get(ModelVersion, version_id, "model version"),
            benchmark=serializer.validated_data["benchmark"],
            line=core_selectors.line_get(code=code) if code else None,
            user=request.user,
        )
        return Response(
            EvaluationSerializer(evaluations, many=True).data, status=status.HTTP_202_ACCEPTED
        )


class EvaluationDetailApi(APIView):
    permission_classes = SUPERVISOR

    @extend_schema(responses=EvaluationSerializer)
    def get(self, request, evaluation_id):
        return Response(EvaluationSerializer(_get(Evaluation, evaluation_id, "evaluation")).data)


class DeploymentSerializer(serializers.ModelSerializer):
    line = serializers.CharField(source="line.code")

    class Meta:
        model = Deployment
        fields = [
            "line", "role", "model_version", "canary_percent", "auto_ramp",
            "ramp_interval_minutes", "max_override_percent", "min_decisions", "deployed_at",
        ]  # fmt: skip


class LineDeploymentsSerializer(serializers.Serializer):
    """What every rollout action answers: the line's deployments after it."""

    line = serializers.CharField()
    deployments = DeploymentSerializer(many=True)


class _VersionInput(serializers.Serializer):
    model_version = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class _RolloutApi(APIView):
    permission_classes = SUPERVISOR
    InputSerializer: type[serializers.Serializer] = serializers.Serializer

    def _input(self, request, code):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "model_version" in data:
            data["model_version"] = _get(ModelVersion, data["model_version"], "model version")
        return core_selectors.line_get(code=code), data

    def _answer(self, line):
        deployments = selectors.line_deployments(line=line)
        return Response(
            {"line": line.code, "deployments": DeploymentSerializer(deployments, many=True).data}
        )


class ShadowApi(_RolloutApi):
    """POST: run a version in shadow on the line. DELETE: stop the shadow."""

    InputSerializer = _VersionInput

    @extend_schema(request=_VersionInput, responses={200: LineDeploymentsSerializer, **errors(409)})
    def post(self, request, code):
        line, data = self._input(request, code)
        services.rollout_shadow_start(
            line=line, model_version=data["model_version"], user=request.user
        )
        return self._answer(line)

    @extend_schema(request=None, responses={200: LineDeploymentsSerializer, **errors(409)})
    def delete(self, request, code):
        line = core_selectors.line_get(code=code)
        services.rollout_shadow_stop(line=line, user=request.user)
        return self._answer(line)


class CanaryInput(_VersionInput):
    percent = serializers.FloatField(required=False, default=5.0)
    auto_ramp = serializers.BooleanField(required=False, default=False)
    ramp_interval_minutes = serializers.IntegerField(
        required=False, default=60, min_value=1, max_value=INT_MAX
    )
    max_override_percent = serializers.FloatField(required=False, default=10.0)
    min_decisions = serializers.IntegerField(
        required=False, default=20, min_value=1, max_value=INT_MAX
    )


class CanaryApi(_RolloutApi):
    """POST: start a canary (the gate must hold). DELETE: roll the canary back."""

    InputSerializer = CanaryInput

    @extend_schema(request=CanaryInput, responses={200: LineDeploymentsSerializer, **errors(409)})
    def post(self, request, code):
        line, data = self._input(request, code)
        data.pop("reason", None)
        services.rollout_canary_start(line=line, user=request.user, **data)
        return self._answer(line)

    @extend_schema(request=None, responses={200: LineDeploymentsSerializer, **errors(409)})
    def delete(self, request, code):
        line = core_selectors.line_get(code=code)
        reason = request.data.get("reason", "") if isinstance(request.data, dict) else ""
        services.rollout_canary_rollback(line=line, user=request.user, reason=str(reason or ""))
        return self._answer(line)


class CanaryRampApi(_RolloutApi):
    """POST: the canary's next step (5 -> 25 -> 50 -> 100), or `percent`."""

    class InputSerializer(serializers.Serializer):
        percent = serializers.FloatField(required=False, allow_null=True, default=None)

    @extend_schema(
        request=InputSerializer, responses={200: LineDeploymentsSerializer, **errors(409)}
    )
    def post(self, request, code):
        line, data = self._input(request, code)
        services.rollout_canary_ramp(line=line, user=request.user, percent=data["percent"])
        return self._answer(line)


class PromoteApi(_RolloutApi):
    InputSerializer = _VersionInput

    @extend_schema(request=_VersionInput, responses={200: LineDeploymentsSerializer, **errors(409)})
    def post(self, request, code):
        line, data = self._input(request, code)
        services.rollout_promote(
            line=line, model_version=data["model_version"], user=request.user, reason=data["reason"]
        )
        return self._answer(line)


class RollbackApi(_RolloutApi):
    """POST: production goes back to the version it replaced."""

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(
        request=InputSerializer, responses={200: LineDeploymentsSerializer, **errors(409)}
    )
    def post(self, request, code):
        line, data = self._input(request, code)
        services.rollout_rollback(line=line, user=request.user, reason=data["reason"])
        return self._answer(line)


class GateApi(APIView):
    """GET ?model_version=ID: may it decide on this line, and why (not)."""

    permission_classes = SUPERVISOR

    class FilterSerializer(serializers.Serializer):
        model_version = serializers.IntegerField(min_value=1, max_value=ID_MAX)

    @extend_schema(
        parameters=[FilterSerializer],
        responses=inline_serializer(
            "PromotionGate",
            {
                "ok": serializers.BooleanField(),
                "reason": serializers.CharField(),
                "benchmark": serializers.CharField(),
            },
        ),
    )
    def get(self, request, code):
        line = core_selectors.line_get(code=code)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        version = _get(ModelVersion, filters.validated_data["model_version"], "model version")
        gate = selectors.promotion_gate(model_version=version, line=line)
        return Response({"ok": gate.ok, "reason": gate.reason, "benchmark": gate.benchmark})


class BatchPredictionSerializer(serializers.ModelSerializer):
    line = serializers.CharField(source="line.code", default=None, allow_null=True)
    percent = serializers.IntegerField()

    class Meta:
        model = BatchPrediction
        fields = [
            "id", "model_version", "line", "received_after", "received_before", "status",
            "progress", "percent", "total", "done", "summary", "error", "created_at",
            "finished_at",
        ]  # fmt: skip


class BatchPredictionListApi(APIView):
    """GET: recent batch predictions. POST: re-score a date range with a version."""

    permission_classes = SUPERVISOR

    class InputSerializer(serializers.Serializer):
        model_version = serializers.IntegerField(min_value=1, max_value=ID_MAX)
        received_after = serializers.DateTimeField()
        received_before = serializers.DateTimeField()
        line = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(responses=BatchPredictionSerializer(many=True))
    def get(self, request):
        batches = selectors.batch_predictions()[:50]
        return Response(BatchPredictionSerializer(batches, many=True).data)

    @extend_schema(
        request=InputSerializer, responses={201: BatchPredictionSerializer, **errors(404)}
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        batch = services.batch_prediction_start(
            model_version=_get(ModelVersion, data["model_version"], "model version"),
            received_after=data["received_after"],
            received_before=data["received_before"],
            line=core_selectors.line_get(code=data["line"]) if data.get("line") else None,
            user=request.user,
        )
        return Response(BatchPredictionSerializer(batch).data, status=status.HTTP_201_CREATED)


class BatchPredictionDetailApi(APIView):
    permission_classes = SUPERVISOR

    @extend_schema(responses=BatchPredictionSerializer)
    def get(self, request, batch_id):
        return Response(
            BatchPredictionSerializer(_get(BatchPrediction, batch_id, "batch prediction")).data
        )


class LineEdgeModelApi(APIView):
    """`GET /api/v1/lines/{code}/model`: the line's production model as ONNX, for a station to
    run when the server cannot be reached (input `images`: float32 RGB 0..255, NCHW, H and W
    multiples of 8; outputs `heatmap` and `score`). `If-None-Match` with the current ETag
    answers 304; 404 without a production model; 503 while its export is being made."""

    permission_classes = [IsAuthenticated, IsStationOrStaff]

    @extend_schema(
        operation_id="v1_lines_model_retrieve",
        parameters=[OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER)],
        responses={
            (200, "application/octet-stream"): bytes,
            304: OpenApiResponse(description="Not modified: the station has this model."),
            **errors(404, 503),
        },
    )
    def get(self, request, code):
        line = core_selectors.line_get(code=code)
        if is_station(request):
            if line.pk != request.auth.line_id:
                raise ApplicationError(
                    f"Unknown production line {code!r}.", code="unknown_line", status=404
                )
        elif not user_has_role(request.user, *SUPERVISING):
            raise ApplicationError(
                "The edge model is for stations and supervisors.", code="forbidden", status=403
            )
        version, state = services.line_edge_model(line=line)
        etag = f'"{state["sha256"]}"'
        headers = {
            "ETag": etag,
            "X-Model-Version": str(version.pk),
            "X-Model-Sha256": state["sha256"],
            "Cache-Control": "private, no-cache",  # revalidate: the line's model may change
        }
        wanted = {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}
        if etag in wanted or f"W/{etag}" in wanted or "*" in wanted:
            return HttpResponseNotModified(headers=headers)
        stream = blobs.blob_open(state["artifact"], store=blobs.MODELS)
        response = FileResponse(
            stream,
            content_type="application/octet-stream",
            as_attachment=True,
            filename=f"{line.code}-model-{version.pk}.onnx",
        )
        for name, value in headers.items():
            response[name] = value
        return response
