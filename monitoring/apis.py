"""The monitoring API (v1): a line's signals (the same report as `monitoring_check --json`),
their history, alerts, rules, webhook deliveries, and the supervisor's actions."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors as core_selectors
from core.api_schema import errors
from core.permissions import IsInspector, IsSupervisor
from monitoring import selectors, services
from monitoring.models import Signal
from monitoring.services.alerts import alert_payload
from monitoring.services.rules import FIELDS, SECRET_SHOWN

READERS = [IsAuthenticated, IsInspector]  # inspectors read a line's status; they change nothing
SUPERVISORS = [IsAuthenticated, IsSupervisor]

STATUSES = ["ok", "warning", "drifted", "insufficient_data"]


class SignalSerializer(serializers.Serializer):
    status = serializers.ChoiceField(STATUSES)
    summary = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    band = serializers.ListField(child=serializers.FloatField(allow_null=True), allow_null=True)
    sample_size = serializers.IntegerField()


class AlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    line = serializers.CharField()
    signal = serializers.ChoiceField(Signal.values)
    severity = serializers.ChoiceField(["warning", "drifted"])
    status = serializers.ChoiceField(["open", "closed"])
    opened_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    summary = serializers.CharField()
    url = serializers.CharField()


class ReportSignalsSerializer(serializers.Serializer):
    data_drift = SignalSerializer()
    prediction_drift = SignalSerializer()
    concept_drift = SignalSerializer()
    # `yield` is a Python keyword: declared below.


ReportSignalsSerializer._declared_fields["yield"] = SignalSerializer()


class ReportSerializer(serializers.Serializer):
    line = serializers.CharField()
    automation_level = serializers.CharField()
    evaluated_at = serializers.DateTimeField()
    through = serializers.DateTimeField(allow_null=True)
    model_version = serializers.DictField(allow_null=True)
    reference = serializers.DictField(allow_null=True)
    signals = ReportSignalsSerializer()
    alerts = AlertSerializer(many=True)


class ReportListSerializer(serializers.Serializer):
    lines = serializers.DictField(child=ReportSerializer())


class PointSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    status = serializers.ChoiceField(STATUSES)
    value = serializers.FloatField(allow_null=True)
    band_low = serializers.FloatField(allow_null=True)
    band_high = serializers.FloatField(allow_null=True)
    sample_size = serializers.IntegerField()
    summary = serializers.CharField()


class HistorySerializer(serializers.Serializer):
    signal = serializers.CharField()
    points = PointSerializer(many=True)


class RulesChangeSerializer(serializers.Serializer):
    changed_at = serializers.DateTimeField()
    changed_by = serializers.CharField(allow_null=True)
    changes = serializers.DictField()


class DeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    alert = serializers.IntegerField()
    event = serializers.CharField()
    url = serializers.CharField()
    status = serializers.ChoiceField(["pending", "delivered", "failed"])
    attempts = serializers.IntegerField()
    response_status = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)


class LineReportListApi(APIView):
    """Every line's monitoring report (status and evidence of each signal, open alerts)."""

    permission_classes = READERS

    @extend_schema(operation_id="v1_monitoring_lines_list", responses=ReportListSerializer)
    def get(self, request):
        lines = core_selectors.line_list()
        return Response({"lines": {line.code: services.line_report(line=line) for line in lines}})


class LineReportApi(APIView):
    """One line's report: the same object `monitoring_check --line CODE --json` prints."""

    permission_classes = READERS

    @extend_schema(responses=ReportSerializer)
    def get(self, request, code):
        return Response(services.line_report(line=core_selectors.line_get(code=code)))


class HistoryFilterSerializer(serializers.Serializer):
    signal = serializers.ChoiceField(choices=Signal.choices)
    hours = serializers.IntegerField(min_value=1, max_value=24 * 30, default=24)


class LineHistoryApi(APIView):
    """A signal's evaluations over the last hours: the chart's points, oldest first."""

    permission_classes = READERS

    @extend_schema(parameters=[HistoryFilterSerializer], responses=HistorySerializer)
    def get(self, request, code):
        line = core_selectors.line_get(code=code)
        filters = HistoryFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        since = timezone.now() - timedelta(hours=filters.validated_data["hours"])
        points = selectors.signal_history(
            line=line, signal=filters.validated_data["signal"], since=since
        )
        return Response(
            {
                "signal": filters.validated_data["signal"],
                "points": [
                    {
                        "at": p.evaluated_at.isoformat(),
                        "status": p.status,
                        "value": p.value,
                        "band_low": p.band_low,
                        "band_high": p.band_high,
                        "sample_size": p.sample_size,
                        "summary": p.summary,
                    }
                    for p in points
                ],
            }
        )


class AlertFilterSerializer(serializers.Serializer):
    line = serializers.CharField(required=False)
    status = serializers.ChoiceField(choices=["open", "closed"], required=False)


class AlertListApi(APIView):
    """Alerts, newest first (at most 200)."""

    permission_classes = READERS

    @extend_schema(
        parameters=[AlertFilterSerializer],
        responses={200: AlertSerializer(many=True), **errors(404)},
    )
    def get(self, request):
        filters = AlertFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        line = core_selectors.line_get(code=data["line"]) if data.get("line") else None
        is_open = None if "status" not in data else data["status"] == "open"
        alerts = selectors.alerts(line=line, is_open=is_open)[:200]
        return Response([alert_payload(alert) for alert in alerts])


class RulesSerializer(serializers.Serializer):
    signals = serializers.ListField(child=serializers.ChoiceField(Signal.values), required=False)
    data_window = serializers.IntegerField(required=False)
    decision_window = serializers.IntegerField(required=False)
    decision_reference_size = serializers.IntegerField(required=False)
    trend_window = serializers.IntegerField(required=False)
    reference_size = serializers.IntegerField(required=False)
    open_after = serializers.IntegerField(required=False)
    close_after = serializers.IntegerField(required=False)
    alert_on_warning = serializers.BooleanField(required=False)
    webhook_url = serializers.CharField(required=False, allow_blank=True, max_length=200)
    webhook_secret = serializers.CharField(required=False, allow_blank=True, max_length=200)
    email_recipients = serializers.ListField(child=serializers.CharField(), required=False)


def _rules_body(rules) -> dict:
    body = {name: getattr(rules, name) for name in FIELDS}
    body["webhook_secret"] = SECRET_SHOWN if rules.webhook_secret else ""  # never read back
    return body


class LineRulesApi(APIView):
    """GET a line's alert rules; PATCH changes them (audited; see .../rules/changes)."""

    permission_classes = SUPERVISORS

    @extend_schema(responses=RulesSerializer)
    def get(self, request, code):
        line = core_selectors.line_get(code=code)
        return Response(_rules_body(selectors.line_rules(line=line)))

    @extend_schema(request=RulesSerializer, responses=RulesSerializer)
    def patch(self, request, code):
        line = core_selectors.line_get(code=code)
        data = RulesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rules = services.rules_update(line=line, user=request.user, **data.validated_data)
        return Response(_rules_body(rules))


class LineRulesChangesApi(APIView):
    permission_classes = SUPERVISORS

    @extend_schema(responses=RulesChangeSerializer(many=True))
    def get(self, request, code):
        line = core_selectors.line_get(code=code)
        return Response(
            [
                {
                    "changed_at": c.changed_at.isoformat(),
                    "changed_by": c.changed_by.username if c.changed_by else None,
                    "changes": c.changes,
                }
                for c in selectors.rules_changes(line=line)
            ]
        )


class LineDeliveriesApi(APIView):
    """The webhook delivery log of a line's alerts, newest first."""

    permission_classes = SUPERVISORS

    @extend_schema(responses=DeliverySerializer(many=True))
    def get(self, request, code):
        line = core_selectors.line_get(code=code)
        return Response(
            [
                {
                    "id": d.pk,
                    "alert": d.alert_id,
                    "event": d.event,
                    "url": d.url,
                    "status": d.status,
                    "attempts": d.attempts,
                    "response_status": d.response_status,
                    "last_error": d.last_error,
                    "created_at": d.created_at.isoformat(),
                    "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
                }
                for d in selectors.deliveries(line=line)
            ]
        )


class PinSerializer(serializers.Serializer):
    last = serializers.IntegerField(required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class PinReferenceApi(APIView):
    """ "These captures are normal": the window becomes the line's data reference."""

    permission_classes = SUPERVISORS

    @extend_schema(
        request=PinSerializer,
        responses={
            201: inline_serializer(
                "MonitoringReference",
                {
                    "id": serializers.IntegerField(),
                    "kind": serializers.CharField(),
                    "count": serializers.IntegerField(),
                    "description": serializers.CharField(),
                },
            )
        },
    )
    def post(self, request, code):
        line = core_selectors.line_get(code=code)
        data = PinSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reference = services.reference_pin(line=line, user=request.user, **data.validated_data)
        body = {
            "id": reference.pk,
            "kind": reference.kind,
            "count": reference.count,
            "description": reference.description,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class LabelWindowSerializer(serializers.Serializer):
    last = serializers.IntegerField(required=False, default=200)
    limit = serializers.IntegerField(required=False, default=50)


class LabelWindowApi(APIView):
    """Open the line's recent window as label tasks, the most informative captures first."""

    permission_classes = SUPERVISORS

    @extend_schema(
        request=LabelWindowSerializer,
        responses={
            201: inline_serializer(
                "MonitoringLabelTasks",
                {"tasks": serializers.ListField(child=serializers.IntegerField())},
            )
        },
    )
    def post(self, request, code):
        line = core_selectors.line_get(code=code)
        data = LabelWindowSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tasks = services.window_label_tasks_open(
            line=line, user=request.user, **data.validated_data
        )
        return Response({"tasks": [t.pk for t in tasks]}, status=status.HTTP_201_CREATED)


class RetrainSerializer(serializers.Serializer):
    preset = serializers.CharField(required=False, allow_blank=True, default="")


class RetrainApi(APIView):
    """Start a training run on every reviewed label now."""

    permission_classes = SUPERVISORS

    @extend_schema(
        request=RetrainSerializer,
        responses={
            201: inline_serializer(
                "MonitoringRetrain",
                {"training_run": serializers.IntegerField(), "url": serializers.CharField()},
            ),
            **errors(409),
        },
    )
    def post(self, request, code):
        line = core_selectors.line_get(code=code)
        data = RetrainSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.window_retrain_start(line=line, user=request.user, **data.validated_data)
        return Response(
            {"training_run": run.pk, "url": f"/models/runs/{run.pk}/"},
            status=status.HTTP_201_CREATED,
        )


class LowerLevelApi(APIView):
    """Move the line down one automation level (full -> partial -> assisted -> shadow -> manual)."""

    permission_classes = SUPERVISORS

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "MonitoringLevel",
                {"line": serializers.CharField(), "automation_level": serializers.CharField()},
            ),
            **errors(409),
        },
    )
    def post(self, request, code):
        line = services.line_level_lower(line=core_selectors.line_get(code=code), user=request.user)
        return Response({"line": line.code, "automation_level": line.automation_level})
