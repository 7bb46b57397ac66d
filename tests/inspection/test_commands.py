"""Management commands: seed_demo, create_station, simulate_line's argument parsing."""

import json

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from core.authentication import station_for_token
from core.models import ProductionLine, Station
from inspection.management.commands.simulate_line import parse_duration, parse_rate

pytestmark = pytest.mark.django_db


def test_seed_demo_without_training_is_repeatable(tmp_path, capsys):
    tokens_file = tmp_path / "tokens.json"
    for _ in range(2):  # DEBUG is off in tests: the demo passwords need the flag
        call_command(
            "seed_demo", "--no-train", "--allow-demo-passwords", "--tokens-file", str(tokens_file)
        )
    out = capsys.readouterr().out
    assert {line.code: line.automation_level for line in ProductionLine.objects.all()} == {
        "L1": "partial",
        "L2": "assisted",
    }
    assert "inspector-demo" in out
    inspector = User.objects.get(username="inspector")
    assert inspector.check_password("inspector-demo")
    assert set(inspector.groups.values_list("name", flat=True)) == {"inspector"}
    assert set(inspector.assigned_lines.values_list("code", flat=True)) >= {"L1", "L2"}
    assert User.objects.get(username="admin").is_superuser
    assert Station.objects.count() == 2
    tokens = json.loads(tokens_file.read_text())
    assert station_for_token(tokens["L1"]["token"]).line.code == "L1"


def test_create_station_prints_the_token_last(capsys):
    ProductionLine.objects.create(code="L1", name="Line 1")
    call_command("create_station", "--line", "L1", "--name", "S7")
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert station_for_token(token).name == "S7"
    with pytest.raises(CommandError, match="already has"):
        call_command("create_station", "--line", "L1", "--name", "S7")
    with pytest.raises(CommandError, match="Unknown"):
        call_command("create_station", "--line", "L9", "--name", "S1")


@pytest.mark.parametrize(("text", "per_s"), [("2/s", 2), ("30/min", 0.5), ("0.5", 0.5)])
def test_rates(text, per_s):
    assert parse_rate(text) == per_s


def test_durations():
    assert parse_duration("60s") == 60 and parse_duration("2m") == 120
    with pytest.raises(CommandError):
        parse_rate("fast")


def test_a_station_token_never_starts_like_an_option(monkeypatch):
    """`--token T` on a command line: argparse takes a token starting with "-" for an option
    (the demo's simulated station once failed to start with one)."""
    import argparse
    import secrets

    from core.authentication import token_generate

    drawn = iter(["-Ns6fGK8B640K8ASYz4XHb_cCdr5rZUCBUsGC6JANz4", "Ns6fGK8B640K8ASYz4XHb"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(drawn))
    token = token_generate()
    assert token == "Ns6fGK8B640K8ASYz4XHb"
    parser = argparse.ArgumentParser()
    parser.add_argument("--token")
    assert parser.parse_args(["--token", token]).token == token
