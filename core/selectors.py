"""Reads of lines and defect taxonomies that every app needs (the capture flow's reads live in
inspection.selectors)."""

from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from core.errors import ApplicationError
from core.models import DefectType, ProductionLine, Taxonomy, TaxonomyChange
from core.roles import SUPERVISING, Role, user_has_role


def line_get(*, code: str) -> ProductionLine:
    line = ProductionLine.objects.filter(code=code).first()
    if line is None:
        raise ApplicationError(
            f"Unknown production line {code!r}.", code="unknown_line", status=404
        )
    return line


def line_list() -> QuerySet[ProductionLine]:
    return ProductionLine.objects.all()


# --- Which lines a user may see: inspectors their assigned lines, supervisors and admins all ---


def user_sees_all_lines(user: Any) -> bool:
    return user_has_role(user, *SUPERVISING)


def line_ids_visible(user: Any) -> set[int] | None:
    """The ids of the lines this user may see, or None for every line."""
    if user_sees_all_lines(user):
        return None
    if getattr(user, "pk", None) is None:
        return set()
    assignments = ProductionLine.inspectors.through.objects.filter(user_id=user.pk)
    return set(assignments.values_list("productionline_id", flat=True))


def line_is_visible(user: Any, line_id: int) -> bool:
    visible = line_ids_visible(user)
    return visible is None or line_id in visible


def lines_visible(user: Any, lines: QuerySet[ProductionLine] | None = None) -> QuerySet:
    lines = ProductionLine.objects.all() if lines is None else lines
    visible = line_ids_visible(user)
    return lines if visible is None else lines.filter(pk__in=visible)


def line_get_visible(*, code: str, user: Any) -> ProductionLine:
    """The line, or 403 when it is not one of this inspector's lines (404 when unknown)."""
    line = line_get(code=code)
    if not line_is_visible(user, line.pk):
        raise ApplicationError(
            f"Line {code} is not assigned to you; a supervisor can assign it.",
            code="line_not_assigned",
            status=403,
        )
    return line


def inspector_users() -> QuerySet:
    """Active accounts with the inspector role, for assigning to lines."""
    return (
        User.objects.filter(is_active=True, groups__name=Role.INSPECTOR)
        .distinct()
        .order_by("username")
    )


# --- Defect taxonomies: the types a line's people label, how pages show them ---


# The default taxonomy as migration core/0006 made it: the four types the pages knew before.
DEFAULT_TAXONOMY = "default"
DEFAULT_DEFECT_TYPES = (
    # name, label, colour, hotkey
    ("scratch", "Scratch", "#ffcc00", "1"),
    ("crack", "Crack", "#ff3b30", "2"),
    ("stain", "Stain", "#bf5af2", "3"),
    ("other", "Other", "#8e8e93", "4"),
)


def taxonomy_default() -> Taxonomy:
    """The taxonomy of every line without one of its own.

    The migration makes it; a database emptied since (`manage.py flush`, a test that truncates
    its tables) gets it back here, as the migration made it, rather than pages that break.
    """
    taxonomy = Taxonomy.objects.filter(is_default=True).first()
    if taxonomy is not None:
        return taxonomy
    try:
        with transaction.atomic():
            taxonomy, created = Taxonomy.objects.get_or_create(
                name=DEFAULT_TAXONOMY, defaults={"label": "Default", "is_default": True}
            )
            if created:
                DefectType.objects.bulk_create(
                    DefectType(
                        taxonomy=taxonomy,
                        name=name,
                        label=label,
                        colour=colour,
                        hotkey=key,
                        order=order,
                    )
                    for order, (name, label, colour, key) in enumerate(DEFAULT_DEFECT_TYPES)
                )
    except IntegrityError:  # another process made it at the same moment
        taxonomy = Taxonomy.objects.get(is_default=True)
    return taxonomy


def taxonomy_get(*, name: str) -> Taxonomy:
    taxonomy_default()  # there is one, whatever happened to the database
    taxonomy = Taxonomy.objects.filter(name=name).first()
    if taxonomy is None:
        raise ApplicationError(
            f"Unknown defect taxonomy {name!r}.", code="unknown_taxonomy", status=404
        )
    return taxonomy


def taxonomy_list() -> QuerySet[Taxonomy]:
    taxonomy_default()
    return Taxonomy.objects.prefetch_related("defect_types", "lines")


def taxonomy_line_codes(*, taxonomy: Taxonomy) -> list[str]:
    """The lines that use it (for the default one: every line without a taxonomy of its own)."""
    if taxonomy.is_default:
        lines = ProductionLine.objects.filter(taxonomy__isnull=True)
        return list(lines.order_by("code").values_list("code", flat=True))
    return sorted(line.code for line in taxonomy.lines.all())


def taxonomy_for_line(line: ProductionLine | None) -> Taxonomy:
    """The line's own taxonomy, else the default one (also for imports, which have no line)."""
    if line is not None and line.taxonomy_id is not None:
        return line.taxonomy
    return taxonomy_default()


def defect_types_of(*, taxonomy: Taxonomy, active_only: bool = False) -> QuerySet[DefectType]:
    types = DefectType.objects.filter(taxonomy=taxonomy)
    return types.filter(is_active=True) if active_only else types


def defect_type_get(*, taxonomy: Taxonomy, name: str) -> DefectType:
    defect_type = DefectType.objects.filter(taxonomy=taxonomy, name=name).first()
    if defect_type is None:
        raise ApplicationError(
            f"Taxonomy {taxonomy.name} has no defect type {name!r}.",
            code="unknown_defect_type",
            status=404,
        )
    return defect_type


def defect_type_names_active(*, line: ProductionLine | None = None) -> list[str]:
    """The names a new region on this line may carry, in the taxonomy's order."""
    types = defect_types_of(taxonomy=taxonomy_for_line(line), active_only=True)
    return list(types.values_list("name", flat=True))


def defect_type_dict(defect_type: DefectType) -> dict[str, Any]:
    """What pages need of a type (the annotation page's list, hotkeys and colours)."""
    return {
        "name": defect_type.name,
        "label": defect_type.label,
        "colour": defect_type.colour,
        "hotkey": defect_type.hotkey,
        "severity": defect_type.severity,
        "active": defect_type.is_active,
    }


def defect_type_catalogue(*, taxonomy: Taxonomy, active_only: bool = True) -> list[dict]:
    return [
        defect_type_dict(t) for t in defect_types_of(taxonomy=taxonomy, active_only=active_only)
    ]


def defect_type_styles(*, line: ProductionLine | None = None) -> dict[str, dict[str, Any]]:
    """Every type name a taxonomy knows, with its label, colour and severity: the line's own
    taxonomy first, then the default one, then the others (where two share a name, the first
    wins). How charts show the names the data holds."""
    first = taxonomy_for_line(line)
    styles = {t.name: defect_type_dict(t) for t in defect_types_of(taxonomy=first)}
    others = (
        DefectType.objects.exclude(taxonomy=first)
        .select_related("taxonomy")
        .order_by("-taxonomy__is_default", "taxonomy__name", "order", "name")
    )
    for defect_type in others:
        styles.setdefault(defect_type.name, defect_type_dict(defect_type))
    return styles


def taxonomy_changes(*, taxonomy: Taxonomy, limit: int = 200) -> QuerySet[TaxonomyChange]:
    return TaxonomyChange.objects.filter(taxonomy=taxonomy).select_related("changed_by")[:limit]


def taxonomy_changes_recent(*, limit: int = 50) -> QuerySet[TaxonomyChange]:
    return TaxonomyChange.objects.select_related("taxonomy", "changed_by")[:limit]
