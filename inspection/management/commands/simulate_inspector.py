"""`python manage.py simulate_inspector --line L2`: an inspector who judges the line's queue.

Like a person at the inspector's page, it takes the oldest capture waiting for a human on the
line (a pending capture or a pending audit sample), claims it and gives a verdict through the
same services the page's API calls, straight against the database (run it on the server).

It agrees with the model's reading (pass or fail) except, with probability --override-rate,
when it overrides it; --override-rate-after T --new-override-rate R raises (or lowers) that
rate T into the run, which is what concept-drift monitoring should notice. A capture the model
was unsure about gets the truth the simulated station put in its metadata (`{"truth": "defect"}`
from simulate_line), else a coin toss.
"""

import contextlib
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils import timezone

from core.errors import ApplicationError
from core.models import ProductionLine, Verdict
from core.roles import INSPECTING, user_has_role
from inspection import selectors, services
from inspection.management.commands.simulate_line import parse_duration, parse_rate
from inspection.models import AuditStatus, Capture

NOTE = "simulated inspector"
# How often an idle inspector looks at an empty queue again.
IDLE_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Judgement:
    verdict: str
    overrode: bool | None  # None: the model had no pass/fail reading to go against
    basis: str  # "model" (agreed or overrode), "truth" (the station's metadata) or "coin"
    regions: list[dict]


def judge(capture: Capture, *, override_rate: float, rng: random.Random) -> Judgement:
    """What the simulated inspector decides on `capture` (its decision loaded)."""
    decision = capture.decision
    audit = decision.audit_status == AuditStatus.PENDING
    reading = decision.model_verdict or (decision.verdict if audit else "")
    if reading in (Verdict.PASS, Verdict.FAIL):
        overrode = rng.random() < override_rate
        flipped = Verdict.FAIL if reading == Verdict.PASS else Verdict.PASS
        verdict, basis = (flipped if overrode else reading), "model"
    else:
        overrode = None
        truth = (capture.metadata or {}).get("truth")
        if truth in ("defect", "ok"):
            verdict, basis = (Verdict.FAIL if truth == "defect" else Verdict.PASS), "truth"
        else:
            verdict, basis = rng.choice((Verdict.PASS, Verdict.FAIL)), "coin"
    regions = _model_regions(capture) if verdict == Verdict.FAIL else []
    return Judgement(str(verdict), overrode, basis, regions)


def _model_regions(capture: Capture) -> list[dict]:
    """The acting prediction's regions as the inspector's boxes (an inspector who fails a
    phone marks where the defect is; the yield Pareto counts their defect types)."""
    acting = capture.decision.acting_prediction_id
    for prediction in capture.predictions.all():
        if prediction.pk == acting:
            return [
                {"box": region["box"], "defect_type": region.get("defect_type") or "scratch"}
                for region in prediction.regions or []
                if isinstance(region, dict) and "box" in region
            ]
    return []


class Command(BaseCommand):
    help = "Act as an inspector: claim and decide the line's pending captures and audit samples."

    def add_arguments(self, parser):
        parser.add_argument("--line", required=True, help="the production line's code, e.g. L2")
        parser.add_argument("--user", default="inspector", help="an inspector's username")
        parser.add_argument(
            "--override-rate",
            type=float,
            default=0.02,
            help="share of the model's pass/fail readings the inspector goes against",
        )
        parser.add_argument(
            "--override-rate-after", default="", help="e.g. 10m: then --new-override-rate"
        )
        parser.add_argument("--new-override-rate", type=float, default=None, help="default 0.10")
        parser.add_argument("--rate", default="1/s", help="decisions per second at most")
        parser.add_argument("--count", type=int, default=0, help="stop after N (0: run forever)")
        parser.add_argument(
            "--until-empty", action="store_true", help="stop when nothing is left to decide"
        )
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--json", action="store_true", help="print one JSON line per decision")

    def handle(self, *args, **options):
        line = ProductionLine.objects.filter(code=options["line"]).first()
        if line is None:
            known = ", ".join(ProductionLine.objects.values_list("code", flat=True)) or "none"
            raise CommandError(f"Unknown production line {options['line']!r} (lines: {known}).")
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(
                f"No user {options['user']!r}: create one (seed_demo makes 'inspector') or pass "
                "--user."
            )
        if not user.is_active or not user_has_role(user, *INSPECTING):
            raise CommandError(f"User {user.username!r} may not inspect (not an inspector).")
        schedule = _override_schedule(options)
        interval = 1 / parse_rate(options["rate"])
        if options["count"] < 0:
            raise CommandError("--count must be 0 (forever) or more")
        rng = random.Random(options["seed"])
        if not options["json"]:
            self.stdout.write(
                f"Inspector {user.username} on line {line.code}: overriding the model "
                f"{_percent(schedule[0])} of the time"
                + (
                    f", {_percent(schedule[2])} after {schedule[1]:g} s"
                    if schedule[1] is not None
                    else ""
                )
            )
        tally = {"decisions": 0, "overrides": 0, "judged": 0}
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop, and say what was done
            self._run(line, user, options, schedule, interval, rng, tally)
        if not options["json"]:
            judged, overrides = tally["judged"], tally["overrides"]
            share = f" ({_percent(overrides / judged)})" if judged else ""
            self.stdout.write(
                f"Inspector stopped: {tally['decisions']} decisions, {overrides} overrides of "
                f"{judged} model readings{share}."
            )

    def _run(self, line, user, options, schedule, interval, rng, tally) -> None:
        started = time.monotonic()
        next_due = started
        skipped: set[Any] = set()
        while not options["count"] or tally["decisions"] < options["count"]:
            time.sleep(max(0.0, next_due - time.monotonic()))
            capture = self._oldest(line, user, skipped)
            if capture is None:
                if options["until_empty"]:
                    return
                close_old_connections()
                next_due = time.monotonic() + IDLE_POLL_SECONDS
                continue
            elapsed = time.monotonic() - started
            rate_now = schedule[2] if schedule[1] is not None and elapsed >= schedule[1] else None
            override_rate = schedule[0] if rate_now is None else rate_now
            judgement = judge(capture, override_rate=override_rate, rng=rng)
            kind = "audit" if capture.decision.audit_status == AuditStatus.PENDING else "verdict"
            model_verdict = capture.decision.model_verdict
            try:
                services.capture_claim(capture=capture, user=user)
                services.verdict_record(
                    capture_id=capture.pk,
                    user=user,
                    verdict=judgement.verdict,
                    regions=judgement.regions,
                    note=NOTE,
                )
            except ApplicationError as exc:
                # Another inspector took it, or it was decided meanwhile: on to the next.
                skipped.add(capture.pk)
                self.stderr.write(f"{str(capture.pk)[:8]}  skipped: {exc.message}")
                continue
            tally["decisions"] += 1
            tally["judged"] += judgement.overrode is not None
            tally["overrides"] += bool(judgement.overrode)
            next_due = max(next_due + interval, time.monotonic() - interval)
            self._print(options, line, capture, kind, model_verdict, judgement, override_rate)

    def _oldest(self, line, user, skipped: set) -> Capture | None:
        queue = selectors.inspector_queue(line_codes=[line.code], user=user, now=timezone.now())
        # Only as many rows as it takes to get past the ones skipped (the queue holds 200).
        head = queue[: len(skipped) + 1]
        return next((capture for capture in head if capture.pk not in skipped), None)

    def _print(self, options, line, capture, kind, model_verdict, judgement, rate) -> None:
        if options["json"]:
            row = {
                "capture": str(capture.pk),
                "line": line.code,
                "kind": kind,
                "model_verdict": model_verdict or None,
                "verdict": judgement.verdict,
                "overrode": judgement.overrode,
                "basis": judgement.basis,
                "override_rate": rate,
            }
            self.stdout.write(json.dumps(row))
        else:
            note = {"model": "", "truth": "  (the station's truth)", "coin": "  (a guess)"}
            flag = "  OVERRIDE" if judgement.overrode else ""
            self.stdout.write(
                f"{str(capture.pk)[:8]}  {kind:<7}  model {model_verdict or '-':<9} -> "
                f"{judgement.verdict:<4}{flag}{note[judgement.basis]}"
            )
        self.stdout.flush()


def _override_schedule(options: dict) -> tuple[float, float | None, float]:
    """(rate, seconds after which the new rate applies or None, new rate), checked."""
    rate = options["override_rate"]
    after_text = options["override_rate_after"]
    after = parse_duration(after_text) if after_text else None
    new_rate = options["new_override_rate"]
    if new_rate is not None and after is None:
        raise CommandError("--new-override-rate needs --override-rate-after")
    new_rate = 0.10 if new_rate is None else new_rate
    for name, value in (("--override-rate", rate), ("--new-override-rate", new_rate)):
        if not 0.0 <= value <= 1.0:
            raise CommandError(f"{name} must be between 0 and 1, got {value}")
    return rate, after, new_rate


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"
