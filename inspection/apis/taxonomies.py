"""Defect taxonomies: anyone with a role reads them; supervisors add and change taxonomies and
their defect types (every change audited); a type in use is deactivated, not deleted (409)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors as core_selectors
from core.api_schema import errors
from core.models import DefectSeverity
from core.permissions import IsStationOrStaff, IsSupervisor
from inspection import services


class DefectTypeOutputSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Stable: what regions and datasets carry.")
    label = serializers.CharField(help_text="What pages show.")
    colour = serializers.CharField(help_text="#rrggbb")
    hotkey = serializers.CharField(help_text="The annotation page's key for it ('' for none).")
    severity = serializers.ChoiceField(
        choices=DefectSeverity.choices,
        help_text="fail: the phone fails; minor: recorded, the phone still passes.",
    )
    order = serializers.IntegerField()
    is_active = serializers.BooleanField(help_text="Inactive: kept for old data, not offered.")
    updated_at = serializers.DateTimeField()


class TaxonomyOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    is_default = serializers.BooleanField()
    lines = serializers.SerializerMethodField(help_text="Codes of the lines that use it.")
    defect_types = DefectTypeOutputSerializer(many=True)

    def get_lines(self, taxonomy) -> list[str]:
        return core_selectors.taxonomy_line_codes(taxonomy=taxonomy)


def _taxonomy_response(name: str, *, status_code: int = status.HTTP_200_OK) -> Response:
    taxonomy = core_selectors.taxonomy_list().get(pk=core_selectors.taxonomy_get(name=name).pk)
    return Response(TaxonomyOutputSerializer(taxonomy).data, status=status_code)


class TaxonomyCollectionApi(APIView):
    """GET: every taxonomy with its types. POST (supervisors): a new taxonomy."""

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=32, help_text="lower-case letters, digits, - _")
        label = serializers.CharField(max_length=120, required=False, allow_blank=True)
        lines = serializers.ListField(
            child=serializers.CharField(max_length=32),
            max_length=1000,
            required=False,
            help_text="Codes of the lines that use it (instead of the default taxonomy).",
        )

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAuthenticated(), IsSupervisor()]
        return [IsAuthenticated(), IsStationOrStaff()]

    @extend_schema(responses=TaxonomyOutputSerializer(many=True))
    def get(self, request):
        taxonomies = core_selectors.taxonomy_list()
        return Response(TaxonomyOutputSerializer(taxonomies, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: TaxonomyOutputSerializer})
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        taxonomy = services.taxonomy_create(user=request.user, **serializer.validated_data)
        return _taxonomy_response(taxonomy.name, status_code=status.HTTP_201_CREATED)


class TaxonomyDetailApi(APIView):
    """GET: one taxonomy. PATCH (supervisors): its label, and the lines that use it."""

    class InputSerializer(serializers.Serializer):
        label = serializers.CharField(max_length=120, required=False)
        lines = serializers.ListField(
            child=serializers.CharField(max_length=32),
            max_length=1000,
            required=False,
            help_text="The whole list; lines taken off it use the default taxonomy again.",
        )

    def get_permissions(self):
        if self.request.method == "PATCH":
            return [IsAuthenticated(), IsSupervisor()]
        return [IsAuthenticated(), IsStationOrStaff()]

    @extend_schema(responses=TaxonomyOutputSerializer)
    def get(self, request, name):
        return _taxonomy_response(name)

    @extend_schema(request=InputSerializer, responses=TaxonomyOutputSerializer)
    def patch(self, request, name):
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.taxonomy_update(
            taxonomy=core_selectors.taxonomy_get(name=name),
            user=request.user,
            **serializer.validated_data,
        )
        return _taxonomy_response(name)


class _DefectTypeFields(serializers.Serializer):
    label = serializers.CharField(max_length=60, required=False)
    colour = serializers.CharField(max_length=7, required=False, help_text="#rrggbb")
    hotkey = serializers.CharField(
        max_length=1,
        required=False,
        allow_blank=True,
        help_text="One letter or digit, unique among the taxonomy's active types; not one of the "
        "annotation page's own keys (a b d e j k m n o p r s v x 0).",
    )
    severity = serializers.ChoiceField(choices=DefectSeverity.choices, required=False)
    order = serializers.IntegerField(min_value=0, max_value=32767, required=False)


class DefectTypeCollectionApi(APIView):
    """GET: a taxonomy's types, inactive ones too. POST (supervisors): a new type."""

    class InputSerializer(_DefectTypeFields):
        name = serializers.CharField(
            max_length=32, help_text="Stable, what data carries: lower-case letters, digits, - _"
        )

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAuthenticated(), IsSupervisor()]
        return [IsAuthenticated(), IsStationOrStaff()]

    @extend_schema(responses=DefectTypeOutputSerializer(many=True))
    def get(self, request, name):
        types = core_selectors.defect_types_of(taxonomy=core_selectors.taxonomy_get(name=name))
        return Response(DefectTypeOutputSerializer(types, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: DefectTypeOutputSerializer})
    def post(self, request, name):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        defect_type = services.defect_type_create(
            taxonomy=core_selectors.taxonomy_get(name=name),
            user=request.user,
            **serializer.validated_data,
        )
        return Response(DefectTypeOutputSerializer(defect_type).data, status=201)


class DefectTypeDetailApi(APIView):
    """GET: one type. PATCH (supervisors): change or (de)activate it; its name stays.
    DELETE (supervisors): only a type nothing carries yet; 409 for one in use."""

    class InputSerializer(_DefectTypeFields):
        is_active = serializers.BooleanField(
            required=False, help_text="false: not offered any more; data keeps it."
        )

    def get_permissions(self):
        if self.request.method in ("PATCH", "DELETE"):
            return [IsAuthenticated(), IsSupervisor()]
        return [IsAuthenticated(), IsStationOrStaff()]

    def _defect_type(self, name: str, type_name: str):
        taxonomy = core_selectors.taxonomy_get(name=name)
        return core_selectors.defect_type_get(taxonomy=taxonomy, name=type_name)

    @extend_schema(responses=DefectTypeOutputSerializer)
    def get(self, request, name, type_name):
        return Response(DefectTypeOutputSerializer(self._defect_type(name, type_name)).data)

    @extend_schema(request=InputSerializer, responses=DefectTypeOutputSerializer)
    def patch(self, request, name, type_name):
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        defect_type = services.defect_type_update(
            defect_type=self._defect_type(name, type_name),
            user=request.user,
            **serializer.validated_data,
        )
        return Response(DefectTypeOutputSerializer(defect_type).data)

    @extend_schema(responses={204: None, **errors(409)})
    def delete(self, request, name, type_name):
        services.defect_type_delete(
            defect_type=self._defect_type(name, type_name), user=request.user
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class TaxonomyChangeListApi(APIView):
    """The audit trail of a taxonomy and its types, newest first."""

    permission_classes = [IsAuthenticated, IsSupervisor]

    class OutputSerializer(serializers.Serializer):
        changed_at = serializers.DateTimeField()
        changed_by = serializers.CharField(source="changed_by.username", allow_null=True)
        action = serializers.CharField()
        defect_type = serializers.CharField()
        changes = serializers.JSONField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request, name):
        changes = core_selectors.taxonomy_changes(taxonomy=core_selectors.taxonomy_get(name=name))
        return Response(self.OutputSerializer(changes, many=True).data)
