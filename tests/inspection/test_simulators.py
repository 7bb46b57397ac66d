"""The simulators behind the demo and the drift bench: simulate_line's drift options change the
phones it posts as intended, and simulate_inspector decides a line's queue like an inspector."""

import email.parser
import email.policy
import io
import json
from datetime import timedelta

import httpx
import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from PIL import Image

from inspection.management.commands import simulate_line
from inspection.management.commands.simulate_line import (
    SHIFTED_LIGHTING,
    Drift,
    blend_lighting,
    camera_moved,
)
from inspection.models import Decision
from tests.factories import (
    DecisionFactory,
    PredictionFactory,
    ProductionLineFactory,
    UserFactory,
    station_with_token,
)
from vision.drift import image_stats
from vision.synth import Lighting

REAL_CLIENT = httpx.Client  # before any test swaps it for one with a fake server

# --- simulate_line -------------------------------------------------------------------------


def test_the_gradual_drift_ramps_to_the_shifted_light_and_stays_there():
    drift = Drift(gradual_drift_after=10, gradual_drift_over=20)
    assert [drift.lighting_share(t) for t in (0, 10, 20, 30, 100)] == [0, 0, 0.5, 1, 1]
    shifted = Lighting.parse(SHIFTED_LIGHTING)
    assert blend_lighting(Lighting(), shifted, 1.0) == shifted
    halfway = blend_lighting(Lighting(), shifted, 0.5)
    assert halfway.brightness == pytest.approx((1 + shifted.brightness) / 2)
    assert halfway.temperature == pytest.approx((6500 + shifted.temperature) / 2)
    abrupt = Drift(lighting_shift_after=5, camera_shift_after=7)
    assert [abrupt.lighting_share(t) for t in (4.9, 5)] == [0, 1]
    assert [abrupt.camera_shifted(t) for t in (6.9, 7)] == [False, True]


def test_a_moved_camera_shows_the_part_offset_and_larger():
    image = np.full((180, 320, 3), 90, np.uint8)
    image[80:100, 150:170] = 250  # a bright square at the centre

    def centroid_and_area(pixels):
        rows, cols = np.nonzero(pixels[..., 0] > 170)
        return cols.mean(), rows.mean(), rows.size

    x0, y0, area0 = centroid_and_area(image)
    moved = camera_moved(image)
    x1, y1, area1 = centroid_and_area(moved)
    assert x1 - x0 == pytest.approx(0.08 * 320, abs=1.0)
    assert y1 - y0 == pytest.approx(0.05 * 180, abs=1.0)
    assert area1 / area0 == pytest.approx(1.08**2, rel=0.15)
    assert moved[0, 0].tolist() == [90, 90, 90]  # what comes into view is the mat


class FakeClock:
    """time for simulate_line: sleeping moves the clock, so elapsed seconds are exact."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += max(0.0, seconds)

    def perf_counter(self):
        return self.now

    def time(self):
        return self.now


def _form_fields(request: httpx.Request) -> dict[str, bytes]:
    head = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


def run_station(monkeypatch, *options: str) -> list[dict]:
    """simulate_line against a fake server on a fake clock; what each post carried."""
    posts = []

    def server(request: httpx.Request) -> httpx.Response:
        form = _form_fields(request)
        image = np.asarray(Image.open(io.BytesIO(form["image"])).convert("RGB"))
        posts.append({"metadata": json.loads(form["metadata"]), "image": image})
        return httpx.Response(
            201, json={"id": "x", "status": "pending", "verdict": None, "decided_by": None}
        )

    monkeypatch.setattr(simulate_line, "time", FakeClock())
    monkeypatch.setattr(
        simulate_line.httpx,
        "Client",
        lambda **kwargs: REAL_CLIENT(transport=httpx.MockTransport(server), **kwargs),
    )
    call_command(
        "simulate_line",
        *("--line", "L1", "--token", "t", "--rate", "1/s", "--size", "256x144"),
        *("--seed", "5", "--defect-rate", "0", *options),
    )
    return posts


def test_the_gradual_drift_darkens_the_phones_little_by_little(monkeypatch, capsys):
    steady = run_station(monkeypatch, "--count", "6")
    drifting = run_station(
        monkeypatch, "--count", "6", "--gradual-drift-after", "2s", "--gradual-drift-over", "2s"
    )
    shares = [post["metadata"]["lighting_shift"] for post in drifting]
    assert shares == [0, 0, 0, 0.5, 1, 1]
    assert [post["metadata"]["lighting_shifted"] for post in drifting] == [False] * 3 + [True] * 3
    before = [image_stats(post["image"])["brightness"] for post in steady]
    after = [image_stats(post["image"])["brightness"] for post in drifting]
    assert after[:3] == before[:3]
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    assert 0.75 < ratios[3] < 0.92  # halfway to the shifted lamp (brightness 0.65)
    assert ratios[4] < 0.75 and ratios[5] < 0.75
    # Warmer too: more red against green.
    assert image_stats(drifting[5]["image"])["r_g"] > image_stats(steady[5]["image"])["r_g"]
    assert "[lighting 50% shifted]" in capsys.readouterr().out


def test_the_camera_shift_moves_the_phone_from_then_on(monkeypatch):
    steady = run_station(monkeypatch, "--count", "4")
    moved = run_station(monkeypatch, "--count", "4", "--camera-shift-after", "2s")
    assert [post["metadata"]["camera_shifted"] for post in moved] == [False, False, True, True]
    for index in (0, 1):
        assert np.array_equal(moved[index]["image"], steady[index]["image"])
    for index in (2, 3):
        # The posted photo is the steady one seen through the moved camera (JPEG aside).
        expected = camera_moved(steady[index]["image"]).astype(float)
        got = moved[index]["image"].astype(float)
        assert np.abs(got - expected).mean() < 3
        assert np.abs(got - steady[index]["image"]).mean() > 3 * np.abs(got - expected).mean()


def test_the_varied_lighting_changes_the_light_from_phone_to_phone(monkeypatch):
    steady = run_station(monkeypatch, "--count", "3")
    varied = run_station(monkeypatch, "--count", "3", "--varied-lighting")
    assert all(
        not np.array_equal(a["image"], b["image"]) for a, b in zip(steady, varied, strict=True)
    )


def test_drift_options_are_checked():
    with pytest.raises(CommandError, match="needs --gradual-drift-after"):
        call_command("simulate_line", "--line", "L1", "--token", "t", "--gradual-drift-over", "5m")
    with pytest.raises(CommandError, match="duration must look like"):
        call_command(
            "simulate_line", "--line", "L1", "--token", "t", "--camera-shift-after", "soon"
        )


# --- simulate_inspector --------------------------------------------------------------------


@pytest.fixture
def line(db):
    return ProductionLineFactory(code="L2", automation_level="assisted")


@pytest.fixture
def inspector(db):
    return UserFactory(username="inspector", roles=["inspector"])


def pending(line, station, *, model_verdict="pass", metadata=None, **kwargs) -> Decision:
    decision = DecisionFactory(
        capture__station=station,
        capture__metadata=metadata or {},
        reason="assisted" if model_verdict != "uncertain" else "uncertain",
        model_verdict=model_verdict,
        **kwargs,
    )
    score = {"pass": 0.1, "fail": 0.9}.get(model_verdict, 0.5)
    regions = [{"box": [10, 20, 30, 40], "score": score, "defect_type": "crack"}]
    decision.acting_prediction = PredictionFactory(
        capture=decision.capture, score=score, regions=regions if score > 0.3 else []
    )
    decision.save()
    return decision


def run_inspector(capsys, *options: str) -> list[dict]:
    call_command("simulate_inspector", "--line", "L2", "--rate", "1000/s", "--json", *options)
    return [json.loads(row) for row in capsys.readouterr().out.splitlines()]


def test_the_inspector_decides_the_queue_oldest_first_and_overrides_at_the_rate(
    line, inspector, capsys
):
    station = station_with_token(line=line)
    start = timezone.now() - timedelta(hours=1)
    decisions = [
        pending(
            line,
            station,
            model_verdict="fail" if index % 5 == 0 else "pass",
            capture__received_at=start + timedelta(seconds=index),
        )
        for index in range(200)
    ]
    rows = run_inspector(capsys, "--override-rate", "0.1", "--seed", "3", "--until-empty")
    assert [row["capture"] for row in rows] == [str(d.capture_id) for d in decisions]
    stored = {str(d.capture_id): d for d in Decision.objects.filter(capture__line=line)}
    assert all(d.status == "decided" and d.decided_by_user == inspector for d in stored.values())
    overrides = sum(1 for d in stored.values() if d.overrode_model)
    assert 8 <= overrides <= 34  # 10% of 200, give or take binomial noise (3 SD)
    for row in rows:
        decision = stored[row["capture"]]
        assert decision.overrode_model == row["overrode"]
        assert decision.verdict == row["verdict"]
        assert (decision.verdict != row["model_verdict"]) == row["overrode"]
        if decision.verdict == "fail" and not row["overrode"]:
            assert decision.regions == [{"box": [10, 20, 30, 40], "defect_type": "crack"}]
    assert {row["basis"] for row in rows} == {"model"}


def test_the_override_rate_changes_after_the_given_time(line, inspector, capsys):
    station = station_with_token(line=line)
    for _ in range(20):
        pending(line, station)
    rows = run_inspector(
        capsys,
        *("--override-rate", "0", "--override-rate-after", "0s", "--new-override-rate", "1"),
        *("--count", "10"),
    )
    assert len(rows) == 10 and all(row["overrode"] for row in rows)
    assert Decision.objects.filter(status="pending").count() == 10


def test_unsure_captures_get_the_stations_truth_and_audit_samples_a_review(line, inspector, capsys):
    station = station_with_token(line=line)
    defect = pending(line, station, model_verdict="uncertain", metadata={"truth": "defect"})
    good = pending(line, station, model_verdict="uncertain", metadata={"truth": "ok"})
    audit = pending(
        line,
        station,
        model_verdict="pass",
        status="decided",
        verdict="pass",
        decided_by="model",
        audit=True,
        audit_status="pending",
    )
    taken = pending(line, station, claimed_by=UserFactory(roles=["inspector"]))
    taken.claim_expires_at = timezone.now() + timedelta(minutes=5)
    taken.save()
    rows = run_inspector(capsys, "--override-rate", "0", "--until-empty")
    by_capture = {row["capture"]: row for row in rows}
    assert set(by_capture) == {str(d.capture_id) for d in (defect, good, audit)}
    assert by_capture[str(defect.capture_id)] | {"capture": None} == {
        "capture": None,
        "line": "L2",
        "kind": "verdict",
        "model_verdict": "uncertain",
        "verdict": "fail",
        "overrode": None,
        "basis": "truth",
        "override_rate": 0.0,
    }
    assert by_capture[str(good.capture_id)]["verdict"] == "pass"
    audit.refresh_from_db()
    assert (by_capture[str(audit.capture_id)]["kind"], audit.audit_status) == ("audit", "confirmed")
    assert audit.audited_by == inspector
    taken.refresh_from_db()
    assert taken.status == "pending"  # another inspector holds it


def test_the_inspector_refuses_unknown_lines_and_users(line, inspector, capsys):
    with pytest.raises(CommandError, match=r"Unknown production line 'L9' \(lines: L2\)"):
        call_command("simulate_inspector", "--line", "L9")
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("simulate_inspector", "--line", "L2", "--user", "nobody")
    UserFactory(username="lena", roles=["labeler"])
    with pytest.raises(CommandError, match="'lena' may not inspect"):
        call_command("simulate_inspector", "--line", "L2", "--user", "lena")
    with pytest.raises(CommandError, match="between 0 and 1"):
        call_command("simulate_inspector", "--line", "L2", "--override-rate", "2")
    with pytest.raises(CommandError, match="needs --override-rate-after"):
        call_command("simulate_inspector", "--line", "L2", "--new-override-rate", "0.1")


def test_the_inspector_prints_a_line_per_decision_and_a_summary(line, inspector, capsys):
    station = station_with_token(line=line)
    pending(line, station, model_verdict="fail")
    call_command("simulate_inspector", "--line", "L2", "--rate", "100/s", "--until-empty")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Inspector inspector on line L2: overriding the model 2.0%")
    assert "verdict  model fail      -> fail" in out[1] or "OVERRIDE" in out[1]
    assert out[-1].startswith("Inspector stopped: 1 decisions")
