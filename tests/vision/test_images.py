import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision.images import (
    ImageError,
    decode_image,
    encode_jpeg,
    encode_png,
    image_sha256,
    image_size,
    load_image,
    load_mask,
)

ROOT = Path(__file__).resolve().parents[2]


def _gradient(width: int = 48, height: int = 32) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 5 % 256, ys * 7 % 256, (xs + ys) * 3 % 256], axis=2).astype(np.uint8)


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_png_round_trip_is_exact():
    image = _gradient()
    decoded = decode_image(encode_png(image))
    assert decoded.dtype == np.uint8
    assert decoded.shape == (32, 48, 3)
    np.testing.assert_array_equal(decoded, image)


def test_jpeg_round_trip_is_close():
    image = np.full((32, 48, 3), (200, 120, 40), np.uint8)
    decoded = decode_image(encode_jpeg(image, quality=95))
    assert decoded.shape == (32, 48, 3)
    assert np.abs(decoded.astype(int) - image).max() <= 4


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1", "CMYK"])
def test_other_modes_become_rgb(mode):
    source = Image.fromarray(_gradient()).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(_save(source, fmt))
    assert decoded.shape == (32, 48, 3)
    assert decoded.dtype == np.uint8


def test_16_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    # A hand-written 16-bit grayscale PNG, as an industrial camera writes it.
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 3, 1, 16, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    decoded = decode_image(data)
    assert decoded.shape == (1, 3, 3)
    assert decoded[0, :, 0].tolist() == [0, 128, 255]


def test_exif_orientation_is_applied():
    source = Image.fromarray(_gradient(48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    data = _save(source, "JPEG", exif=exif.tobytes())
    assert decode_image(data).shape == (48, 32, 3)


def test_empty_bytes():
    with pytest.raises(ImageError) as caught:
        decode_image(b"")
    assert caught.value.code == "empty"


def test_not_an_image():
    with pytest.raises(ImageError) as caught:
        decode_image(b"%PDF-1.7 this is a document, not a photo")
    assert caught.value.code == "not_image"
    assert "not an image" in str(caught.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_refused(fmt, keep):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    data = _save(Image.fromarray(noisy), fmt)
    with pytest.raises(ImageError) as caught:
        decode_image(data[: int(len(data) * keep)])
    assert caught.value.code == "truncated"


def test_header_only_jpeg_is_truncated():
    data = encode_jpeg(_gradient())
    with pytest.raises(ImageError) as caught:
        decode_image(data[:40])
    assert caught.value.code == "truncated"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but carries almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    )


@pytest.mark.parametrize("width, height", [(6000, 4000), (30000, 30000)])
def test_pixel_limit_is_checked_before_decoding(width, height):
    # 24 Mpx is over our limit but under Pillow's own; 900 Mpx would need 2.7 GB decoded.
    with pytest.raises(ImageError) as caught:
        decode_image(_png_header_only(width, height))
    assert caught.value.code == "too_large"


def test_pixel_limit_message_gives_the_size():
    with pytest.raises(ImageError) as caught:
        decode_image(encode_png(_gradient(48, 32)), max_pixels=1000)
    assert caught.value.code == "too_large"
    assert "48x32" in str(caught.value)


def test_byte_limit():
    data = encode_png(_gradient())
    with pytest.raises(ImageError) as caught:
        decode_image(data, max_bytes=len(data) - 1)
    assert caught.value.code == "too_large"
    assert decode_image(data, max_bytes=len(data)).shape == (32, 48, 3)


def test_other_formats_are_unsupported():
    data = _save(Image.fromarray(_gradient()), "GIF")
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert caught.value.code == "unsupported"
    assert "GIF" in str(caught.value)


def test_bmp_and_webp_are_accepted():
    image = _gradient()
    np.testing.assert_array_equal(decode_image(_save(Image.fromarray(image), "BMP")), image)
    lossless = _save(Image.fromarray(image), "WEBP", lossless=True)
    np.testing.assert_array_equal(decode_image(lossless), image)


def test_load_image_names_the_file(tmp_path):
    good = tmp_path / "phone.png"
    good.write_bytes(encode_png(_gradient()))
    assert load_image(good).shape == (32, 48, 3)
    assert image_size(good) == (48, 32)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(encode_jpeg(_gradient())[:100])
    with pytest.raises(ImageError) as caught:
        load_image(broken)
    assert caught.value.code == "truncated"
    assert "broken.jpg" in str(caught.value)


def test_load_mask_is_bool_and_resizes_with_nearest(tmp_path):
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:4] = 1  # a value of 1, not 255, still marks a defect
    path = tmp_path / "mask.png"
    Image.fromarray(mask).save(path)
    loaded = load_mask(path)
    assert loaded.dtype == bool
    np.testing.assert_array_equal(loaded, mask != 0)
    doubled = load_mask(path, size=(12, 8))
    assert doubled.shape == (8, 12)
    np.testing.assert_array_equal(doubled, np.repeat(np.repeat(mask != 0, 2, 0), 2, 1))


def test_load_mask_ignores_alpha(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0, 0] = 255
    path = tmp_path / "mask.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert load_mask(path).sum() == 1


def test_encode_png_of_bool_mask():
    mask = np.zeros((5, 7), bool)
    mask[2, 3] = True
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(mask))))
    assert decoded.shape == (5, 7)
    assert decoded[2, 3] == 255
    assert decoded.sum() == 255


def test_encode_refuses_wrong_arrays():
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((4, 4, 4), np.uint8))


def test_image_sha256():
    assert image_sha256(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_multi_picture_jpeg_gives_its_first_frame():
    first = Image.fromarray(np.full((32, 48, 3), (220, 20, 20), np.uint8))
    second = Image.fromarray(np.full((16, 24, 3), (20, 220, 20), np.uint8))
    data = _save(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    decoded = decode_image(data)
    assert decoded.shape == (32, 48, 3)
    assert decoded[16, 24, 0] > 180 and decoded[16, 24, 1] < 60


def test_a_flat_36_megapixel_png_is_refused_by_default_without_decoding():
    buffer = io.BytesIO()
    Image.new("L", (6000, 6000)).save(buffer, format="PNG", compress_level=9)
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(ImageError) as caught:
        decode_image(buffer.getvalue())
    assert caught.value.code == "too_large"


def test_the_default_pixel_cap_is_16_megapixels():
    with pytest.raises(ImageError) as caught:
        decode_image(_png_header_only(4001, 4000))
    assert caught.value.code == "too_large"
    with pytest.raises(ImageError) as caught:
        decode_image(_png_header_only(4000, 4000))  # 16 MP: past the cap check, then cut short
    assert caught.value.code == "truncated"


JPEG_KINDS = [
    ("RGB", {"subsampling": 0}),  # 4:4:4
    ("RGB", {"subsampling": 1}),  # 4:2:2
    ("RGB", {"subsampling": 2, "quality": 90}),  # 4:2:0, what stations send
    ("RGB", {"progressive": True}),
    ("RGB", {"restart_marker_blocks": 4}),
    ("L", {}),  # grayscale (the magnetic tiles)
    ("CMYK", {}),  # not libjpeg-turbo's to turn into RGB: Pillow does
]


@pytest.mark.parametrize(("mode", "options"), JPEG_KINDS)
def test_jpegs_decode_to_the_pixels_pillow_gives(mode, options):
    """The JPEG fast path (simplejpeg) gives Pillow's pixels bit for bit, so a model scores a
    capture as it scored the same file before."""
    image = Image.fromarray(_gradient(97, 61)).convert(mode)
    data = _save(image, "JPEG", **options)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    decoded = decode_image(data)
    assert decoded.shape == (61, 97, 3) and decoded.flags.writeable
    np.testing.assert_array_equal(decoded, expected)


def test_dataset_jpegs_decode_to_the_pixels_pillow_gives():
    images = sorted((ROOT.parent / "shared" / "datasets").glob("*/images/*.jpg"))
    assert len(images) > 100  # shared/datasets beside the checkout (CI copies it there)
    for path in images[::10]:
        data = path.read_bytes()
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(decode_image(data), expected)
