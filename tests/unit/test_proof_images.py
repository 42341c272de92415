"""An attached proof image is accepted only as one whole, still PNG, JPEG or WebP within limits."""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib

import pytest
from PIL import Image

from payouts.actions.proof_images import ProofImageError, validated_media_type

MAX_BYTES = 1_000_000


def _image(image_format: str, size: tuple[int, int] = (64, 48)) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    encoded = io.BytesIO()
    image.save(encoded, format=image_format)
    return encoded.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims the given size in its header and carries no pixels at all."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"")


def _refusal(data: bytes, **limits: int) -> str:
    with pytest.raises(ProofImageError) as refused:
        validated_media_type(data, **{"max_bytes": MAX_BYTES, **limits})
    return str(refused.value)


@pytest.mark.parametrize(
    ("image_format", "media_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")],
)
def test_each_accepted_format_gives_its_media_type(image_format: str, media_type: str) -> None:
    assert validated_media_type(_image(image_format), max_bytes=MAX_BYTES) == media_type


@pytest.mark.parametrize("image_format", ["GIF", "BMP"])
def test_another_image_format_is_refused_by_name(image_format: str) -> None:
    assert f"is a {image_format} image" in _refusal(_image(image_format))


@pytest.mark.parametrize(
    "data",
    [
        random.Random(7).randbytes(4096),
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    ],
    ids=["random-bytes", "svg-text"],
)
def test_a_file_of_no_known_image_type_is_refused(data: bytes) -> None:
    assert "not an image of a known type" in _refusal(data)


def test_an_empty_file_is_refused() -> None:
    assert "empty" in _refusal(b"")


def test_a_truncated_png_is_refused() -> None:
    png = _image("PNG", (200, 200))
    assert "truncated" in _refusal(png[: len(png) * 2 // 3])


def test_a_truncated_jpeg_is_refused() -> None:
    jpeg = _image("JPEG", (200, 200))
    assert "truncated" in _refusal(jpeg[: len(jpeg) // 2])


def test_a_file_over_the_byte_limit_is_refused_naming_the_limit() -> None:
    png = _image("PNG")
    assert f"limit of {len(png) - 1} bytes" in _refusal(png, max_bytes=len(png) - 1)


def test_an_image_over_the_pixel_limit_is_refused_naming_the_limit() -> None:
    assert "64x48 pixels, over the limit of 3000 pixels" in _refusal(_image("PNG"), max_pixels=3000)


def test_the_pixel_limit_is_read_from_the_header_before_any_pixel_is_decoded() -> None:
    # 50 million pixels claimed by a file of a few dozen bytes, under Pillow's own limit.
    assert "over the limit of 40000000 pixels" in _refusal(_png_header(10_000, 5_000))


def test_a_decompression_bomb_is_refused() -> None:
    assert "too large to decode safely" in _refusal(_png_header(100_000, 100_000))


def test_pillows_bomb_warning_refuses_even_where_warnings_are_ignored() -> None:
    # 100 million pixels: Pillow only warns below twice its limit of about 89 million.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refusal = _refusal(_png_header(100_000, 1_000), max_pixels=200_000_000)
    assert "too large to decode safely" in refusal


def test_an_animated_image_is_refused() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    animated = io.BytesIO()
    frames[0].save(animated, format="PNG", save_all=True, append_images=frames[1:])
    assert "animated" in _refusal(animated.getvalue())
