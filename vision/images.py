"""Decoding and checking image bytes and files: the one door every image and mask comes through."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

# MPO is a JPEG with more pictures after the first (what many phone cameras write): its first
# frame is an ordinary JPEG, and that is the one decoded.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "WEBP"})
# The default pixel cap (16 MP, more than stations send): checked from the header, before any
# pixel is decoded, so a small file that would decode to gigabytes costs nothing.
DEFAULT_MAX_PIXELS = 16_000_000
ERROR_CODES = frozenset({"empty", "not_image", "truncated", "too_large", "unsupported"})

# Magic numbers of the accepted formats: bytes that start like one of them but cannot be opened
# were cut short, which a station integrator should hear as "truncated", not "not an image".
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"RIFF")


class ImageError(ValueError):
    """An image that cannot be used, with a stable `code` for APIs and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown ImageError code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message


def image_sha256(data: bytes) -> str:
    """Hex sha256 of the encoded bytes: the content address of a stored capture."""
    return hashlib.sha256(data).hexdigest()


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int | None = None
) -> np.ndarray:
    """Decode JPEG/PNG/BMP/WebP bytes into an (H, W, 3) uint8 RGB array, EXIF orientation applied.
    A multi-picture JPEG (MPO) or an animated PNG/WebP gives its first frame.

    Raises ImageError when the bytes are empty, not an image, cut short, too large (checked from
    the header before any pixel is decoded) or in another format.
    """
    image = _open_checked(data, max_pixels=max_pixels, max_bytes=max_bytes, load=False)
    pixels = _jpeg_pixels(image, data)
    if pixels is not None:
        return pixels
    _load_checked(image)
    return _to_rgb(image)


# JPEG modes libjpeg-turbo turns into RGB exactly as Pillow does (colour and grayscale).
_FAST_JPEG_MODES = frozenset({"RGB", "L"})
_EXIF_ORIENTATION = 0x0112


def _jpeg_pixels(image: Image.Image, data: bytes) -> np.ndarray | None:
    """An ordinary JPEG's RGB pixels decoded by simplejpeg straight into a numpy array, or None
    for anything else (other formats, CMYK, an EXIF turn, a decoding error), which Pillow then
    decodes and checks as before.

    Both run libjpeg-turbo with the same IDCT and upsampling, so the pixels are the same bit
    for bit (a test compares them on the datasets' images and every subsampling); Pillow's
    path costs a copy into its own buffer, a repacking to RGB and another copy: 2.3 ms of a
    1024x576 capture against 1.4 ms. `strict` makes a cut-short file an error here, so the
    fallback reports it as truncated."""
    if image.format not in ("JPEG", "MPO") or image.mode not in _FAST_JPEG_MODES:
        return None
    try:
        if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            return None
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except Exception:  # malformed EXIF, a corrupt or cut-short file: Pillow's path says which
        return None
    if pixels.shape[:2] != (image.height, image.width):  # never seen; Pillow would know best
        return None
    return pixels


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode an image file; the ImageError message names the file."""
    path = Path(path)
    try:
        return decode_image(path.read_bytes(), max_pixels=max_pixels)
    except ImageError as error:
        raise ImageError(error.code, f"{path}: {error.message}") from None


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as a bool (H, W) array, non-zero = defect; `size` (W, H) resizes it
    with nearest neighbour so it lines up with its image."""
    path = Path(path)
    try:
        image = _open_checked(path.read_bytes(), max_pixels=DEFAULT_MAX_PIXELS, max_bytes=None)
    except ImageError as error:
        raise ImageError(error.code, f"{path}: {error.message}") from None
    if image.mode not in ("L", "RGB") and not image.mode.startswith("I"):
        # Palette, 1-bit and alpha masks: compare the colours, never the alpha channel.
        image = image.convert("RGB")
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        pixels = pixels.max(axis=2)
    mask = pixels != 0
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(
            tuple(size), Image.Resampling.NEAREST
        )
        mask = np.asarray(resized) != 0
    return mask


def image_size(path: str | Path) -> tuple[int, int]:
    """(W, H) of an image file as decode_image would return it, read from the header only."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError) as error:
        raise ImageError("not_image", f"{path}: cannot read the image header ({error})") from None
    # EXIF orientations 5-8 turn the picture a quarter, so decode_image swaps width and height.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB image."""
    buffer = io.BytesIO()
    _from_array(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 RGB image, or of an (H, W) uint8 or bool mask
    (True is written as 255)."""
    buffer = io.BytesIO()
    _from_array(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _open_checked(
    data: bytes, *, max_pixels: int, max_bytes: int | None, load: bool = True
) -> Image.Image:
    """The image opened and checked from its header (format, pixel count); with `load`, its
    pixels decoded and turned upright too (`_load_checked`)."""
    if not data:
        raise ImageError("empty", "the image is empty (0 bytes)")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(
            "too_large", f"the image is {len(data)} bytes, more than the limit of {max_bytes}"
        )
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError("too_large", "the image has far too many pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        if data.startswith(_SIGNATURES):
            raise ImageError("truncated", "the image file is cut short (truncated)") from None
        raise ImageError("not_image", "the data is not an image (expected JPEG or PNG)") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageError(
            "unsupported",
            f"{image.format} images are not accepted (expected JPEG or PNG)",
        )
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            "too_large",
            f"the image is {width}x{height} = {width * height} pixels, "
            f"more than the limit of {max_pixels}",
        )
    if width == 0 or height == 0:
        raise ImageError("not_image", f"the image has no pixels ({width}x{height})")
    if load:
        _load_checked(image)
    return image


def _load_checked(image: Image.Image) -> None:
    """Decode the pixels (ImageError when the file is cut short) and apply the EXIF turn."""
    try:
        # Pillow raises on a short JPEG/PNG only while ImageFile.LOAD_TRUNCATED_IMAGES is False
        # (its default); we never change that global.
        image.load()
        # In place: without an orientation tag nothing is copied (the copy cost ~0.15 ms of a
        # 1024x576 capture); with one, the image is turned as before.
        ImageOps.exif_transpose(image, in_place=True)
    except (OSError, SyntaxError, ValueError, EOFError):
        raise ImageError(
            "truncated", "the image file is cut short or corrupt (truncated)"
        ) from None


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode.startswith("I") or image.mode == "F":
        gray = _high_depth_to_uint8(np.asarray(image))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        # Alpha is dropped, not composited: the colour channels are what the camera saw.
        if "transparency" in image.info:
            image = image.convert("RGBA")
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def _high_depth_to_uint8(pixels: np.ndarray) -> np.ndarray:
    # 16-bit grayscale PNGs arrive as mode I/I;16; Pillow's own convert("L") clips them to 255
    # instead of scaling, which would turn a normal 16-bit photo white.
    return np.clip(pixels.astype(np.float64) * (255.0 / 65535.0) + 0.5, 0, 255).astype(np.uint8)


def _from_array(image: np.ndarray) -> Image.Image:
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    ):
        raise ValueError(
            f"expected an (H, W, 3) or (H, W) uint8 array, got {image.shape} {image.dtype}"
        )
    return Image.fromarray(np.ascontiguousarray(image))
