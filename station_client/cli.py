"""`python -m station_client capture|flush|watch|mqtt` (shared/INTERFACES.md, "Station client").

Exit status: 0 done (capture: decided, pending or buffered; flush: sent what the server could
take, `left` says what still waits); 2 the server rejected a capture (a bad image: its words
are printed; not sent again); 3 the server refused the station's token or line (the captures
stay in the buffer); 4 a local problem (no such image file, no token).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from station_client.buffer import DEFAULT_PATH, Buffer
from station_client.client import CaptureRejected, CaptureResult, StationClient

logger = logging.getLogger("station_client")

EXIT_OK, EXIT_REJECTED, EXIT_REFUSED, EXIT_LOCAL = 0, 2, 3, 4

_print_lock = threading.Lock()


def _print(text: str, *, stream=None) -> None:
    with _print_lock:
        print(text, file=stream or sys.stdout, flush=True)


def _common(parser: argparse.ArgumentParser, *, line: bool) -> None:
    parser.add_argument("--url", required=True, help="the platform, e.g. https://inspect.example")
    parser.add_argument(
        "--token",
        default=os.environ.get("STATION_TOKEN"),
        help="the station's token (default: $STATION_TOKEN, which keeps it out of `ps`)",
    )
    if line:
        parser.add_argument("--line", required=True, help="the production line's code, e.g. L1")
    parser.add_argument(
        "--buffer",
        type=Path,
        default=DEFAULT_PATH,
        help=f"the station's buffer file (SQLite; default ./{DEFAULT_PATH})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and fallbacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m station_client",
        description="A station of the inspection platform: posts captures with retries and an "
        "offline buffer, waits for verdicts, applies the line's outage policy.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    capture = commands.add_parser("capture", help="post one image and print its verdict")
    capture.add_argument("image", type=Path)
    _common(capture, line=True)
    capture.add_argument("--json", action="store_true", help="print the result as JSON")
    capture.add_argument(
        "--wait",
        type=float,
        default=300.0,
        help="seconds to wait for a pending (human) verdict; 0: do not wait (default 300)",
    )
    capture.add_argument("--metadata", help="a JSON object sent with the capture")

    flush = commands.add_parser("flush", help="send what the buffer holds, in order")
    _common(flush, line=False)
    flush.add_argument("--json", action="store_true", help="print the result as JSON")

    watch = commands.add_parser("watch", help="post each new image that appears in a folder")
    watch.add_argument("folder", type=Path)
    _common(watch, line=True)
    watch.add_argument("--interval", type=float, default=0.5, help="seconds between scans")
    watch.add_argument(
        "--settle", type=float, default=1.0, help="seconds a file must stay unchanged"
    )

    mqtt = commands.add_parser("mqtt", help="answer a PLC's triggers over MQTT (README: topics)")
    _common(mqtt, line=True)
    mqtt.add_argument("--broker", required=True, help="the MQTT broker, HOST[:PORT] (port 1883)")
    mqtt.add_argument("--folder", type=Path, required=True, help="the camera's image folder")
    mqtt.add_argument("--topic-prefix", default="inspection", help="topics: PREFIX/LINE/...")
    mqtt.add_argument("--username", default=os.environ.get("MQTT_USERNAME"), help="for the broker")
    mqtt.add_argument(
        "--password",
        default=os.environ.get("MQTT_PASSWORD"),
        help="for the broker (default: $MQTT_PASSWORD, which keeps it out of `ps`)",
    )
    return parser


def _describe(result: CaptureResult) -> str:
    if result.status == "buffered":
        edge = ""
        if result.policy == "edge":
            edge = f" (edge model: {result.edge_verdict or 'unsure'})"
        return (
            f"buffered: the server could not be reached; outage policy {result.policy}{edge}: "
            f"the phone gets {result.action}. Key {result.key}; `flush` sends it later."
        )
    if result.status == "decided":
        return f"decided: {result.verdict} (by {result.decided_by}), capture {result.id}"
    return f"pending: a human decides; no verdict yet for capture {result.id}"


def _rejected(exc: CaptureRejected, as_json: bool) -> int:
    where = "kept in the buffer" if exc.kept else "not kept for sending"
    _print(f"The server refused the capture: {exc} ({where}).", stream=sys.stderr)
    if as_json:
        _print(json.dumps(exc.to_dict()))
    return EXIT_REFUSED if exc.kept else EXIT_REJECTED


def _capture(args: argparse.Namespace, client: StationClient) -> int:
    try:
        image = args.image.read_bytes()
    except OSError as exc:
        _print(f"Cannot read {args.image}: {exc.strerror or exc}", stream=sys.stderr)
        return EXIT_LOCAL
    metadata: Any = None
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            _print("--metadata must be a JSON object.", stream=sys.stderr)
            return EXIT_LOCAL
    try:
        result = client.capture(
            image, line=args.line, filename=args.image.name, metadata=metadata, wait=args.wait
        )
    except CaptureRejected as exc:
        return _rejected(exc, args.json)
    _print(json.dumps(result.to_dict()) if args.json else _describe(result))
    if result.status != "buffered":
        # Online: keep the line's policy (and edge model) fresh for the next outage.
        client.line_refresh(args.line)
    return EXIT_OK


def _flush(args: argparse.Namespace, client: StationClient) -> int:
    result = client.flush()
    client.buffer.prune()  # answered captures older than a week
    if args.json:
        _print(json.dumps(result.to_dict()))
    else:
        _print(f"sent {result.sent}, left {result.left}, rejected {result.rejected}")
    if result.error is not None:
        return _rejected(result.error, False)
    if result.stopped:
        _print(f"Stopped, {result.left} left in the buffer: {result.stopped}", stream=sys.stderr)
    return EXIT_REJECTED if result.rejected else EXIT_OK


def _watch(args: argparse.Namespace, client: StationClient) -> int:
    from station_client.watch import FolderWatcher

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    watcher = FolderWatcher(
        client,
        args.folder,
        line=args.line,
        emit=lambda event: _print(json.dumps(event)),
        settle_seconds=args.settle,
    )
    logger.warning("watching %s for line %s", args.folder, args.line)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C or SIGTERM: a clean stop
        watcher.run(poll_interval=args.interval)
    return EXIT_OK


def _mqtt(args: argparse.Namespace, client: StationClient) -> int:
    from station_client.mqtt import MqttBridge

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        bridge = MqttBridge(
            client,
            line=args.line,
            folder=args.folder,
            broker=args.broker,
            topic_prefix=args.topic_prefix,
            username=args.username,
            password=args.password,
            emit=lambda event: _print(json.dumps(event)),
        )
    except ValueError as exc:
        _print(str(exc), stream=sys.stderr)
        return EXIT_LOCAL
    logger.warning("MQTT bridge for line %s: %s", args.line, bridge.topics)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C or SIGTERM: `offline`, then stop
        bridge.run()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s station_client: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.token:
        _print("A token is needed: --token TOKEN or $STATION_TOKEN.", stream=sys.stderr)
        return EXIT_LOCAL
    run = {"capture": _capture, "flush": _flush, "watch": _watch, "mqtt": _mqtt}[args.command]
    with (
        Buffer(args.buffer) as buffer,
        StationClient(args.url, args.token, buffer=buffer) as client,
    ):
        return run(args, client)
