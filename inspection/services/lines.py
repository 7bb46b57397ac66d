"""Lines and stations: audited line settings behind the guard rail, new lines, new stations
and their tokens (shown once, stored hashed)."""

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from core.authentication import stations_forget, token_generate, token_hash
from core.errors import ApplicationError
from core.models import AutomationLevel, LineSettingsChange, OutagePolicy, ProductionLine, Station
from core.roles import Role, user_has_role
from inspection import events, policy, selectors

_LINE_FIELDS = (
    "inspectors",
    "name",
    "automation_level",
    "pass_threshold",
    "fail_threshold",
    "audit_percent",
    "min_shadow_captures",
    "min_agreement_percent",
    "image_retention_days",
    "outage_policy",
    "edge_audit_percent",
)


def _inspectors_get(usernames: list[str]) -> list[Any]:
    """The users behind these usernames, each of whom must be an inspector."""
    names = set(usernames)
    users = list(User.objects.filter(username__in=names, is_active=True))
    unknown = names - {user.username for user in users}
    if unknown:
        raise ApplicationError(
            f"Unknown or inactive user: {', '.join(sorted(unknown))}.", code="unknown_user"
        )
    not_inspectors = sorted(u.username for u in users if not user_has_role(u, Role.INSPECTOR))
    if not_inspectors:
        raise ApplicationError(
            f"Not an inspector: {', '.join(not_inspectors)} (supervisors and admins see every "
            "line without being assigned).",
            code="not_inspector",
        )
    return users


def _check_guard_rail(line: ProductionLine, level: str) -> None:
    """Raising a line to a level where the model decides needs the guard rail to hold.

    Checked against the rail as it stood before this change, so one request cannot lower the
    bar and raise the level at once.
    """
    if not policy.level_needs_guard_rail(current=line.automation_level, new=level):
        return
    rail = selectors.line_guard_rail(line=line)
    if not rail.ok:
        raise ApplicationError(
            f"Refused: {line.code} cannot move to {level} yet. {rail.rule} Now: {rail.status}.",
            code="guard_rail",
            status=409,
            extra={"guard_rail": {"rule": rail.rule, "status": rail.status}},
        )


@transaction.atomic
def line_settings_update(*, line: ProductionLine, user: Any, **changes: Any) -> ProductionLine:
    """Change a line's settings; every change is recorded (who, when, old and new values)."""
    line = ProductionLine.objects.select_for_update().get(pk=line.pk)
    unknown = set(changes) - set(_LINE_FIELDS)
    if unknown:
        raise ApplicationError(f"Cannot change {', '.join(sorted(unknown))}.")
    if "automation_level" in changes and changes["automation_level"] not in AutomationLevel.values:
        raise ApplicationError(
            f"automation_level must be one of {', '.join(AutomationLevel.values)}.",
            code="invalid_level",
        )
    if "outage_policy" in changes and changes["outage_policy"] not in OutagePolicy.values:
        raise ApplicationError(
            f"outage_policy must be one of {', '.join(OutagePolicy.values)}.",
            code="invalid_outage_policy",
        )
    pass_threshold = changes.get("pass_threshold", line.pass_threshold)
    fail_threshold = changes.get("fail_threshold", line.fail_threshold)
    if not 0 <= pass_threshold <= fail_threshold <= 1:
        raise ApplicationError(
            "Thresholds must satisfy 0 <= pass_threshold <= fail_threshold <= 1.",
            code="invalid_thresholds",
        )
    if not 0 <= changes.get("audit_percent", line.audit_percent) <= 100:
        raise ApplicationError("audit_percent must be between 0 and 100.", code="invalid_percent")
    if not 0 <= changes.get("edge_audit_percent", line.edge_audit_percent) <= 100:
        raise ApplicationError(
            "edge_audit_percent must be between 0 and 100.", code="invalid_percent"
        )
    if not 0 <= changes.get("min_agreement_percent", line.min_agreement_percent) <= 100:
        raise ApplicationError(
            "min_agreement_percent must be between 0 and 100.", code="invalid_percent"
        )
    days = changes.get("image_retention_days")
    if days is not None and not 1 <= days <= 36500:
        raise ApplicationError(
            "image_retention_days must be 1 to 36500 days, or null to keep images for ever.",
            code="invalid_retention",
        )
    if changes.get("min_shadow_captures", 0) < 0:
        raise ApplicationError("min_shadow_captures cannot be negative.", code="invalid_count")
    if "automation_level" in changes:
        _check_guard_rail(line, changes["automation_level"])
    inspectors = None
    if "inspectors" in changes:
        inspectors = _inspectors_get(changes.pop("inspectors"))
    diff = {
        name: {"old": getattr(line, name), "new": value}
        for name, value in changes.items()
        if getattr(line, name) != value
    }
    if inspectors is not None:
        old_names = sorted(line.inspectors.values_list("username", flat=True))
        new_names = sorted(user.username for user in inspectors)
        if old_names != new_names:
            diff["inspectors"] = {"old": old_names, "new": new_names}
    if not diff:
        return line
    for name, value in changes.items():
        setattr(line, name, value)
    line.save()
    if inspectors is not None:
        line.inspectors.set(inspectors)
    LineSettingsChange.objects.create(
        line=line, changed_by=user if getattr(user, "pk", None) else None, changes=diff
    )
    events.line_changed_on_commit(line=line, changes=diff)
    # Stations found by token carry their line: this process reads it again at once (others
    # within STATION_AUTH_CACHE_SECONDS).
    transaction.on_commit(stations_forget)
    return line


@transaction.atomic
def line_create(
    *, code: str, name: str, automation_level: str = AutomationLevel.MANUAL, **settings_: Any
) -> ProductionLine:
    if ProductionLine.objects.filter(code=code).exists():
        raise ApplicationError(f"Line {code} already exists.", code="exists", status=409)
    return ProductionLine.objects.create(
        code=code, name=name, automation_level=automation_level, **settings_
    )


@dataclass(frozen=True)
class NewStation:
    station: Station
    token: str  # shown once; only its hash is stored


@transaction.atomic
def station_create(*, line: ProductionLine, name: str) -> NewStation:
    if Station.objects.filter(line=line, name=name).exists():
        raise ApplicationError(
            f"Line {line.code} already has a station named {name}.", code="exists", status=409
        )
    token = token_generate()
    station = Station.objects.create(
        line=line, name=name, token_hash=token_hash(token), token_prefix=token[:8]
    )
    return NewStation(station, token)


@transaction.atomic
def station_token_rotate(*, station: Station) -> NewStation:
    token = token_generate()
    station.token_hash = token_hash(token)
    station.token_prefix = token[:8]
    station.save(update_fields=["token_hash", "token_prefix"])
    transaction.on_commit(stations_forget)  # the old token stops here at once
    return NewStation(station, token)
