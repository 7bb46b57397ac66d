"""Defect taxonomies, edited by supervisors: taxonomies and the lines that use them, defect
types added, changed, deactivated or (when nothing carries them) deleted; every change audited.

The models live in core (every app reads them); the writes live here, where the data that
carries a type's name (inspectors' regions, label tasks, annotations, dataset items) is all
visible, so a type in use is never deleted.
"""

import re
from typing import Any

from django.db import IntegrityError, transaction

from core.errors import ApplicationError
from core.models import DefectSeverity, DefectType, ProductionLine, Taxonomy, TaxonomyChange
from inspection import selectors
from labeling import selectors as labeling_selectors

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
COLOUR_PATTERN = re.compile(r"^#[0-9a-fA-F]{6}$")
# Keys the annotation page keeps for itself (tools, label, queue, zoom): not a type's hotkey.
RESERVED_HOTKEYS = frozenset("abdejkmnoprsvx0")
_TYPE_FIELDS = ("label", "colour", "hotkey", "severity", "order", "is_active")


def _audit(
    taxonomy: Taxonomy, *, user: Any, action: str, changes: dict, defect_type: str = ""
) -> TaxonomyChange:
    return TaxonomyChange.objects.create(
        taxonomy=taxonomy,
        defect_type=defect_type,
        action=action,
        changed_by=user if getattr(user, "pk", None) else None,
        changes=changes,
    )


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ApplicationError(
            f"A {what}'s name is 1 to 32 lower-case letters, digits, '-' or '_', starting with a "
            f"letter or digit; got {name!r}.",
            code="invalid_name",
        )
    return name


def _check_type_fields(fields: dict[str, Any]) -> None:
    """Each given field valid (uniqueness aside: _check_unique)."""
    if "label" in fields and not str(fields["label"]).strip():
        raise ApplicationError("label cannot be empty.", code="invalid_label")
    if "colour" in fields and not COLOUR_PATTERN.fullmatch(str(fields["colour"])):
        raise ApplicationError(
            f"colour must be #rrggbb, got {fields['colour']!r}.", code="invalid_colour"
        )
    if "severity" in fields and fields["severity"] not in DefectSeverity.values:
        raise ApplicationError(
            f"severity must be one of {', '.join(DefectSeverity.values)}.", code="invalid_severity"
        )
    hotkey = fields.get("hotkey", "")
    if hotkey:
        if len(hotkey) != 1 or not hotkey.isascii() or not hotkey.isalnum():
            raise ApplicationError(
                f"hotkey must be one letter or digit, got {hotkey!r}.", code="invalid_hotkey"
            )
        if hotkey in RESERVED_HOTKEYS:
            raise ApplicationError(
                f"hotkey {hotkey!r} is one of the annotation page's own keys "
                f"({', '.join(sorted(RESERVED_HOTKEYS))}); choose another.",
                code="reserved_hotkey",
            )


def _check_unique(
    taxonomy: Taxonomy, *, name: str, hotkey: str, is_active: bool, pk: Any = None
) -> None:
    others = DefectType.objects.filter(taxonomy=taxonomy).exclude(pk=pk)
    if others.filter(name=name).exists():
        raise ApplicationError(
            f"Taxonomy {taxonomy.name} already has a defect type {name!r} (a deactivated one "
            "can be activated again).",
            code="duplicate_name",
        )
    if hotkey and is_active:
        taken = others.filter(hotkey=hotkey, is_active=True).first()
        if taken is not None:
            raise ApplicationError(
                f"Hotkey {hotkey!r} is already {taken.name}'s in taxonomy {taxonomy.name}.",
                code="duplicate_hotkey",
            )


def _save_unique(obj: Any) -> None:
    """Save; a race past the checks above meets the database's constraint: a 400, not a 500."""
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError as exc:
        raise ApplicationError(
            "Another change took this name or hotkey just now; reload and try again.",
            code="duplicate",
        ) from exc


def _lines_get(codes: list[str]) -> list[ProductionLine]:
    lines = list(ProductionLine.objects.select_for_update().filter(code__in=set(codes)))
    unknown = set(codes) - {line.code for line in lines}
    if unknown:
        raise ApplicationError(
            f"Unknown production line: {', '.join(sorted(unknown))}.", code="unknown_line"
        )
    return lines


def _lines_assign(taxonomy: Taxonomy, codes: list[str]) -> dict | None:
    """Exactly these lines use the taxonomy (lines taken off it go back to the default one)."""
    if taxonomy.is_default:
        raise ApplicationError(
            "The default taxonomy is that of every line without one of its own: give a line "
            "another taxonomy through that taxonomy's lines, and take it off to bring it back.",
            code="default_taxonomy_lines",
        )
    lines = _lines_get(codes)
    old = sorted(ProductionLine.objects.filter(taxonomy=taxonomy).values_list("code", flat=True))
    new = sorted(line.code for line in lines)
    if old == new:
        return None
    ProductionLine.objects.filter(taxonomy=taxonomy).exclude(code__in=new).update(taxonomy=None)
    ProductionLine.objects.filter(code__in=new).update(taxonomy=taxonomy)
    return {"lines": {"old": old, "new": new}}


@transaction.atomic
def taxonomy_create(
    *, user: Any, name: str, label: str = "", lines: list[str] | None = None
) -> Taxonomy:
    """A new taxonomy (empty: add its types), optionally the one these lines use."""
    _check_name(name, "taxonomy")
    if Taxonomy.objects.filter(name=name).exists():
        raise ApplicationError(f"Taxonomy {name} already exists.", code="duplicate_name")
    taxonomy = Taxonomy(name=name, label=label.strip() or name)
    _save_unique(taxonomy)
    _audit(
        taxonomy,
        user=user,
        action="created",
        changes={"name": {"old": None, "new": name}, "label": {"old": None, "new": taxonomy.label}},
    )
    if lines:
        assigned = _lines_assign(taxonomy, lines)
        if assigned:
            _audit(taxonomy, user=user, action="lines", changes=assigned)
    return taxonomy


@transaction.atomic
def taxonomy_update(
    *, taxonomy: Taxonomy, user: Any, label: str | None = None, lines: list[str] | None = None
) -> Taxonomy:
    """A taxonomy's label, and which lines use it (the whole list); both audited."""
    taxonomy = Taxonomy.objects.select_for_update().get(pk=taxonomy.pk)
    if label is not None and label.strip() and label.strip() != taxonomy.label:
        change = {"label": {"old": taxonomy.label, "new": label.strip()}}
        taxonomy.label = label.strip()
        taxonomy.save(update_fields=["label", "updated_at"])
        _audit(taxonomy, user=user, action="updated", changes=change)
    if lines is not None:
        assigned = _lines_assign(taxonomy, lines)
        if assigned:
            _audit(taxonomy, user=user, action="lines", changes=assigned)
    return taxonomy


@transaction.atomic
def defect_type_create(
    *,
    taxonomy: Taxonomy,
    user: Any,
    name: str,
    label: str = "",
    colour: str = "#8e8e93",
    hotkey: str = "",
    severity: str = DefectSeverity.FAIL,
    order: int | None = None,
) -> DefectType:
    """A new defect type of the taxonomy: offered at once on the annotation and inspector
    pages of the lines that use it, and accepted in their regions."""
    taxonomy = Taxonomy.objects.select_for_update().get(pk=taxonomy.pk)
    _check_name(name, "defect type")
    hotkey = (hotkey or "").lower()
    fields = {"label": label.strip() or name, "colour": colour, "hotkey": hotkey}
    fields["severity"] = severity
    _check_type_fields(fields)
    _check_unique(taxonomy, name=name, hotkey=hotkey, is_active=True)
    if order is None:
        last = DefectType.objects.filter(taxonomy=taxonomy).order_by("-order").first()
        order = last.order + 1 if last else 0
    defect_type = DefectType(taxonomy=taxonomy, name=name, order=order, **fields)
    _save_unique(defect_type)
    _audit(
        taxonomy,
        user=user,
        action="created",
        defect_type=name,
        changes={
            field: {"old": None, "new": getattr(defect_type, field)} for field in _TYPE_FIELDS
        },
    )
    return defect_type


@transaction.atomic
def defect_type_update(*, defect_type: DefectType, user: Any, **changes: Any) -> DefectType:
    """Change a type's label, colour, hotkey, severity or order, or (de)activate it. Its name
    stays: data carries it (rename by the label; a new name is a new type)."""
    defect_type = DefectType.objects.select_for_update().get(pk=defect_type.pk)
    if "name" in changes and changes["name"] != defect_type.name:
        raise ApplicationError(
            "A defect type's name cannot change: regions and datasets carry it. Change its "
            "label, or deactivate it and add a new type.",
            code="name_fixed",
        )
    changes.pop("name", None)
    unknown = set(changes) - set(_TYPE_FIELDS)
    if unknown:
        raise ApplicationError(f"Cannot change {', '.join(sorted(unknown))}.")
    if "hotkey" in changes:
        changes["hotkey"] = (changes["hotkey"] or "").lower()
    if "label" in changes:
        changes["label"] = str(changes["label"]).strip()
    taxonomy = defect_type.taxonomy
    _check_type_fields(changes)
    _check_unique(
        taxonomy,
        name=defect_type.name,
        hotkey=changes.get("hotkey", defect_type.hotkey),
        is_active=changes.get("is_active", defect_type.is_active),
        pk=defect_type.pk,
    )
    diff = {
        field: {"old": getattr(defect_type, field), "new": value}
        for field, value in changes.items()
        if getattr(defect_type, field) != value
    }
    if not diff:
        return defect_type
    for field, value in changes.items():
        setattr(defect_type, field, value)
    _save_unique(defect_type)
    if set(diff) == {"is_active"}:
        action = "activated" if defect_type.is_active else "deactivated"
    else:
        action = "updated"
    _audit(taxonomy, user=user, action=action, defect_type=defect_type.name, changes=diff)
    return defect_type


def defect_type_in_use(*, name: str) -> bool:
    """Whether any data carries the name (any line's: data does not record its taxonomy)."""
    return labeling_selectors.defect_type_in_labeling_data(
        name=name
    ) or selectors.defect_type_in_decisions(name=name)


@transaction.atomic
def defect_type_delete(*, defect_type: DefectType, user: Any) -> None:
    """Delete a type nothing carries yet (a mistake); one in use is a 409: deactivate it."""
    defect_type = DefectType.objects.select_for_update().get(pk=defect_type.pk)
    if defect_type_in_use(name=defect_type.name):
        raise ApplicationError(
            f"Defect type {defect_type.name!r} is in use (regions, label tasks or datasets carry "
            "it), so it cannot be deleted; deactivate it instead (PATCH is_active=false): old "
            "data keeps it, new regions cannot use it.",
            code="defect_type_in_use",
            status=409,
        )
    taxonomy = defect_type.taxonomy
    before = {field: getattr(defect_type, field) for field in _TYPE_FIELDS}
    defect_type.delete()
    _audit(
        taxonomy,
        user=user,
        action="deleted",
        defect_type=defect_type.name,
        changes={field: {"old": value, "new": None} for field, value in before.items()},
    )
