"""Photos in and out: any image loaded upright as 8-bit RGB (+ alpha), written atomically."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceflex.io.files import InputFiles, write_atomic
from faceflex.io.inputs import InputError, check_regular_file

DEFAULT_MAX_PIXELS = 100_000_000
ALPHA_FORMATS = frozenset({".png", ".webp", ".tif", ".tiff"})
QUALITY_FORMATS = frozenset({".jpg", ".jpeg", ".webp"})
_PILLOW_LIMIT = threading.Lock()


@dataclass(frozen=True)
class LoadedImage:
    """A photo as loaded: upright (EXIF applied), 8-bit RGB, and its alpha channel if it had one."""

    path: Path
    rgb: np.ndarray  # (H, W, 3) uint8, transparency composited on white
    alpha: np.ndarray | None = None  # (H, W) uint8, or None for opaque images
    note: str | None = None  # e.g. "animated GIF: 12 frames; only the first is used"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Switch Pillow's own decompression-bomb guard off: :func:`load_image` applies the one
    documented limit (``input.max_pixels``) itself, from the header, before decoding."""
    with _PILLOW_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Load a photo upright as 8-bit RGB; raise :class:`InputError` with a clear cause otherwise.

    EXIF orientation is applied first. Grey, palette, CMYK, 16-bit and float images are converted
    to 8-bit RGB (16-bit values scaled, not clipped); transparent images are composited on white
    and their alpha kept. Images over ``max_pixels`` are refused before being decoded. Of a
    multi-frame file (animated GIF/WebP, multi-page TIFF) the first frame is used, and ``note`` says so.
    """
    path = Path(path)
    check_regular_file(path)
    try:
        with _own_pixel_limit(), Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(
                    path,
                    f"image too large ({width}x{height} = {width * height / 1e6:.0f} MP, "
                    f"limit input.max_pixels = {max_pixels / 1e6:.0f} MP)",
                )
            frames = getattr(image, "n_frames", 1)
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb, alpha = _to_rgb8(image)
    except InputError:
        raise
    except PermissionError:
        raise InputError(path, "cannot read: permission denied") from None
    except UnidentifiedImageError:
        raise InputError(path, "not an image (unrecognised format)") from None
    except OSError as error:
        message = str(error)
        if error.errno == errno.ELOOP:
            raise InputError(path, "symbolic link loop") from None
        if "truncated" in message.lower():
            raise InputError(path, "truncated image file") from None
        raise InputError(path, f"corrupt image ({message or type(error).__name__})") from None
    except (SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, MemoryError) as error:
        raise InputError(path, f"corrupt image ({error or type(error).__name__})") from None
    note = f"{frames} frames in this file; only the first is used" if frames > 1 else None
    return LoadedImage(path=path, rgb=rgb, alpha=alpha, note=note)


def _to_rgb8(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert any Pillow mode to (RGB uint8 array, alpha uint8 array or None)."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if values.max(initial=0) > 255 or mode.startswith("I;16") else 1.0
        grey = np.clip(np.rint(values / scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return np.array(image.convert("RGB")), None
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
    alpha = rgba[:, :, 3:4] / 255.0
    rgb = rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), rgba[:, :, 3].astype(np.uint8)


def save_image(
    rgb: np.ndarray,
    path: str | os.PathLike,
    *,
    alpha: np.ndarray | None = None,
    jpeg_quality: int = 95,
    protected: InputFiles | Iterable[str | os.PathLike] = (),
) -> Path:
    """Write an RGB uint8 array atomically (temp file + rename); the format follows the suffix.

    ``alpha`` (H, W) uint8 is kept for formats that carry it (PNG, WebP, TIFF) and dropped for the
    others (the RGB is already composited on white). ``jpeg_quality`` (1-100) applies to JPEG and
    WebP. ``protected`` lists input files that must never be overwritten.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {suffix!r}")
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if alpha is not None and suffix in ALPHA_FORMATS:
        image.putalpha(Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8), "L"))
    options: dict = {"quality": int(jpeg_quality)} if suffix in QUALITY_FORMATS else {}
    return write_atomic(path, lambda handle: image.save(handle, format=fmt, **options), protected)
