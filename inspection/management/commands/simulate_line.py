"""`python manage.py simulate_line --line L1 --token T --rate 2/s`: a station posting phones.

It talks HTTP to a running server exactly as a real station does (the database is not used),
with synthetic phones from `vision.synth`.
"""

import json
import re
import time
import uuid
from datetime import UTC, datetime

import httpx
from django.core.management.base import BaseCommand, CommandError

from vision.images import encode_jpeg
from vision.synth import Lighting, synth_phone


def parse_rate(text: str) -> float:
    """'2/s', '30/min', '0.5' -> captures per second."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*(s|sec|second|m|min|minute))?\s*", text)
    if not match:
        raise CommandError(f"rate must look like 2/s or 30/min, got {text!r}")
    value = float(match.group(1))
    return value / 60 if (match.group(2) or "s").startswith("m") else value


def parse_duration(text: str) -> float:
    """'60s', '2m', '90' -> seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|min)?\s*", text)
    if not match:
        raise CommandError(f"duration must look like 60s or 2m, got {text!r}")
    value = float(match.group(1))
    return value * 60 if (match.group(2) or "s").startswith("m") else value


# What --lighting-shift-after switches to: a dimmer, warmer lamp (drift monitoring should see it).
SHIFTED_LIGHTING = "brightness=0.65,temperature=3800,direction=60,gradient=0.35"


class Command(BaseCommand):
    help = "Act as a station: post synthetic phones to the capture API and print each verdict."

    def add_arguments(self, parser):
        parser.add_argument("--line", required=True)
        parser.add_argument("--token", required=True, help="the station's token")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
        parser.add_argument("--rate", default="2/s", help="captures per second, e.g. 2/s, 30/min")
        parser.add_argument("--count", type=int, default=0, help="stop after N (0: run forever)")
        parser.add_argument("--defect-rate", type=float, default=0.1)
        parser.add_argument(
            "--lighting-shift-after", default="", help="e.g. 60s: then the light changes (drift)"
        )
        parser.add_argument("--size", default="1024x576")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--json", action="store_true", help="print one JSON line per capture")

    def handle(self, *args, **options):
        interval = 1 / parse_rate(options["rate"])
        shift_after = (
            parse_duration(options["lighting_shift_after"])
            if options["lighting_shift_after"]
            else None
        )
        width, height = (int(v) for v in options["size"].lower().split("x"))
        seed = options["seed"] if options["seed"] is not None else int(time.time())
        url = options["url"].rstrip("/") + "/api/v1/captures"
        headers = {"Authorization": f"Token {options['token']}"}
        self.stdout.write(
            f"Station posting to {url} on line {options['line']} every {interval:.2f} s"
        )
        try:
            self._run(options, url, headers, interval, shift_after, (width, height), seed)
        except KeyboardInterrupt:
            self.stdout.write("Station stopped.")

    def _run(self, options, url, headers, interval, shift_after, size, seed) -> None:
        width, height = size
        normal = Lighting()
        shifted = Lighting.parse(SHIFTED_LIGHTING)
        started = time.monotonic()
        sent = 0
        with httpx.Client(headers=headers, timeout=30) as client:
            while not options["count"] or sent < options["count"]:
                due = started + sent * interval
                time.sleep(max(0.0, due - time.monotonic()))
                shifting = shift_after is not None and time.monotonic() - started >= shift_after
                phone = synth_phone(
                    seed=seed + sent,
                    size=(width, height),
                    defect_rate=options["defect_rate"],
                    lighting=shifted if shifting else normal,
                )
                data = encode_jpeg(phone.image, 90)
                sent += 1
                self._post(client, url, options, data, truth=phone.label, shifted=shifting)

    def _post(self, client, url, options, data: bytes, *, truth: str, shifted: bool) -> None:
        key = uuid.uuid4().hex
        form = {
            "line": options["line"],
            "idempotency_key": key,
            "captured_at": datetime.now(UTC).isoformat(),
            "metadata": json.dumps({"truth": truth, "lighting_shifted": shifted}),
        }
        t0 = time.perf_counter()
        try:
            response = client.post(
                url, data=form, files={"image": ("phone.jpg", data, "image/jpeg")}
            )
        except httpx.HTTPError as exc:
            self.stderr.write(f"{key[:8]}  request failed: {exc}")
            return
        latency_ms = (time.perf_counter() - t0) * 1000
        body = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if options["json"]:
            self.stdout.write(
                json.dumps({"status_code": response.status_code, "latency_ms": latency_ms, **body})
            )
            return
        if response.status_code >= 400:
            error = body.get("error", {})
            self.stdout.write(
                f"{key[:8]}  HTTP {response.status_code} {error.get('code')}: "
                f"{error.get('message')}"
            )
            return
        verdict = body.get("verdict") or "pending (a human decides)"
        score = (body.get("model") or {}).get("score")
        score_text = f" score {score:.3f}" if isinstance(score, float) else ""
        self.stdout.write(
            f"{key[:8]}  {verdict:<26} by {body.get('decided_by') or '-':<6}{score_text}  "
            f"truth {truth:<6} {latency_ms:6.1f} ms{'  [lighting shifted]' if shifted else ''}"
        )
        self.stdout.flush()
