"""Finding inputs: files, folders and glob patterns expanded into a stable, de-duplicated list."""

from __future__ import annotations

import errno
import glob
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})


class InputError(Exception):
    """An input that cannot be used; ``str()`` is one line naming the file and the cause."""

    def __init__(self, path: str | os.PathLike, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


@dataclass(frozen=True)
class InputItem:
    """One input to process: a path, and where its outputs go relative to ``--out-dir``."""

    path: Path
    relative: Path  # output names are built from this (sub-folders of a folder input are mirrored)

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_EXTENSIONS


def check_regular_file(path: Path) -> None:
    """Raise :class:`InputError` unless ``path`` is a regular file (symlinks followed).

    Keeps FIFOs, devices and sockets out (opening a FIFO would block forever) and names symlink
    loops and permission problems in one line.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(path, "no such file" + (" (broken symbolic link)" if os.path.islink(path) else "")) from None
    except PermissionError:
        raise InputError(path, "cannot read: permission denied") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(path, "symbolic link loop") from None
        raise InputError(path, f"cannot read ({os.strerror(error.errno or 0).lower()})") from None
    if stat.S_ISDIR(mode):
        raise InputError(path, "is a folder, not a file")
    if not stat.S_ISREG(mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device or socket"
        raise InputError(path, f"not a regular file ({kind})")


def _identity(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # symlink loops: keep the path as written
        return os.path.abspath(path)


def iter_inputs(
    specs: Iterable[str | os.PathLike], recursive: bool = False, extensions: frozenset[str] = IMAGE_EXTENSIONS
) -> Iterator[InputItem | InputError]:
    """Expand files, folders and glob patterns into input items, in a stable sorted order.

    Files named explicitly are always tried (a bad one fails on its own when it is read); inside
    folders only regular files with ``extensions`` are taken. A spec matching nothing yields an
    :class:`InputError` instead of stopping the batch. The same file reached twice is yielded once.
    """
    seen: set[str] = set()

    def emit(path: Path, relative: Path) -> Iterator[InputItem]:
        key = _identity(path)
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
        elif os.path.lexists(path):
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
