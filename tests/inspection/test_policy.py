"""The automation policy, level by level and edge by edge (no database)."""

import uuid

import pytest

from inspection.policy import (
    LineSettings,
    ModelScore,
    Reason,
    audit_selected,
    canary_selected,
    decide,
    level_needs_guard_rail,
    roles_to_run,
    stable_fraction,
)

CAPTURE = uuid.UUID("00000000-0000-0000-0000-000000000001")


def line(level: str, **kwargs) -> LineSettings:
    values = {"pass_threshold": 0.3, "fail_threshold": 0.7, "audit_percent": 0.0}
    return LineSettings(automation_level=level, **{**values, **kwargs})


def production(score: float) -> list[ModelScore]:
    return [ModelScore("production", score)]


def ids(count: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=n) for n in range(count)]


def test_manual_runs_no_model_and_a_human_decides():
    routing = decide(line("manual"), production(0.01), CAPTURE)
    assert (routing.decided_by, routing.verdict, routing.reason) == ("human", None, Reason.MANUAL)
    assert not routing.show_model
    assert roles_to_run(line("manual"), CAPTURE, {"production", "canary"}) == []


@pytest.mark.parametrize("score", [0.0, 0.5, 1.0])
def test_shadow_hides_the_model_and_a_human_decides(score):
    routing = decide(line("shadow"), production(score), CAPTURE)
    assert (routing.decided_by, routing.verdict, routing.reason) == ("human", None, Reason.SHADOW)
    assert routing.acting_role == "production"
    assert not routing.show_model


@pytest.mark.parametrize("score", [0.0, 0.5, 1.0])
def test_assisted_shows_the_model_and_a_human_decides(score):
    routing = decide(line("assisted"), production(score), CAPTURE)
    assert (routing.decided_by, routing.verdict) == ("human", None)
    assert routing.reason == Reason.ASSISTED
    assert routing.show_model and routing.pending


@pytest.mark.parametrize(
    ("score", "decided_by", "verdict", "reason"),
    [
        (0.0, "model", "pass", Reason.CONFIDENT),
        (0.2999, "model", "pass", Reason.CONFIDENT),
        (0.3, "human", None, Reason.UNCERTAIN),  # at the pass threshold: not below it
        (0.5, "human", None, Reason.UNCERTAIN),
        (0.6999, "human", None, Reason.UNCERTAIN),
        (0.7, "model", "fail", Reason.CONFIDENT),  # at the fail threshold: fails
        (1.0, "model", "fail", Reason.CONFIDENT),
    ],
)
def test_partial_decides_only_when_confident(score, decided_by, verdict, reason):
    routing = decide(line("partial"), production(score), CAPTURE)
    assert (routing.decided_by, routing.verdict, routing.reason) == (decided_by, verdict, reason)
    assert routing.show_model and not routing.audit


def test_partial_with_equal_thresholds_never_asks_a_human():
    settings = line("partial", pass_threshold=0.5, fail_threshold=0.5)
    assert decide(settings, production(0.4999), CAPTURE).verdict == "pass"
    assert decide(settings, production(0.5), CAPTURE).verdict == "fail"


@pytest.mark.parametrize(
    ("score", "verdict"),
    [(0.0, "pass"), (0.2999, "pass"), (0.3, "fail"), (0.5, "fail"), (1, "fail")],
)
def test_full_lets_the_model_decide_and_rejects_unsure_phones(score, verdict):
    routing = decide(line("full"), production(score), CAPTURE)
    assert (routing.decided_by, routing.verdict, routing.reason) == ("model", verdict, Reason.FULL)


def test_full_sends_the_audit_share_to_a_human_stably():
    settings = line("full", audit_percent=10.0)
    audited = [c for c in ids(4000) if decide(settings, production(0.1), c).audit]
    assert 300 < len(audited) < 500  # ~10%
    # The same capture is always (or never) in the sample.
    assert all(decide(settings, production(0.1), c).audit for c in audited[:50])
    # Audited captures are still decided by the model: the station is not kept waiting.
    assert decide(settings, production(0.1), audited[0]).decided_by == "model"


@pytest.mark.parametrize("percent", [0.0, 100.0])
def test_full_audit_percent_bounds(percent):
    settings = line("full", audit_percent=percent)
    audited = sum(decide(settings, production(0.1), c).audit for c in ids(500))
    assert audited == (500 if percent == 100 else 0)


@pytest.mark.parametrize("level", ["shadow", "assisted", "partial", "full"])
def test_without_a_model_a_human_decides(level):
    routing = decide(line(level), [], CAPTURE)
    assert (routing.decided_by, routing.verdict, routing.reason) == ("human", None, Reason.NO_MODEL)
    assert routing.acting_role is None


def test_a_shadow_prediction_alone_never_decides():
    routing = decide(line("full"), [ModelScore("shadow", 0.0)], CAPTURE)
    assert routing.reason == Reason.NO_MODEL and routing.pending


def test_canary_zero_percent_never_acts():
    settings = line("partial", canary_percent=0.0)
    predictions = [ModelScore("production", 0.1), ModelScore("canary", 0.9)]
    assert all(decide(settings, predictions, c).acting_role == "production" for c in ids(500))
    assert all(
        roles_to_run(settings, c, {"production", "canary"}) == ["production"] for c in ids(500)
    )


def test_canary_hundred_percent_always_acts():
    settings = line("partial", canary_percent=100.0)
    predictions = [ModelScore("production", 0.1), ModelScore("canary", 0.9)]
    for capture in ids(500):
        routing = decide(settings, predictions, capture)
        assert (routing.acting_role, routing.verdict) == ("canary", "fail")
        assert roles_to_run(settings, capture, {"production", "canary"}) == ["canary"]


def test_canary_share_is_stable_and_close_to_its_percent():
    settings = line("partial", canary_percent=25.0)
    chosen = [
        c for c in ids(4000) if roles_to_run(settings, c, {"production", "canary"}) == ["canary"]
    ]
    assert 850 < len(chosen) < 1150
    assert [canary_selected(c, 25.0) for c in chosen] == [True] * len(chosen)
    # Ramp 5 -> 25: everything in the 5% stays in the 25% (no capture flips back).
    assert {c for c in ids(4000) if canary_selected(c, 5.0)} <= set(chosen)


def test_canary_selected_but_failed_falls_back_to_production():
    settings = line("partial", canary_percent=100.0)
    routing = decide(settings, [ModelScore("production", 0.9)], CAPTURE)
    assert (routing.acting_role, routing.verdict) == ("production", "fail")


def test_canary_without_a_canary_deployment_runs_production():
    settings = line("partial", canary_percent=100.0)
    assert roles_to_run(settings, CAPTURE, {"production"}) == ["production"]
    assert roles_to_run(settings, CAPTURE, set()) == []


def test_canary_and_audit_hashes_are_independent():
    both = sum(canary_selected(c, 50) and audit_selected(c, 50) for c in ids(4000))
    assert 850 < both < 1150  # ~25%, not ~50%
    assert 0 <= stable_fraction(CAPTURE, "canary") < 100
    assert stable_fraction(CAPTURE, "canary") == stable_fraction(str(CAPTURE), "canary")


def test_unknown_level_is_refused():
    with pytest.raises(ValueError):
        decide(line("sometimes"), production(0.1), CAPTURE)


def test_the_policy_reads_the_score_on_the_lines_thresholds_once_for_everyone():
    settings = line("partial")
    readings = [decide(settings, production(s), CAPTURE).model_verdict for s in (0.1, 0.5, 0.9)]
    assert readings == ["pass", "uncertain", "fail"]
    shadow = decide(line("shadow"), production(0.9), CAPTURE)
    assert (shadow.model_verdict, shadow.show_model) == ("fail", False)  # read, but hidden
    assert decide(line("manual"), production(0.9), CAPTURE).model_verdict == ""


@pytest.mark.parametrize(
    ("current", "new", "needs"),
    [
        ("shadow", "partial", True),
        ("assisted", "full", True),
        ("partial", "full", True),
        ("full", "partial", False),  # lowering never needs the rail
        ("manual", "assisted", False),  # the model does not decide there
        ("partial", "partial", False),
    ],
)
def test_only_raising_a_line_to_a_model_deciding_level_needs_the_guard_rail(current, new, needs):
    assert level_needs_guard_rail(current=current, new=new) is needs
