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

The canary model acts, instead of production, for a stable fraction of captures: those whose
id hashes below `canary_percent`. The audit sample uses an independent hash. Without a usable
model (none deployed, or its artifact failed to load or predict), a human decides.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    MANUAL = "manual"
    SHADOW = "shadow"
    ASSISTED = "assisted"
    PARTIAL = "partial"
    FULL = "full"


class Reason(StrEnum):
    MANUAL = "manual"  # the line is manual
    SHADOW = "shadow"  # the model ran hidden
    ASSISTED = "assisted"  # a human decides with the model's help
    CONFIDENT = "confident"  # the model was sure enough to decide
    UNCERTAIN = "uncertain"  # between the thresholds: a human decides
    FULL = "full"  # full automation: the model decides
    NO_MODEL = "no_model"  # no model deployed, or it failed: a human decides


MODEL_LEVELS = frozenset({Level.SHADOW, Level.ASSISTED, Level.PARTIAL, Level.FULL})


@dataclass(frozen=True)
class LineSettings:
    automation_level: str
    pass_threshold: float
    fail_threshold: float
    audit_percent: float = 0.0
    canary_percent: float = 0.0  # of the canary deployment, 0 when none


@dataclass(frozen=True)
class ModelScore:
    """One model's output on the capture; `role` is production, canary or shadow."""

    role: str
    score: float


@dataclass(frozen=True)
class Routing:
    decided_by: str  # "model" or "human"
    verdict: str | None  # "pass"/"fail" when the model decided, else None (pending)
    reason: Reason
    acting_role: str | None  # the role whose prediction decides or is shown; None if none
    show_model: bool  # whether the inspector sees the model's output
    audit: bool = False  # a model decision that a human also reviews

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


def roles_to_run(line: LineSettings, capture_id: object, deployed: Iterable[str]) -> list[str]:
    """Which deployed models must run before answering the station (shadow runs later, offline).

    Only the acting model runs in the request: canary for a selected capture, else production.
    """
    deployed = set(deployed)
    if line.automation_level == Level.MANUAL:
        return []
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

    if level == Level.SHADOW:
        return Routing("human", None, Reason.SHADOW, acting.role, show_model=False)
    if level == Level.ASSISTED:
        return Routing("human", None, Reason.ASSISTED, acting.role, show_model=True)
    if level == Level.PARTIAL:
        if acting.score < line.pass_threshold:
            return Routing("model", "pass", Reason.CONFIDENT, acting.role, show_model=True)
        if acting.score >= line.fail_threshold:
            return Routing("model", "fail", Reason.CONFIDENT, acting.role, show_model=True)
        return Routing("human", None, Reason.UNCERTAIN, acting.role, show_model=True)
    # FULL: the model decides everything; only a confident pass passes.
    verdict = "pass" if acting.score < line.pass_threshold else "fail"
    audit = audit_selected(capture_id, line.audit_percent)
    return Routing("model", verdict, Reason.FULL, acting.role, show_model=True, audit=audit)
