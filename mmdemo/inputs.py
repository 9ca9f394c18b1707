"""Turning whatever a user uploads into an RGB image and a clean caption, or a clear error.

Bad input never crashes the app or a training run: it raises InputError with a message a person can act on.
"""

from __future__ import annotations

import io
import re
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

MIN_SIDE = 8  # smaller images carry no usable content for a 224-px encoder
MAX_PIXELS = 64_000_000  # beyond this PIL's decompression-bomb guard is the right answer
MAX_CAPTION_CHARS = 2_000  # longer captions are cut (the text encoders read at most a few hundred tokens)


class InputError(ValueError):
    """Input that cannot be used, with a message meant for the person who gave it."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: first frame of animations, EXIF orientation applied, transparency
    composited on white, 16-bit and float greyscale rescaled to 0..255, CMYK / palette / LA converted."""
    if getattr(img, "is_animated", False):
        img = next(ImageSequence.Iterator(img)).copy()
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        img = Image.fromarray(a.astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def _reason(e: Exception) -> str:
    """Why a file is not an image, in words, without the path of the file."""
    if isinstance(e, UnidentifiedImageError):
        return "it is not in an image format PIL can decode"
    if isinstance(e, FileNotFoundError):
        return "the file does not exist"
    if isinstance(e, SyntaxError) or "truncated" in str(e) or "broken" in str(e):
        return "the image data is truncated or corrupt"
    return f"{type(e).__name__}"


def load_image(src: Image.Image | str | Path | bytes | np.ndarray) -> Image.Image:
    """Open and normalise an image from a PIL image, a path, raw bytes or an HxW[xC] uint8 array."""
    if src is None:
        raise InputError("No image was given: upload a photo (JPEG, PNG, GIF, WebP, TIFF or BMP).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(src, Image.Image):
                img = src
            elif isinstance(src, np.ndarray):
                img = Image.fromarray(src)
            elif isinstance(src, (bytes, bytearray)):
                img = Image.open(io.BytesIO(src))
            else:
                img = Image.open(Path(src))
            if img.width * img.height > MAX_PIXELS:
                raise InputError(f"The image is {img.width}x{img.height} pixels; the limit is {MAX_PIXELS // 1_000_000} "
                                 f"megapixels. Resize it and try again.")
            img.load()
            rgb = to_rgb(img)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError("The image is too large to decode safely (decompression-bomb guard). Resize it.") from e
    except (UnidentifiedImageError, FileNotFoundError, OSError, ValueError, TypeError, SyntaxError) as e:
        # Say what is wrong with the file, never where the server keeps it (PIL's messages name the path).
        raise InputError(f"The file could not be read as an image ({_reason(e)}). "
                         f"Upload a JPEG, PNG, GIF, WebP, TIFF or BMP file.") from e
    if min(rgb.size) < MIN_SIDE:
        raise InputError(f"The image is only {rgb.width}x{rgb.height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed.")
    return rgb


# Tried in order, each strictly; latin-1 (which maps every byte) is the last resort, so decoding
# never fails. gb18030 sits before cp1252 because the MVSA release is partly in the Chinese
# Windows code page: of its 1,061 non-UTF-8 caption files, 1,059 decode strictly as GBK to the
# right text ("…" as b"\xa1\xad", Japanese and Cyrillic letters), the other 2 as gb18030.
# Western cp1252 text rarely passes a strict GB decode: an accented letter followed by a space,
# a digit or the end of the text is not a valid GB byte pair.
FALLBACK_ENCODINGS: tuple[str, ...] = ("utf-8", "gb18030", "cp1252")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_SPACES = re.compile(r"\s+")


def decode_bytes(raw: bytes, encodings: Sequence[str] = FALLBACK_ENCODINGS) -> str:
    """Decode with the first encoding that fits strictly, else latin-1; strips a BOM. Never raises."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for encoding in encodings:
        try:
            return raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("latin-1")


def clean_text(text: str) -> str:
    """NFC-normalise, drop control / zero-width characters and BOMs, collapse whitespace to one space."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def decode_text(raw: bytes, encodings: Sequence[str] = FALLBACK_ENCODINGS) -> str:
    """Caption bytes -> clean str: UTF-8, else gb18030 / cp1252, else latin-1. Never raises."""
    return clean_text(decode_bytes(raw, encodings))


def clean_caption(caption: str | bytes | None) -> tuple[str, list[str]]:
    """-> (caption, warnings). Normalises Unicode and whitespace, cuts very long captions.
    An empty caption is an InputError: the text-only prediction would be meaningless."""
    if isinstance(caption, (bytes, bytearray)):
        caption = decode_bytes(bytes(caption))
    notes: list[str] = []
    text = clean_text(caption or "")
    if not text:
        raise InputError("The caption is empty: type the text that goes with the image.")
    if len(text) > MAX_CAPTION_CHARS:
        notes.append(f"The caption has {len(text)} characters; only the first {MAX_CAPTION_CHARS} are used.")
        text = text[:MAX_CAPTION_CHARS]
    return text, notes
