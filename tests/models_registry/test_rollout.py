"""Rollout transitions per line: shadow, canary ramp, promotion, rollback, the gate, automatic
canary rollback and ramp; every transition audited, every refusal explained."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import ApplicationError
from inspection.models import Decision
from inspection.policy import canary_selected
from models_registry import selectors, services
from models_registry.models import (
    Deployment,
    Evaluation,
    JobStatus,
    ModelStatus,
    RolloutAction,
    RolloutEvent,
)
from tests.factories import (
    CaptureFactory,
    ModelVersionFactory,
    ProductionLineFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
BENCH = "synthetic:48:1234:256x144"


def evaluated(version, *, auroc=0.95, f1=0.9, recall=0.9, benchmark=BENCH):
    Evaluation.objects.create(
        model_version=version,
        benchmark=benchmark,
        status=JobStatus.SUCCEEDED,
        finished_at=timezone.now(),
        metrics={"auroc": auroc, "f1": f1, "recall": recall},
    )
    return version


@pytest.fixture
def line():
    return ProductionLineFactory(code="L1")


@pytest.fixture
def supervisor():
    return UserFactory(roles=["supervisor"])


@pytest.fixture
def production(line, supervisor):
    version = evaluated(ModelVersionFactory(name="scratchnet"))
    services.rollout_promote(line=line, model_version=version, user=supervisor)
    return version


def roles(line):
    return dict(Deployment.objects.filter(line=line).values_list("role", "model_version_id"))


def test_shadow_start_and_stop_are_audited_and_set_status(line, production, supervisor):
    candidate = ModelVersionFactory()
    services.rollout_shadow_start(line=line, model_version=candidate, user=supervisor)
    candidate.refresh_from_db()
    assert roles(line) == {"production": production.pk, "shadow": candidate.pk}
    assert candidate.status == ModelStatus.SHADOW
    services.rollout_shadow_stop(line=line, user=supervisor)
    candidate.refresh_from_db()
    assert candidate.status == ModelStatus.CANDIDATE
    actions = list(RolloutEvent.objects.filter(line=line).values_list("action", "user"))
    assert actions[:2] == [
        (RolloutAction.SHADOW_STOP, supervisor.pk),
        (RolloutAction.SHADOW_START, supervisor.pk),
    ]


def test_production_cannot_shadow_itself(line, production, supervisor):
    with pytest.raises(ApplicationError) as error:
        services.rollout_shadow_start(line=line, model_version=production, user=supervisor)
    assert error.value.status == 409 and "already the production" in error.value.message
    with pytest.raises(ApplicationError):
        services.rollout_shadow_stop(line=line, user=supervisor)  # none running


def test_canary_ramps_5_25_50_100_then_promotes(line, production, supervisor):
    candidate = evaluated(ModelVersionFactory(), auroc=0.96)
    services.rollout_shadow_start(line=line, model_version=candidate, user=supervisor)
    canary = services.rollout_canary_start(line=line, model_version=candidate, user=supervisor)
    assert canary.canary_percent == 5
    assert roles(line) == {"production": production.pk, "canary": candidate.pk}  # shadow freed
    for expected in (25, 50, 100):
        assert services.rollout_canary_ramp(line=line, user=supervisor).canary_percent == expected
    with pytest.raises(ApplicationError) as error:
        services.rollout_canary_ramp(line=line, user=supervisor)
    assert "promote" in error.value.message
    services.rollout_promote(line=line, model_version=candidate, user=supervisor)
    assert roles(line) == {"production": candidate.pk}
    production.refresh_from_db()
    candidate.refresh_from_db()
    assert (production.status, candidate.status) == (ModelStatus.ARCHIVED, ModelStatus.PRODUCTION)
    ramps = RolloutEvent.objects.filter(line=line, action=RolloutAction.CANARY_RAMP)
    assert sorted(ramps.values_list("percent", flat=True)) == [25, 50, 100]


def test_canary_refusals(line, supervisor):
    candidate = evaluated(ModelVersionFactory())
    with pytest.raises(ApplicationError) as error:  # no production to compare with
        services.rollout_canary_start(line=line, model_version=candidate, user=supervisor)
    assert "no production model" in error.value.message
    production = evaluated(ModelVersionFactory())
    services.rollout_promote(line=line, model_version=production, user=supervisor)
    services.rollout_canary_start(line=line, model_version=candidate, user=supervisor)
    other = evaluated(ModelVersionFactory())
    with pytest.raises(ApplicationError) as error:  # one canary at a time
        services.rollout_canary_start(line=line, model_version=other, user=supervisor)
    assert "already has a canary" in error.value.message
    with pytest.raises(ApplicationError):  # ramps only go up
        services.rollout_canary_ramp(line=line, user=supervisor, percent=3)
    with pytest.raises(ApplicationError):
        services.rollout_promote(line=line, model_version=production, user=supervisor)


def test_gate_refuses_a_worse_candidate_and_says_why(line, production, supervisor, settings):
    settings.REGISTRY_GATE_MARGIN = 0.02
    worse = evaluated(ModelVersionFactory(), auroc=0.90, f1=0.89)
    gate = selectors.promotion_gate(model_version=worse, line=line)
    assert not gate.ok
    assert "auroc 0.900 vs 0.950" in gate.reason and "0.02 margin" in gate.reason
    assert "f1" not in gate.reason  # 0.89 is within 0.02 of 0.90
    for transition in (
        lambda: services.rollout_canary_start(line=line, model_version=worse, user=supervisor),
        lambda: services.rollout_promote(line=line, model_version=worse, user=supervisor),
    ):
        with pytest.raises(ApplicationError) as error:
            transition()
        assert error.value.code == "gate" and error.value.status == 409
    # Shadow is always allowed: it never acts.
    services.rollout_shadow_start(line=line, model_version=worse, user=supervisor)
    assert roles(line)["production"] == production.pk


def test_gate_needs_both_on_the_same_benchmark(line, production, supervisor):
    elsewhere = evaluated(ModelVersionFactory(), benchmark="synthetic:16:1:128x72")
    gate = selectors.promotion_gate(model_version=elsewhere, line=line)
    assert not gate.ok and "same benchmark" in gate.reason
    unevaluated = ModelVersionFactory()
    with pytest.raises(ApplicationError):
        services.rollout_promote(line=line, model_version=unevaluated, user=supervisor)


def test_gate_within_margin_passes(line, production, settings):
    settings.REGISTRY_GATE_MARGIN = 0.05
    close = evaluated(ModelVersionFactory(), auroc=0.91)
    assert selectors.promotion_gate(model_version=close, line=line).ok


def test_rollback_goes_back_to_the_previous_production_in_one_step(line, production, supervisor):
    better = evaluated(ModelVersionFactory(), auroc=0.97)
    services.rollout_promote(line=line, model_version=better, user=supervisor)
    assert services.rollback_target(line=line) == production
    services.rollout_rollback(line=line, user=supervisor, reason="scratches missed on L1")
    assert roles(line) == {"production": production.pk}
    event = RolloutEvent.objects.filter(line=line).first()
    assert event.action == RolloutAction.ROLLBACK
    assert (event.model_version, event.previous_model_version) == (production, better)
    assert event.reason == "scratches missed on L1"
    better.refresh_from_db()
    assert better.status == ModelStatus.ARCHIVED


def test_rollback_refused_without_a_previous_version(line, production, supervisor):
    # `production` was the first model on the line: nothing to go back to.
    with pytest.raises(ApplicationError) as error:
        services.rollout_rollback(line=line, user=supervisor)
    assert "no previous production" in error.value.message


def test_canary_assignment_is_stable_per_capture_and_grows_with_the_ramp():
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(2000)]
    at5 = {i for i in ids if canary_selected(i, 5)}
    assert at5 == {i for i in ids if canary_selected(i, 5)}  # same capture, same answer
    at25 = {i for i in ids if canary_selected(i, 25)}
    assert at5 <= at25  # ramping up keeps the captures already on the canary
    assert 60 <= len(at5) <= 140 and 420 <= len(at25) <= 580


def _canary_decisions(line, canary, *, overrides: int, agreeing: int):
    for index in range(overrides + agreeing):
        capture = CaptureFactory(station__line=line)
        prediction = capture.predictions.create(
            model_version=canary.model_version, role="canary", score=0.5, verdict="uncertain",
            latency_ms=1,
        )  # fmt: skip
        Decision.objects.create(
            capture=capture,
            status="decided",
            verdict="fail" if index < overrides else "pass",
            decided_by="human",
            decided_at=timezone.now(),
            reason="assisted",
            acting_prediction=prediction,
            model_verdict="pass",
            overrode_model=index < overrides,
        )


def test_canary_rolls_back_by_itself_past_its_override_bound(line, production, supervisor):
    candidate = evaluated(ModelVersionFactory())
    canary = services.rollout_canary_start(
        line=line, model_version=candidate, user=supervisor, max_override_percent=10,
        min_decisions=10,
    )  # fmt: skip
    _canary_decisions(line, canary, overrides=1, agreeing=8)  # 9 judged: too few to judge
    assert services.canary_check() == []
    _canary_decisions(line, canary, overrides=2, agreeing=0)  # 3 of 11: 27%
    [event] = services.canary_check()
    assert event.action == RolloutAction.CANARY_ROLLBACK and event.automatic
    assert "override rate 27.3% (3 of 11 decisions)" in event.reason
    assert "10% bound" in event.reason
    assert roles(line) == {"production": production.pk}


def test_canary_ramps_on_its_schedule_while_under_the_bound(line, production, supervisor):
    candidate = evaluated(ModelVersionFactory())
    canary = services.rollout_canary_start(
        line=line, model_version=candidate, user=supervisor, auto_ramp=True,
        ramp_interval_minutes=30, min_decisions=5,
    )  # fmt: skip
    _canary_decisions(line, canary, overrides=0, agreeing=5)
    assert services.canary_check() == []  # not due yet
    later = timezone.now() + timedelta(minutes=31)
    [event] = services.canary_check(now=later)
    assert (event.action, event.percent, event.automatic) == ("canary_ramp", 25, True)
    for percent in (50, 100):
        later += timedelta(minutes=31)
        assert services.canary_check(now=later)[0].percent == percent
    later += timedelta(minutes=31)
    [event] = services.canary_check(now=later)
    assert event.action == RolloutAction.PROMOTE and event.automatic
    assert roles(line) == {"production": candidate.pk}


def test_deployment_changes_reach_serving_without_restart(
    line, production, supervisor, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.SERVING_DEPLOYMENT_CACHE_SECONDS = 2
    selectors.forget_line_serving_models()
    served = selectors.line_serving_models(line_id=line.pk)["production"]
    assert served.model_version_id == production.pk
    candidate = evaluated(ModelVersionFactory())
    with django_capture_on_commit_callbacks(execute=True):
        services.rollout_promote(line=line, model_version=candidate, user=supervisor)
    # This process forgets on commit ...
    served = selectors.line_serving_models(line_id=line.pk)["production"]
    assert served.model_version_id == candidate.pk
    # ... and another process (its cache not told) reads the change once its 2 s are over.
    with django_capture_on_commit_callbacks(execute=False):
        services.rollout_rollback(line=line, user=supervisor)
    assert selectors.line_serving_models(line_id=line.pk)["production"].model_version_id == (
        candidate.pk
    )
    import time as time_module

    now = time_module.monotonic()
    monkeypatch.setattr(selectors.time, "monotonic", lambda: now + 2.5)
    assert selectors.line_serving_models(line_id=line.pk)["production"].model_version_id == (
        production.pk
    )
