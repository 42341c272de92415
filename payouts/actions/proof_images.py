"""Images an operator attaches to a payout as proof: only whole, still PNG, JPEG or WebP files.

Partners' tooling decodes whatever is accepted here, so the type comes from the content (never a
file name), the size from the header before any pixel is decoded, and then the image is decoded
in full once.
"""

from __future__ import annotations

import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

from schema.errors import PayoutsError

__all__ = ["ACCEPTED_FORMATS", "ProofImageError", "validated_media_type"]

# Pillow's format name -> the media type stored with the image and put in its data URI.
ACCEPTED_FORMATS: dict[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_ACCEPTED_NAMES = "PNG, JPEG or WebP"
# What Pillow raises on a damaged file, depending on where the damage is and who finds it.
_DAMAGE = (OSError, SyntaxError, ValueError, EOFError, struct.error)


class ProofImageError(PayoutsError, ValueError):
    """An attached file that is not an acceptable proof image."""


def validated_media_type(data: bytes, *, max_bytes: int, max_pixels: int = 40_000_000) -> str:
    """The media type of `data`, if it is one whole, still PNG, JPEG or WebP image within limits.

    Raises `ProofImageError` otherwise. An image over Pillow's own decompression-bomb limit
    (`Image.MAX_IMAGE_PIXELS`) is refused too, when that is lower than `max_pixels`.
    """
    if not data:
        raise ProofImageError("the file is empty")
    if len(data) > max_bytes:
        raise ProofImageError(f"the file is {len(data)} bytes, over the limit of {max_bytes} bytes")
    # Up to twice its limit, Pillow only warns of a possible decompression bomb: refuse that too.
    # The filter is process-wide while this runs: call it from one thread at a time.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                media_type = _accepted_header(image, max_pixels)
                image.verify()
            # verify() reads no pixels and leaves the image unusable: decode them on a fresh open.
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        except UnidentifiedImageError:
            raise ProofImageError(
                f"the file is not an image of a known type; attach a {_ACCEPTED_NAMES} image"
            ) from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as bomb:
            raise ProofImageError(f"the image is too large to decode safely: {bomb}") from None
        except ProofImageError:
            raise  # already worded by _accepted_header; it is a ValueError, one of _DAMAGE
        except _DAMAGE as damage:
            raise ProofImageError(f"the image is truncated or damaged: {damage}") from None
    return media_type


def _accepted_header(image: Image.Image, max_pixels: int) -> str:
    """The media type, once the header shows an accepted still image within the pixel limit."""
    media_type = ACCEPTED_FORMATS.get(image.format or "")
    if media_type is None:
        raise ProofImageError(
            f"the file is a {image.format} image; attach a {_ACCEPTED_NAMES} image"
        )
    width, height = image.size
    if width * height > max_pixels:
        raise ProofImageError(
            f"the image is {width}x{height} pixels, over the limit of {max_pixels} pixels"
        )
    # Every frame may be as large as the limit allows, and only the first would be decoded here.
    if getattr(image, "n_frames", 1) > 1:
        raise ProofImageError("the image is animated; attach a single still image")
    return media_type
