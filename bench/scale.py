"""Page and API latency on a million captures: p50/p95 of what inspectors, supervisors and
labelers open, and of the monitoring job, against a PostgreSQL database of its own.

    python bench/scale.py [--captures 1000000] [--lines 4] [--reuse] [--drop] [--json]
        [--repeats 40] [--explain FILE]

The database is DATABASE_URL (default postgres://postgres@127.0.0.1:5432/bench_scale; its name
must contain "bench"): created when missing, migrated, emptied and loaded with
`manage.py seed_scale --captures N --lines K --force` (COPY). `--reuse` keeps a database that
already holds at least N captures (no load); `--drop` drops it at the end.

Each request goes in-process through Django's test Client (sessions, middleware, DRF, templates:
everything but the socket) as the user who would make it: an inspector assigned to two lines
(the queue, the captures list on their lines), a supervisor (captures list with filters and deep
pages, /supervise/, the registry, the monitor pages) and a labeler (next task, then release it).
The monitoring job is `monitoring.services.line_check(force=True)` for one line. Each is called
--warmup times, then --repeats times, timed one at a time; p50/p95/max in milliseconds against
the 200 ms target. `--explain FILE` writes EXPLAIN (ANALYZE, BUFFERS) of the slowest queries of
each case to FILE.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_scale")
os.environ.setdefault("HTTPS", "0")  # the test Client speaks plain HTTP
# One user makes hundreds of requests a minute here; the throttles are not what is measured.
os.environ.setdefault("THROTTLE_USER_RATE", "1000000/min")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from io import StringIO  # noqa: E402
from pathlib import Path  # noqa: E402

import django  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
django.setup()
from bench.benchdb import bench_database, database_create_missing, database_drop  # noqa: E402
from config.startup import startup_objects_freeze  # noqa: E402

startup_objects_freeze()  # as config/asgi.py does: the web process's garbage collector

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

TARGET_P95_MS = 200.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _server() -> tuple[str, dict]:
    return bench_database(script="bench/scale.py", needs="empties and loads")


def database_prepare(args) -> dict:
    """Create, migrate and load the database (or reuse it); returns the load's figures."""
    name, server = _server()
    database_create_missing(name, server, _log)
    _log(f"migrating {name}")
    call_command("migrate", verbosity=0)
    from inspection.models import Capture

    have = Capture.objects.count()
    if args.reuse and have >= args.captures:
        _log(f"reusing the {have:,} captures already loaded")
        return {"reused": True, "captures": have}
    with connection.cursor() as cursor:  # a database of its own: start from empty tables
        tables = connection.introspection.django_table_names(only_existing=True)
        tables = [t for t in tables if t != "django_migrations"]
        cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
    _log(f"loading {args.captures:,} captures over {args.lines} lines (seed_scale)")
    out = _Tee()
    started = time.monotonic()
    call_command("seed_scale", captures=args.captures, lines=args.lines, force=True, stdout=out)
    seconds = time.monotonic() - started
    summary = re.search(r"Loaded ([\d,]+) rows in ([\d,.]+) s \(([\d,]+) rows/s\)", out.text)
    rows = int(summary.group(1).replace(",", "")) if summary else None
    return {
        "reused": False,
        "captures": args.captures,
        "rows": rows,
        "seed_scale_s": round(seconds, 1),
        "rows_per_s": round(rows / seconds) if rows else None,
        "captures_per_s": round(args.captures / seconds),
    }


class _Tee(StringIO):
    """The command's output, shown as it goes and kept for its summary."""

    def write(self, text: str) -> int:
        sys.stderr.write(text)
        return super().write(text)

    @property
    def text(self) -> str:
        return self.getvalue()


def _client(username: str) -> Client:
    client = Client()
    client.force_login(User.objects.get(username=username))
    return client


def _ok(response, what: str):
    if response.status_code not in (200, 204):
        raise SystemExit(f"{what}: HTTP {response.status_code}: {response.content[:300]!r}")
    return response


def _deep_page(supervisor: Client, query: str, depth: int) -> Callable[[], object]:
    """The page `depth` captures into a filtered list: with `?offset=` where the list pages
    by offset (it answers a `count`), else with the cursor of the row there (keyset)."""
    first = _ok(supervisor.get(f"/api/v1/captures?{query}"), "captures list").json()
    if "count" in first:
        url = f"/api/v1/captures?{query}&offset={depth}"
    else:
        from core.pagination import KeysetPagination
        from inspection.models import Capture

        row = Capture.objects.order_by("-received_at", "id").filter(line__code="SC1")[depth]
        cursor = KeysetPagination().cursor_for(row)
        url = f"/api/v1/captures?{query}&cursor={cursor}"
    return lambda: _ok(supervisor.get(url), "deep page")


def history_fill(hours: int = 24) -> None:
    """What a day of beat leaves: one evaluation of each signal a minute on every line (the
    monitor page charts the last 24 hours of them), copied from the newest real one."""
    from datetime import timedelta

    from monitoring.models import SignalEvaluation

    for newest in SignalEvaluation.objects.order_by("line_id", "signal", "-evaluated_at").distinct(
        "line_id", "signal"
    ):
        since = newest.evaluated_at - timedelta(hours=hours)
        have = SignalEvaluation.objects.filter(
            line_id=newest.line_id, signal=newest.signal, evaluated_at__gte=since
        ).count()
        if have >= hours * 60 // 2:
            continue
        fields = [f.attname for f in SignalEvaluation._meta.concrete_fields if f.attname != "id"]
        values = {name: getattr(newest, name) for name in fields}
        copies = [
            SignalEvaluation(
                **{**values, "evaluated_at": newest.evaluated_at - timedelta(minutes=minute)}
            )
            for minute in range(1, hours * 60)
        ]
        SignalEvaluation.objects.bulk_create(copies, batch_size=1000)
    _log("monitoring history: 24 hours of evaluations, one a minute, on every line")


def cases(args) -> dict[str, Callable[[], object]]:
    """What is timed, by name: each a call that makes one request (or runs the job once)."""
    from core.models import ProductionLine
    from models_registry.models import ModelVersion
    from monitoring.services import line_check

    inspector_name = "scale-inspector-1"
    inspector = _client(inspector_name)
    supervisor = _client("scale-supervisor")
    labeler = _client("scale-labeler-1")
    codes = ",".join(
        ProductionLine.objects.filter(inspectors__username=inspector_name)
        .order_by("code")
        .values_list("code", flat=True)
    )
    line = ProductionLine.objects.get(code="SC1")
    production = ModelVersion.objects.get(name="scale-net")
    shadow = ModelVersion.objects.filter(name="scale-net-next").first()

    def label_next_and_release() -> None:
        response = _ok(
            labeler.post("/api/v1/label-tasks/next", {}, content_type="application/json"),
            "next task",
        )
        if response.status_code == 200:
            annotation = response.json()["id"]
            _ok(labeler.post(f"/api/v1/annotations/{annotation}/release"), "release")

    def get(client: Client, url: str) -> Callable[[], object]:
        return lambda: _ok(client.get(url), url)

    found = {
        "inspector queue (2 lines)": get(inspector, f"/api/v1/queue?lines={codes}"),
        "captures: inspector, pending": get(inspector, "/api/v1/captures?status=pending"),
        "captures: line+decided+fail": get(
            supervisor, "/api/v1/captures?line=SC1&status=decided&verdict=fail"
        ),
        "captures: line+pending": get(supervisor, "/api/v1/captures?line=SC1&status=pending"),
        "captures: all, first page": get(supervisor, "/api/v1/captures"),
        "captures: line, 100,000 deep": _deep_page(supervisor, "line=SC1", args.depth),
        "/supervise/": get(supervisor, "/supervise/"),
        "label task next + release": label_next_and_release,
        "/models/": get(supervisor, "/models/"),
        "/models/<production version>/": get(supervisor, f"/models/{production.pk}/"),
        "monitoring line_check (force)": lambda: line_check(line=line, force=True),
        "/monitor/": get(supervisor, "/monitor/"),
        "/monitor/SC1/": get(supervisor, "/monitor/SC1/"),
    }
    if shadow is not None:
        found["/models/<shadow version>/"] = get(supervisor, f"/models/{shadow.pk}/")
    return found


def measure(call: Callable[[], object], *, warmup: int, repeats: int) -> dict:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(times[-1], 1),
        "n": len(times),
        "ok": p95 < TARGET_P95_MS,
    }


def explain(name: str, call: Callable[[], object], out, top: int = 3) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest reads one call makes."""
    with CaptureQueriesContext(connection) as context:
        call()
    queries = sorted(context.captured_queries, key=lambda q: -float(q["time"]))
    out.write(f"\n===== {name}: {len(queries)} queries, slowest {top} =====\n")
    shown = 0
    for query in queries:
        sql = query["sql"]
        if shown >= top:
            break
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        shown += 1
        out.write(f"\n-- {float(query['time']) * 1000:.1f} ms\n{sql[:2000]}\n")
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            out.write("\n".join(row[0] for row in cursor.fetchall()) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captures", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=4)
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded database")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--depth", type=int, default=100_000, help="rows into the deep page")
    parser.add_argument("--only", help="only the cases whose name contains one of these (a,b)")
    parser.add_argument("--explain", help="write EXPLAIN ANALYZE of the slowest queries here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    load = database_prepare(args)
    from core.models import ProductionLine
    from monitoring.services import line_check

    for line in ProductionLine.objects.all():  # the job has run: pages read its reports
        line_check(line=line, force=True)
    history_fill()
    results = {}
    explained = open(args.explain, "w") if args.explain else None  # noqa: SIM115
    try:
        for name, call in cases(args).items():
            if args.only and not any(part in name for part in args.only.split(",")):
                continue
            results[name] = measure(call, warmup=args.warmup, repeats=args.repeats)
            _log(f"{name:<34} p50 {results[name]['p50_ms']:>7.1f} ms  p95 "
                 f"{results[name]['p95_ms']:>7.1f} ms")  # fmt: skip
            if explained:
                explain(name, call, explained)
    finally:
        if explained:
            explained.close()
    report = {
        "database": settings.DATABASES["default"]["NAME"],
        "lines": args.lines,
        "load": load,
        "target_p95_ms": TARGET_P95_MS,
        "results": results,
    }
    if args.drop:
        name, server = _server()
        connections.close_all()
        database_drop(name, server)
        report["dropped"] = True
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'case':<34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  p95 < 200 ms")
    for name, figures in results.items():
        print(
            f"{name:<34} {figures['p50_ms']:>8.1f} {figures['p95_ms']:>8.1f} "
            f"{figures['max_ms']:>8.1f}  {'yes' if figures['ok'] else 'NO'}"
        )
    if not load.get("reused"):
        print(
            f"seed_scale: {load['captures']:,} captures, {load['rows']:,} rows in "
            f"{load['seed_scale_s']} s ({load['rows_per_s']:,} rows/s)"
        )


if __name__ == "__main__":
    main()
