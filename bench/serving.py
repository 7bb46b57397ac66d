"""Serving benchmark: the latency a station sees, beside the in-process floor, then throughput.

    python bench/serving.py --url http://127.0.0.1:8000 --token T --line L1 --n 200 \\
        --concurrency 8 --json

1. One capture at a time (`--n`): p50/p95/p99 of the station's round trip.
2. The same images decoded and predicted in this process (`inprocess_ms`, the floor) and
   the ratio of the station's p50 to it. Captures and in-process runs alternate in blocks of
   `--block` images, so both are measured within the same second or two: on a shared machine
   whose speed drifts by a quarter over minutes, a floor measured after all the captures moved
   the ratio by up to 0.3 between runs of the same code. (Alternating every image instead makes
   each side start cold after the other's model run.)
3. `--loaded-n` captures from `--concurrency` stations at once: captures per second and p99.
It also reports the server's own step times (the Server-Timing header: decode, predict,
beside (the wait for the statistics and the image's file, done beside the model), db) so the
remainder is HTTP, parsing and the framework.

The model for the in-process floor is `--model PATH`, or the line's production model found
through the API in MODELS_ROOT (default ./artifacts) when the server runs on this machine.
The client shares the machine's cores with the server: on a small machine it costs throughput.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def make_images(count: int, size: tuple[int, int], seed: int) -> list[bytes]:
    from vision.images import encode_jpeg
    from vision.synth import synth_phone

    return [
        encode_jpeg(synth_phone(seed=seed + i, size=size, defect_rate=0.1).image, 90)
        for i in range(count)
    ]


def post(client: httpx.Client, line: str, data: bytes) -> tuple[float, dict, dict]:
    started = time.perf_counter()
    response = client.post(
        "/api/v1/captures",
        data={"line": line, "idempotency_key": uuid.uuid4().hex},
        files={"image": ("phone.jpg", data, "image/jpeg")},
    )
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code == 429:
        raise SystemExit(
            f"HTTP 429: {response.text[:500]}\nThe station's rate limit was reached: start the "
            "server with a higher THROTTLE_STATION_RATE (e.g. 100000/min) for the benchmark."
        )
    if response.status_code not in (200, 201):
        raise SystemExit(f"HTTP {response.status_code}: {response.text[:500]}")
    timing = {}
    for part in response.headers.get("server-timing", "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        if duration:
            timing[name] = float(duration)
    return elapsed, timing, response.json()


def find_model(client: httpx.Client, line: str) -> Path | None:
    response = client.get(f"/api/v1/lines/{line}")
    if response.status_code != 200:
        return None
    for deployment in response.json().get("deployments", []):
        if deployment["role"] == "production":
            root = Path(os.environ.get("MODELS_ROOT") or ROOT / "artifacts")
            path = root / "models" / f"{deployment['sha256']}.pt"
            return path if path.exists() else None
    return None


class Floor:
    """The in-process decode+predict of one image at a time, on one torch thread, in a pool
    thread as a web worker serves it (SERVING_THREADS=1). Not in the main thread: there glibc's
    main heap gave its large buffers back and took them again at each image (hundreds to
    thousands of page faults an image): 18.9-20.0 ms against 12.6-14.8 ms in a thread."""

    def __init__(self, model: Path, images: list[bytes]) -> None:
        import torch

        from vision.inference import Predictor

        torch.set_num_threads(1)
        self.predictor = Predictor.from_artifact(model, threads=1)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="floor")
        self.decode: list[float] = []
        self.predict: list[float] = []
        for data in images[:4]:  # warm up
            self.run(data, record=False)

    def run(self, data: bytes, *, record: bool = True) -> None:
        self.thread.submit(self._run, data, record).result()

    def _run(self, data: bytes, record: bool) -> None:
        from vision.images import decode_image

        t0 = time.perf_counter()
        image = decode_image(data, max_pixels=40_000_000)
        t1 = time.perf_counter()
        self.predictor.predict([image])
        t2 = time.perf_counter()
        if record:
            self.decode.append((t1 - t0) * 1000)
            self.predict.append((t2 - t1) * 1000)

    def summary(self) -> dict[str, float]:
        total = [d + p for d, p in zip(self.decode, self.predict, strict=True)]
        return {
            "inprocess_ms": statistics.median(total),
            "inprocess_decode_ms": statistics.median(self.decode),
            "inprocess_predict_ms": statistics.median(self.predict),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--token",
        required=True,
        help="a station token of --line; several, comma-separated, are shared out among the "
        "concurrent stations",
    )
    parser.add_argument("--line", default="L1")
    parser.add_argument("--n", type=int, default=200, help="sequential captures")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent stations")
    parser.add_argument("--loaded-n", type=int, default=0, help="captures under load (def. 2n)")
    parser.add_argument("--size", default="1024x576")
    parser.add_argument("--distinct", type=int, default=48, help="distinct synthetic images")
    parser.add_argument(
        "--block", type=int, default=25, help="captures, then as many in-process runs, in turn"
    )
    parser.add_argument("--model", help="artifact for the in-process floor")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    width, height = (int(v) for v in args.size.lower().split("x"))
    images = make_images(args.distinct, (width, height), args.seed)
    tokens = [token.strip() for token in args.token.split(",") if token.strip()]
    headers = {"Authorization": f"Token {tokens[0]}"}
    results: dict[str, object] = {
        "url": args.url,
        "line": args.line,
        "size": args.size,
        "image_kb": round(statistics.mean(len(i) for i in images) / 1024, 1),
        "n": args.n,
        "concurrency": args.concurrency,
        "stations": min(len(tokens), args.concurrency),
    }

    with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
        for data in images[:8]:  # warm the server: model loaded, connections open
            post(client, args.line, data)
        model = Path(args.model) if args.model else find_model(client, args.line)
        floor = Floor(model, images) if model and model.exists() else None
        latencies, timings, verdicts = [], [], {}
        for start in range(0, args.n, args.block):
            block = [images[i % len(images)] for i in range(start, min(args.n, start + args.block))]
            for data in block:
                elapsed, timing, body = post(client, args.line, data)
                latencies.append(elapsed)
                timings.append(timing)
                key = body["verdict"] or body["status"]
                verdicts[key] = verdicts.get(key, 0) + 1
            if floor is not None:
                for data in block:
                    floor.run(data)

    results.update(
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        mean_ms=statistics.mean(latencies),
        verdicts=verdicts,
    )
    steps = sorted({name for timing in timings for name in timing})
    server = {name: statistics.median(t.get(name, 0.0) for t in timings) for name in steps}
    results["server_steps_p50_ms"] = {k: round(v, 3) for k, v in server.items()}
    results["outside_steps_p50_ms"] = round(
        statistics.median(lat - sum(t.values()) for lat, t in zip(latencies, timings, strict=True)),
        3,
    )
    if floor is not None:
        floor.thread.shutdown()
        results.update(floor.summary())
        results["ratio_p50_to_inprocess"] = results["p50_ms"] / results["inprocess_ms"]
        # What serving adds, in ms: comparable across hosts, where the ratio is not (the same
        # costs weigh more on a faster floor).
        results["beyond_inprocess_ms"] = results["p50_ms"] - results["inprocess_ms"]
    else:
        results["inprocess_ms"] = None
        results["ratio_p50_to_inprocess"] = None
        results["beyond_inprocess_ms"] = None
        results["note"] = "no model found for the in-process floor: pass --model"

    loaded_n = args.loaded_n or 2 * args.n
    loaded: list[float] = []
    lock = threading.Lock()
    local = threading.local()
    clients: list[httpx.Client] = []

    def station(index: int) -> None:
        if not hasattr(local, "client"):
            with lock:
                token = tokens[len(clients) % len(tokens)]
                local.client = httpx.Client(
                    base_url=args.url, headers={"Authorization": f"Token {token}"}, timeout=60
                )
                clients.append(local.client)
        elapsed, _, _ = post(local.client, args.line, images[index % len(images)])
        with lock:
            loaded.append(elapsed)

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(station, range(args.concurrency)))  # connect every station first
        loaded.clear()
        started = time.perf_counter()
        list(pool.map(station, range(loaded_n)))
        wall = time.perf_counter() - started
    for client in clients:
        client.close()
    results.update(
        loaded_n=loaded_n,
        captures_per_s=loaded_n / wall,
        loaded_p50_ms=percentile(loaded, 50),
        loaded_p99_ms=percentile(loaded, 99),
    )
    for key, value in list(results.items()):
        if isinstance(value, float):
            results[key] = round(value, 3)

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
