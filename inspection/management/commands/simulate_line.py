"""`python manage.py simulate_line --line L1 --token T --rate 2/s`: a station posting phones.

It talks HTTP to a running server exactly as a real station does (the database is not used),
with synthetic phones from `vision.synth`. The drift options change the phones the way a real
line changes, for monitoring to notice: the lamp (at once, or little by little) and the camera.
"""

import json
import math
import re
import time
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import httpx
import numpy as np
from django.core.management.base import BaseCommand, CommandError
from PIL import Image

from station_client import RetryPolicy, ServerUnavailable, post_capture
from vision.images import encode_jpeg
from vision.synth import Lighting, item_seed, synth_phone
from vision.synth.phones import _random_lighting


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


# A simulated station retries a little, so a busy demo server does not lose its phones.
SEND_RETRY = RetryPolicy(attempts=3, max_delay=2.0, max_retry_after=5.0)

# What --lighting-shift-after switches to: a dimmer, warmer lamp (drift monitoring should see it).
# --gradual-drift-after reaches the same lamp little by little.
SHIFTED_LIGHTING = "brightness=0.65,temperature=3800,direction=60,gradient=0.35"
# What --camera-shift-after does: the camera was knocked, so the phone sits 8% of the frame's
# width to the right and 5% of its height lower, turned 3 degrees and 8% larger (closer).
CAMERA_SHIFT = {"dx": 0.08, "dy": 0.05, "angle": 3.0, "zoom": 1.08}


def blend_lighting(start: Lighting, end: Lighting, share: float) -> Lighting:
    """The light `share` (0-1) of the way from `start` to `end`, every field linearly."""
    share = min(1.0, max(0.0, share))
    return Lighting(
        **{
            f.name: (1 - share) * getattr(start, f.name) + share * getattr(end, f.name)
            for f in fields(Lighting)
        }
    )


def camera_moved(
    image: np.ndarray,
    *,
    dx: float = CAMERA_SHIFT["dx"],
    dy: float = CAMERA_SHIFT["dy"],
    angle: float = CAMERA_SHIFT["angle"],
    zoom: float = CAMERA_SHIFT["zoom"],
) -> np.ndarray:
    """The same scene seen by a camera that moved: its content shifted by (dx, dy) shares of
    the frame, turned by `angle` degrees (anticlockwise) and scaled by `zoom` about the centre.
    What comes into view at the edges is the mat (the median colour of the frame's border)."""
    height, width = image.shape[:2]
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))
    theta = math.radians(angle)
    cos, sin = math.cos(theta) / zoom, math.sin(theta) / zoom
    cx, cy = width / 2, height / 2
    tx, ty = cx + dx * width, cy + dy * height
    # Pillow's affine maps each output pixel back to its source: the inverse of
    # out = centre + shift + zoom * R(angle) (in - centre), with y pointing down.
    a, b, d, e = cos, -sin, sin, cos
    matrix = (a, b, cx - a * tx - b * ty, d, e, cy - d * tx - e * ty)
    moved = Image.fromarray(np.ascontiguousarray(image, np.uint8)).transform(
        (width, height),
        Image.Transform.AFFINE,
        matrix,
        resample=Image.Resampling.BILINEAR,
        fillcolor=fill,
    )
    return np.asarray(moved)


@dataclass(frozen=True)
class Drift:
    """When the station's conditions change, in seconds since it started (None: never)."""

    lighting_shift_after: float | None = None
    gradual_drift_after: float | None = None
    gradual_drift_over: float = 600.0
    camera_shift_after: float | None = None

    def lighting_share(self, elapsed: float) -> float:
        """How far the lamp is on its way to SHIFTED_LIGHTING: 0 (normal) to 1 (shifted)."""
        share = 0.0
        if self.lighting_shift_after is not None and elapsed >= self.lighting_shift_after:
            share = 1.0
        if self.gradual_drift_after is not None and elapsed >= self.gradual_drift_after:
            ramp = (elapsed - self.gradual_drift_after) / max(self.gradual_drift_over, 1e-9)
            share = max(share, min(1.0, ramp))
        return share

    def camera_shifted(self, elapsed: float) -> bool:
        return self.camera_shift_after is not None and elapsed >= self.camera_shift_after


@dataclass(frozen=True)
class StationPhone:
    image: np.ndarray
    truth: str  # "defect" or "ok"
    lighting_share: float
    camera_shifted: bool


def station_phone(
    *,
    seed: int,
    index: int,
    size: tuple[int, int],
    defect_rate: float,
    drift: Drift,
    elapsed: float,
    varied_lighting: bool = False,
) -> StationPhone:
    """Phone number `index` of the station, as its camera sees it `elapsed` seconds in."""
    share = drift.lighting_share(elapsed)
    if varied_lighting:
        # The same mild light from phone to phone that the training phones get.
        normal = _random_lighting(np.random.default_rng(item_seed(seed, index)))
    else:
        normal = Lighting()
    lighting = blend_lighting(normal, Lighting.parse(SHIFTED_LIGHTING), share) if share else normal
    phone = synth_phone(seed=seed + index, size=size, defect_rate=defect_rate, lighting=lighting)
    shifted = drift.camera_shifted(elapsed)
    image = camera_moved(phone.image) if shifted else phone.image
    return StationPhone(image, phone.label, share, shifted)


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
        parser.add_argument(
            "--gradual-drift-after",
            default="",
            help="e.g. 5m: from then the light darkens and warms little by little (slow drift)",
        )
        parser.add_argument(
            "--gradual-drift-over",
            default="",
            help="how long the slow drift takes to reach the shifted light (default 10m)",
        )
        parser.add_argument(
            "--camera-shift-after",
            default="",
            help="e.g. 60s: then the camera moves (phone offset, turned and closer)",
        )
        parser.add_argument(
            "--varied-lighting",
            action="store_true",
            help="a mild random light per phone, like the training phones (default: one lamp)",
        )
        parser.add_argument("--size", default="1024x576")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--json", action="store_true", help="print one JSON line per capture")

    def handle(self, *args, **options):
        interval = 1 / parse_rate(options["rate"])
        drift = drift_from_options(options)
        width, height = (int(v) for v in options["size"].lower().split("x"))
        seed = options["seed"] if options["seed"] is not None else int(time.time())
        url = options["url"].rstrip("/") + "/api/v1/captures"
        headers = {"Authorization": f"Token {options['token']}"}
        self.stdout.write(
            f"Station posting to {url} on line {options['line']} every {interval:.2f} s"
        )
        try:
            self._run(options, url, headers, interval, drift, (width, height), seed)
        except KeyboardInterrupt:
            self.stdout.write("Station stopped.")

    def _run(self, options, url, headers, interval, drift: Drift, size, seed) -> None:
        started = time.monotonic()
        sent = 0
        with httpx.Client(headers=headers, timeout=30) as client:
            while not options["count"] or sent < options["count"]:
                due = started + sent * interval
                time.sleep(max(0.0, due - time.monotonic()))
                phone = station_phone(
                    seed=seed,
                    index=sent,
                    size=size,
                    defect_rate=options["defect_rate"],
                    drift=drift,
                    elapsed=time.monotonic() - started,
                    varied_lighting=options["varied_lighting"],
                )
                data = encode_jpeg(phone.image, 90)
                sent += 1
                self._post(client, url, options, data, phone)

    def _post(self, client, url, options, data: bytes, phone: StationPhone) -> None:
        key = uuid.uuid4().hex
        metadata = {
            "truth": phone.truth,
            "lighting_shifted": phone.lighting_share > 0,
            "lighting_shift": round(phone.lighting_share, 3),
            "camera_shifted": phone.camera_shifted,
        }
        t0 = time.perf_counter()
        try:
            # The station client's sending: the same key again after a dropped connection,
            # a 429 or a 503 (backoff with jitter, Retry-After honoured).
            response = post_capture(
                client,
                url=url,
                line=options["line"],
                idempotency_key=key,
                image=data,
                filename="phone.jpg",
                captured_at=datetime.now(UTC).isoformat(),
                metadata=metadata,
                policy=SEND_RETRY,
                sleep=time.sleep,
            )
        except ServerUnavailable as exc:
            if exc.response is None:
                self.stderr.write(f"{key[:8]}  request failed: {exc}")
                return
            response = exc.response  # still "not now" after the retries: shown below
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
        notes = ""
        if phone.lighting_share >= 1:
            notes += "  [lighting shifted]"
        elif phone.lighting_share > 0:
            notes += f"  [lighting {100 * phone.lighting_share:.0f}% shifted]"
        if phone.camera_shifted:
            notes += "  [camera moved]"
        self.stdout.write(
            f"{key[:8]}  {verdict:<26} by {body.get('decided_by') or '-':<6}{score_text}  "
            f"truth {phone.truth:<6} {latency_ms:6.1f} ms{notes}"
        )
        self.stdout.flush()


def drift_from_options(options: dict) -> Drift:
    """The --*-after / --gradual-drift-over options as a Drift, checked."""

    def seconds(name: str) -> float | None:
        return parse_duration(options[name]) if options.get(name) else None

    if options.get("gradual_drift_over") and not options.get("gradual_drift_after"):
        raise CommandError("--gradual-drift-over needs --gradual-drift-after")
    over = seconds("gradual_drift_over")
    if over is not None and over <= 0:
        raise CommandError("--gradual-drift-over must be longer than 0s")
    return Drift(
        lighting_shift_after=seconds("lighting_shift_after"),
        gradual_drift_after=seconds("gradual_drift_after"),
        gradual_drift_over=over if over is not None else 600.0,
        camera_shift_after=seconds("camera_shift_after"),
    )
