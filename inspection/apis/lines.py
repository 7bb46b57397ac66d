"""Lines as stations and pages read them, and the supervisor's audited changes of settings."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_schema import INT_MAX, errors
from core.errors import ApplicationError
from core.models import AutomationLevel, OutagePolicy
from core.permissions import IsStationOrStaff, IsSupervisor, is_station
from core.selectors import line_is_visible, lines_visible
from inspection import selectors, services
from models_registry import serving


class LineOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    automation_level = serializers.CharField()
    pass_threshold = serializers.FloatField()
    fail_threshold = serializers.FloatField()
    audit_percent = serializers.FloatField()
    min_shadow_captures = serializers.IntegerField()
    min_agreement_percent = serializers.FloatField()
    image_retention_days = serializers.IntegerField(allow_null=True)
    outage_policy = serializers.ChoiceField(
        choices=OutagePolicy.choices,
        help_text="What the line's stations do with a phone while the server cannot be reached: "
        "hold it, reject it to rework, or let the edge model decide (unsure: hold).",
    )
    edge_audit_percent = serializers.FloatField(
        help_text="The share of the edge model's outage verdicts (uploaded when the server is "
        "back) that go to the inspectors' audit queue."
    )
    updated_at = serializers.DateTimeField()
    inspectors = serializers.SerializerMethodField()
    deployments = serializers.SerializerMethodField()

    def get_inspectors(self, line) -> list[str]:
        return sorted(user.username for user in line.inspectors.all())

    def get_deployments(self, line) -> list[dict[str, Any]]:
        errors = serving.serving_errors()  # what this web process failed to load
        return [
            {
                "role": d.role,
                "model_version": d.model_version_id,
                "model_name": d.model_version.name,
                "sha256": d.model_version.sha256,
                "canary_percent": d.canary_percent,
                "serving_error": errors.get(d.model_version.sha256),
            }
            for d in line.deployments.all()
        ]


class LineListApi(APIView):
    permission_classes = [IsAuthenticated, IsStationOrStaff]

    @extend_schema(responses=LineOutputSerializer(many=True))
    def get(self, request):
        lines = selectors.line_list()
        if is_station(request):
            lines = lines.filter(pk=request.auth.line_id)
        else:  # inspectors: their assigned lines
            lines = lines_visible(request.user, lines)
        return Response(LineOutputSerializer(lines, many=True).data)


class LineDetailApi(APIView):
    """GET: a line's settings. PATCH (supervisors): change them; every change is audited."""

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=120, required=False)
        automation_level = serializers.ChoiceField(choices=AutomationLevel.choices, required=False)
        pass_threshold = serializers.FloatField(min_value=0, max_value=1, required=False)
        fail_threshold = serializers.FloatField(min_value=0, max_value=1, required=False)
        audit_percent = serializers.FloatField(min_value=0, max_value=100, required=False)
        min_shadow_captures = serializers.IntegerField(
            min_value=0, max_value=INT_MAX, required=False
        )
        min_agreement_percent = serializers.FloatField(min_value=0, max_value=100, required=False)
        image_retention_days = serializers.IntegerField(
            min_value=1,
            max_value=36500,
            allow_null=True,
            required=False,
            help_text="Days capture images are kept (null: for ever); the rows stay.",
        )
        outage_policy = serializers.ChoiceField(
            choices=OutagePolicy.choices,
            required=False,
            help_text="hold (default), reject or edge: what stations do while the server is down.",
        )
        edge_audit_percent = serializers.FloatField(
            min_value=0,
            max_value=100,
            required=False,
            help_text="Percent of the edge model's outage verdicts an inspector reviews.",
        )
        inspectors = serializers.ListField(
            child=serializers.CharField(max_length=150),
            max_length=1000,
            required=False,
            help_text="Usernames of the inspectors assigned to the line (the whole list).",
        )

    def get_permissions(self):
        if self.request.method == "PATCH":
            return [IsAuthenticated(), IsSupervisor()]
        return [IsAuthenticated(), IsStationOrStaff()]

    def _line(self, request, code: str):
        line = selectors.line_list().filter(code=code).first()
        if is_station(request):
            visible = line is not None and line.pk == request.auth.line_id
        else:
            visible = line is not None and line_is_visible(request.user, line.pk)
        if not visible:
            raise ApplicationError(
                f"Unknown production line {code!r}.", code="unknown_line", status=404
            )
        return line

    @extend_schema(responses=LineOutputSerializer)
    def get(self, request, code):
        return Response(LineOutputSerializer(self._line(request, code)).data)

    @extend_schema(request=InputSerializer, responses={200: LineOutputSerializer, **errors(409)})
    def patch(self, request, code):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.line_settings_update(
            line=self._line(request, code), user=request.user, **serializer.validated_data
        )
        return Response(LineOutputSerializer(self._line(request, code)).data)


class LineChangeListApi(APIView):
    """The audit trail of a line's settings, newest first."""

    permission_classes = [IsAuthenticated, IsSupervisor]

    class OutputSerializer(serializers.Serializer):
        changed_at = serializers.DateTimeField()
        changed_by = serializers.CharField(source="changed_by.username", allow_null=True)
        changes = serializers.JSONField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request, code):
        line = selectors.line_get(code=code)
        return Response(self.OutputSerializer(selectors.line_changes(line=line), many=True).data)


# --- The inspector's page talks to these (and so may any other front end) ---
