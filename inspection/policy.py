"""The automation policy: who decides a capture, the model or a human. Pure functions, no Django.

The table in shared/ARCHITECTURE.md, as code:

| level      | model runs | decides                                                        |
|------------|------------|----------------------------------------------------------------|
| `manual`   | no         | human                                                          |
| `shadow`   | yes        | human (the model's output is hidden)                           |
| `assisted` | yes        | human (shown the model's verdict and regions)                  |
| `partial`  | yes        | model if score < pass_threshold (pass) or >= fail_threshold    |
|            |            | (fail), else human                                             |
| `full`     | yes        | model: pass below pass_threshold, fail otherwise (an unsure    |
|            |            | phone is rejected); an audit sample also goes to a human       |

This module is the one home of these rules: it answers who decides, the verdict, the model's
own reading of the score on the line's thresholds, whether the inspector sees the model, and
why; the services store that answer and the pages read what was stored. It also says which
levels let the model decide and which decisions count for the guard rail.

The canary model acts, instead of production, for a stable fraction of captures: those whose
id hashes below `canary_percent`. The audit sample uses an independent hash. Without a usable
model (none deployed, or its artifact failed to load or predict), a human decides.

A capture uploaded with the verdict the station's edge model gave during an outage is not
decided again (the phone left with that verdict): `edge_decided` records it, and sends a
share of such decisions (`edge_audit_percent`, its own hash) to a human, as audit samples.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from core.choices import AutomationLevel as Level
from inspection.choices import DecisionReason as Reason

# Levels at which the model runs, and those at which it decides (the guard rail guards these).
MODEL_LEVELS = frozenset({Level.SHADOW, Level.ASSISTED, Level.PARTIAL, Level.FULL})
MODEL_DECIDING_LEVELS = frozenset({Level.PARTIAL, Level.FULL})
# Human decisions beside a model verdict the human did not have to follow: the model ran hidden
# (shadow) or was shown (assisted). The guard rail's agreement counts these.
GUARD_RAIL_REASONS = frozenset({Reason.SHADOW, Reason.ASSISTED})
# Decisions whose inspector saw the model's verdict and regions.
MODEL_SHOWN_REASONS = frozenset({Reason.ASSISTED, Reason.CONFIDENT, Reason.UNCERTAIN, Reason.FULL})
_LEVEL_ORDER = list(Level)  # manual < shadow < assisted < partial < full


def level_needs_guard_rail(*, current: str, new: str) -> bool:
    """Whether moving a line from `current` up to `new` lets the model decide there."""
    rises = _LEVEL_ORDER.index(Level(new)) > _LEVEL_ORDER.index(Level(current))
    return new in MODEL_DECIDING_LEVELS and rises


def model_verdict(score: float, *, pass_threshold: float, fail_threshold: float) -> str:
    """The model's reading of a score on the line's thresholds: pass, fail or uncertain."""
    if score >= fail_threshold:
        return "fail"
    if score < pass_threshold:
        return "pass"
    return "uncertain"


@dataclass(frozen=True)
class LineSettings:
    automation_level: str
    pass_threshold: float
    fail_threshold: float
    audit_percent: float = 0.0
    canary_percent: float = 0.0  # of the canary deployment, 0 when none
    edge_audit_percent: float = 0.0  # of the edge model's outage verdicts, reviewed by a human


@dataclass(frozen=True)
class ModelScore:
    """One model's output on the capture; `role` is production, canary or shadow."""

    role: str
    score: float


@dataclass(frozen=True)
class Routing:
    decided_by: str  # "model", "human" or "edge"
    verdict: str | None  # "pass"/"fail" when the model decided, else None (pending)
    reason: Reason
    acting_role: str | None  # the role whose prediction decides or is shown; None if none
    show_model: bool  # whether the inspector sees the model's output
    audit: bool = False  # a model decision that a human also reviews
    # The acting model's reading on the line's thresholds ("" when no model acted).
    model_verdict: str = ""

    @property
    def pending(self) -> bool:
        return self.decided_by == "human"


def stable_fraction(capture_id: object, salt: str) -> float:
    """A number in [0, 100) fixed by the capture id: the same capture always lands the same."""
    digest = hashlib.sha256(f"{salt}:{capture_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def canary_selected(capture_id: object, canary_percent: float) -> bool:
    return stable_fraction(capture_id, "canary") < canary_percent


def audit_selected(capture_id: object, audit_percent: float) -> bool:
    return stable_fraction(capture_id, "audit") < audit_percent


def edge_audit_selected(capture_id: object, edge_audit_percent: float) -> bool:
    return stable_fraction(capture_id, "edge-audit") < edge_audit_percent


def roles_to_run(
    line: LineSettings, capture_id: object, deployed: Iterable[str], *, edge: bool = False
) -> list[str]:
    """Which deployed models must run before answering the station (shadow runs later, offline).

    Only the acting model runs in the request: canary for a selected capture, else production.
    A capture the edge model decided gets production's reading for the record (to compare
    with the edge's), never the canary's: the canary is judged on the captures it decides.
    """
    deployed = set(deployed)
    if line.automation_level == Level.MANUAL:
        return []
    if edge:
        return ["production"] if "production" in deployed else []
    if "canary" in deployed and canary_selected(capture_id, line.canary_percent):
        return ["canary"]
    return ["production"] if "production" in deployed else []


def decide(line: LineSettings, predictions: Iterable[ModelScore], capture_id: object) -> Routing:
    level = Level(line.automation_level)
    if level == Level.MANUAL:
        return Routing("human", None, Reason.MANUAL, None, show_model=False)

    by_role = {p.role: p for p in predictions}
    acting = None
    if "canary" in by_role and canary_selected(capture_id, line.canary_percent):
        acting = by_role["canary"]
    elif "production" in by_role:
        acting = by_role["production"]
    if acting is None:
        return Routing("human", None, Reason.NO_MODEL, None, show_model=False)

    reading = model_verdict(
        acting.score, pass_threshold=line.pass_threshold, fail_threshold=line.fail_threshold
    )

    def route(decided_by: str, verdict: str | None, reason: Reason, audit: bool = False):
        return Routing(
            decided_by,
            verdict,
            reason,
            acting.role,
            show_model=reason in MODEL_SHOWN_REASONS,
            audit=audit,
            model_verdict=reading,
        )

    if level == Level.SHADOW:
        return route("human", None, Reason.SHADOW)
    if level == Level.ASSISTED:
        return route("human", None, Reason.ASSISTED)
    if level == Level.PARTIAL:
        if reading == "uncertain":
            return route("human", None, Reason.UNCERTAIN)
        return route("model", reading, Reason.CONFIDENT)
    # FULL: the model decides everything; only a confident pass passes.
    verdict = "pass" if reading == "pass" else "fail"
    return route(
        "model", verdict, Reason.FULL, audit=audit_selected(capture_id, line.audit_percent)
    )


def edge_decided(line: LineSettings, verdict: str, capture_id: object) -> Routing:
    """A verdict the station's edge model gave during an outage: it stands (the phone has left
    with it), and a share goes to a human as an audit sample. No server model acts on it: the
    production model's reading, when it ran, is stored beside it for the record only."""
    if verdict not in ("pass", "fail"):
        raise ValueError(f"an edge verdict is pass or fail, not {verdict!r}")
    return Routing(
        "edge",
        verdict,
        Reason.EDGE,
        None,
        show_model=False,
        audit=edge_audit_selected(capture_id, line.edge_audit_percent),
    )
