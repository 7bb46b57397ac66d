"""The station's side of the inspection platform, with no Django: a client library and CLI
that post captures with retries and an offline buffer, wait for verdicts, and apply the line's
outage policy (hold, reject, or the edge ONNX model) while the server cannot be reached.

    from station_client import Buffer, StationClient

    with Buffer("station-buffer.sqlite3") as buffer:
        client = StationClient("https://inspect.example", token, buffer=buffer)
        result = client.capture(jpeg_bytes, line="L1", wait=60)
        result.status, result.verdict  # decided/pending/buffered, pass/fail/None
"""

from station_client.buffer import Buffer, BufferedCapture
from station_client.client import (
    CaptureRejected,
    CaptureResult,
    FlushResult,
    StationClient,
    post_capture,
)
from station_client.retry import RETRY_STATUSES, RetryPolicy, ServerUnavailable

__all__ = [
    "RETRY_STATUSES",
    "Buffer",
    "BufferedCapture",
    "CaptureRejected",
    "CaptureResult",
    "FlushResult",
    "RetryPolicy",
    "ServerUnavailable",
    "StationClient",
    "post_capture",
]
