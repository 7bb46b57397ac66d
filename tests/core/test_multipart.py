"""One part's bytes found in a whole multipart body, as the station client (httpx) and Django's
test client send them; a body it cannot read surely gives None (the capture is then decoded
after the form is parsed, as before)."""

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from core.multipart import multipart_part

# Bytes that look like the body's own structure must not end the part early.
IMAGE = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n\r\n" + b"\r\n" * 3


def httpx_body(**fields) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST",
        "http://station/",
        data={k: v for k, v in fields.items() if isinstance(v, str)},
        files={k: v for k, v in fields.items() if not isinstance(v, str)},
    )
    return b"".join(request.stream), request.headers["content-type"]


def handmade(*parts: bytes, boundary: bytes = b"b1", end: bytes = b"--\r\n") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary + end


IMAGE_PART = (
    b'Content-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n" + IMAGE
)
LINE_PART = b'content-disposition: form-data; name="line"\r\n\r\nL1'


def test_the_image_and_a_field_of_a_station_clients_body():
    body, content_type = httpx_body(
        line="L1", idempotency_key="k-1", image=("phone.jpg", IMAGE, "image/jpeg")
    )
    assert multipart_part(body, content_type, "image") == IMAGE
    assert multipart_part(body, content_type, "line") == b"L1"
    assert multipart_part(body, content_type, "metadata") is None


def test_the_image_of_djangos_test_client_body():
    body = encode_multipart(BOUNDARY, {"line": "L1", "image": SimpleUploadedFile("a.jpg", IMAGE)})
    assert multipart_part(body, MULTIPART_CONTENT, "image") == IMAGE


def test_a_quoted_boundary_and_lower_case_headers():
    body = handmade(LINE_PART, IMAGE_PART)
    assert multipart_part(body, 'multipart/form-data; boundary="b1"', "image") == IMAGE
    assert multipart_part(body, "multipart/form-data; boundary=b1", "line") == b"L1"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", handmade(IMAGE_PART)),
        ("multipart/form-data", handmade(IMAGE_PART)),  # no boundary
        ("multipart/form-data; boundary=b2", handmade(IMAGE_PART)),  # not this body's
        ("multipart/form-data; boundary=b1", handmade(LINE_PART)),  # no image
        ("multipart/form-data; boundary=b1", handmade(IMAGE_PART, IMAGE_PART)),  # two
        ("multipart/form-data; boundary=b1", handmade(IMAGE_PART)[:-100]),  # cut short
        ("multipart/form-data; boundary=b1", handmade(IMAGE_PART, end=b"")),  # no end
        ("multipart/form-data; boundary=b1", b"garbage" + handmade(IMAGE_PART)),
    ],
    ids=[
        "urlencoded",
        "no-boundary",
        "other-boundary",
        "no-image",
        "two-images",
        "cut-short",
        "unterminated",
        "preamble",
    ],
)
def test_what_it_cannot_read_surely_is_none(content_type, body):
    assert multipart_part(body, content_type, "image") is None
