"""One part's bytes out of a multipart/form-data body already in memory (RFC 7578), found by a
plain scan, for work started on a request's behalf before the framework parses it (the capture's
image decoded early, core/asgi_threads.py). Whoever uses what it found checks it against the
form as Django parsed it, so a body this scan reads otherwise only costs that head start."""

from django.utils.http import parse_header_parameters

MAX_BOUNDARY = 70  # RFC 2046


def multipart_part(body: bytes, content_type: str, name: str) -> bytes | None:
    """The content of the one part named `name`; None for another content type, no such part,
    several, or a body that does not end as multipart bodies do."""
    kind, params = parse_header_parameters(content_type)
    boundary = params.get("boundary", "").encode("latin-1", "replace")
    if kind != "multipart/form-data" or not 0 < len(boundary) <= MAX_BOUNDARY:
        return None
    marker = b"--" + boundary
    if not body.startswith(marker):
        return None
    delimiter = b"\r\n" + marker
    found: tuple[int, int] | None = None
    start = len(marker)
    while not body.startswith(b"--", start):  # "--" after a delimiter closes the body
        headers_start = body.find(b"\r\n", start) + 2  # past the delimiter's line
        headers_end = body.find(b"\r\n\r\n", headers_start - 2)
        if headers_start < 2 or headers_end < 0:
            return None
        end = body.find(delimiter, headers_end + 4)
        if end < 0:
            return None
        if _part_name(body[headers_start:headers_end]) == name:
            if found is not None:
                return None
            found = (headers_end + 4, end)
        start = end + len(delimiter)
    return body[found[0] : found[1]] if found else None


def _part_name(headers: bytes) -> str | None:
    for line in headers.decode("latin-1").split("\r\n"):
        field, _, value = line.partition(":")
        if field.strip().lower() == "content-disposition":
            kind, params = parse_header_parameters(value.strip())
            return params.get("name") if kind == "form-data" else None
    return None
