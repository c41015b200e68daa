"""Images in and out: finding inputs, loading any photo as 8-bit RGB, writing outputs atomically."""

from __future__ import annotations

import glob
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
DEFAULT_MAX_PIXELS = 100_000_000


class InputError(Exception):
    """An input that cannot be used; ``str()`` is one line naming the file and the cause."""

    def __init__(self, path: str | os.PathLike, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


@dataclass(frozen=True)
class LoadedImage:
    """A photo as loaded: upright (EXIF applied), 8-bit RGB, and its alpha channel if it had one."""

    path: Path
    rgb: np.ndarray  # (H, W, 3) uint8, transparency composited on white
    alpha: np.ndarray | None = None  # (H, W) uint8, or None for opaque images

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]


@dataclass(frozen=True)
class InputItem:
    """One input to process: a path, and where its outputs go relative to ``--out-dir``."""

    path: Path
    relative: Path  # output names are built from this (sub-folders of a folder input are mirrored)


def iter_inputs(
    specs: Iterable[str | os.PathLike], recursive: bool = False, extensions: frozenset[str] = IMAGE_EXTENSIONS
) -> Iterator[InputItem | InputError]:
    """Expand files, folders and glob patterns into input items, in a stable sorted order.

    Files named explicitly are always tried; inside folders only files with ``extensions`` are taken.
    A spec matching nothing yields an :class:`InputError` instead of stopping the batch.
    Duplicates (the same file reached twice) are yielded once.
    """
    seen: set[Path] = set()

    def emit(path: Path, relative: Path) -> Iterator[InputItem]:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            yield InputItem(path, relative)

    for spec in specs:
        spec = str(spec)
        path = Path(spec)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if _has_extension(p, extensions) and p.is_file())
            if not files:
                yield InputError(spec, "no image files in this folder" + ("" if recursive else " (try --recursive)"))
            for file in files:
                yield from emit(file, file.relative_to(path))
        elif path.exists() or path.is_symlink():
            yield from emit(path, Path(path.name))
        elif glob.has_magic(spec):
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=recursive))
            files = [m for m in matches if m.is_file()]
            if not files:
                yield InputError(spec, "no file matches this pattern")
            for file in files:
                yield from emit(file, Path(file.name))
        else:
            yield InputError(spec, "no such file or folder")


def _has_extension(path: Path, extensions: frozenset[str]) -> bool:
    return path.suffix.lower() in extensions and not path.name.startswith(".")


def demo_image_path() -> Path:
    """The embedded demo face: matplotlib's public-domain photo of Grace Hopper."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Load a photo upright as 8-bit RGB; raise :class:`InputError` with a clear cause otherwise.

    EXIF orientation is applied first. Grey, palette, CMYK, 16-bit and float images are converted
    to 8-bit RGB (16-bit values scaled, not clipped); transparent images are composited on white
    and their alpha kept. Images over ``max_pixels`` are refused before being decoded.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise InputError(
                        path,
                        f"image too large ({width}x{height} = {width * height / 1e6:.0f} MP, "
                        f"limit {max_pixels / 1e6:.0f} MP; a decompression bomb?)",
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                rgb, alpha = _to_rgb8(image)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not an image") from None
    except PermissionError:
        raise InputError(path, "cannot read: permission denied") from None
    except UnidentifiedImageError:
        raise InputError(path, "not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(path, f"image too large (decompression bomb check: {error})") from None
    except OSError as error:
        message = str(error)
        if "truncated" in message.lower():
            raise InputError(path, "truncated image file") from None
        raise InputError(path, f"corrupt image ({message or type(error).__name__})") from None
    except (SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as error:
        raise InputError(path, f"corrupt image ({error or type(error).__name__})") from None
    return LoadedImage(path=path, rgb=rgb, alpha=alpha)


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
    protected: Iterable[Path] = (),
) -> Path:
    """Write an RGB uint8 array atomically (temp file + rename); the format follows the suffix.

    ``alpha`` is kept for formats that carry it (PNG, WebP, TIFF). ``protected`` lists input files
    that must never be overwritten.
    """
    path = Path(path)
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    suffix = path.suffix.lower()
    if alpha is not None and suffix in (".png", ".webp", ".tif", ".tiff"):
        image.putalpha(Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8), "L"))
    options: dict = {"quality": int(jpeg_quality)} if suffix in (".jpg", ".jpeg", ".webp") else {}
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {suffix!r}")
    return write_atomic(path, lambda handle: image.save(handle, format=fmt, **options), protected)


def write_text(text: str, path: str | os.PathLike, protected: Iterable[Path] = ()) -> Path:
    """Write a text file atomically (UTF-8)."""
    return write_atomic(Path(path), lambda handle: handle.write(text.encode("utf-8")), protected)


def write_atomic(path: Path, write, protected: Iterable[Path] = ()) -> Path:
    """Call ``write(binary_handle)`` on a temp file beside ``path``, then rename it into place.

    A failure leaves no partial file behind. Refuses to replace any of the ``protected`` files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.resolve()
    for other in protected:
        if Path(other).resolve() == target:
            raise ValueError(f"{path}: refusing to overwrite an input file")
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
