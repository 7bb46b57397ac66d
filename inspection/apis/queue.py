"""The inspector's queue on some lines, with the header's figures."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_schema import errors
from core.instances import instances_release
from core.permissions import IsInspector
from core.selectors import line_get_visible
from inspection import selectors, services
from inspection.apis.serializers import InspectorCaptureSerializer


class InspectorQueueApi(APIView):
    """The queue an inspector works through on some lines, with the header's figures.

    The page loads it on (re)connecting its websocket and merges the items by id.
    """

    permission_classes = [IsAuthenticated, IsInspector]

    class FilterSerializer(serializers.Serializer):
        lines = serializers.CharField(help_text="Line codes, comma-separated: L1,L2")

    @extend_schema(
        parameters=[FilterSerializer],
        responses={
            200: inline_serializer(
                "InspectorQueue",
                {
                    "lines": inline_serializer(
                        "InspectorQueueLine",
                        {
                            "code": serializers.CharField(),
                            "name": serializers.CharField(),
                            "automation_level": serializers.CharField(),
                            "queue_depth": serializers.IntegerField(),
                        },
                        many=True,
                    ),
                    "items": InspectorCaptureSerializer(many=True),
                    "me": inline_serializer(
                        "InspectorShift",
                        {
                            "decisions": serializers.IntegerField(),
                            "median_seconds": serializers.FloatField(allow_null=True),
                        },
                    ),
                    "server_time": serializers.DateTimeField(),
                    "claim_lease_seconds": serializers.IntegerField(),
                    "undo_seconds": serializers.IntegerField(),
                },
            ),
            **errors(403, 404),
        },
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        codes = [code for code in filters.validated_data["lines"].split(",") if code]
        lines = [line_get_visible(code=code, user=request.user) for code in codes]
        now = timezone.now()
        captures = list(selectors.inspector_queue(line_codes=codes, user=request.user, now=now))
        depths = selectors.queue_depth(line_codes=codes)
        stats = selectors.inspector_shift_stats(user=request.user, since=selectors.shift_start(now))
        items = InspectorCaptureSerializer(captures, many=True).data
        instances_release(captures)
        return Response(
            {
                "lines": [
                    {
                        "code": line.code,
                        "name": line.name,
                        "automation_level": line.automation_level,
                        "queue_depth": depths[line.code],
                    }
                    for line in lines
                ],
                "items": items,
                "me": {"decisions": stats.decisions, "median_seconds": stats.median_seconds},
                "server_time": now.isoformat(),
                "claim_lease_seconds": selectors.claim_lease_seconds(),
                "undo_seconds": services.UNDO_SECONDS,
            }
        )
