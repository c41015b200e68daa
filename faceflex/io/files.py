"""Writing files safely: atomic replacement, short temporary names, stale-temp clean-up, a folder lock.

Every file faceflex writes goes through :func:`write_atomic` (or :func:`temp_path` +
:func:`commit` for streams such as videos): the data goes to a hidden temporary file beside the
target, named ``.faceflex-<random>.tmp`` whatever the target's length, and is renamed into place
only when complete. A run killed mid-write leaves at most such a temporary file, which the next run
writing into that folder removes (:func:`remove_stale_temps`, called under :class:`FolderLock`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".faceflex-"
TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".faceflex.lock"


class OutputError(Exception):
    """An output that cannot be written; ``str()`` is one line naming the path and the cause."""


def describe_os_error(error: OSError) -> str:
    """A short human cause for an OSError (``no space left on device``, ``permission denied`` ...)."""
    if error.errno is not None:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__


class InputFiles:
    """The batch's input files, which no output may replace.

    A path is one of them when it names the same file (device and inode, symlinks followed, as
    :func:`os.path.samefile` compares), so another name for an input is caught too. Checking a path
    costs one ``stat``: a path that does not exist yet is no input, and the inputs' identities are
    read only the first time an existing path is checked, in the process that checks (they differ
    between machines sharing a file system, so they are not pickled with the paths).
    """

    def __init__(self, paths: Iterable[str | os.PathLike] = ()) -> None:
        self.paths = tuple(Path(p) for p in paths)
        self._ids: set[tuple[int, int]] | None = None

    def __getstate__(self) -> dict:
        return {"paths": self.paths}

    def __setstate__(self, state: dict) -> None:
        self.paths, self._ids = state["paths"], None

    def __contains__(self, path: object) -> bool:
        try:
            status = os.stat(path)  # type: ignore[arg-type]
        except (OSError, TypeError, ValueError):
            return False
        if self._ids is None:
            self._ids = set()
            for input_path in self.paths:
                with contextlib.suppress(OSError):
                    found = os.stat(input_path)
                    self._ids.add((found.st_dev, found.st_ino))
        return (status.st_dev, status.st_ino) in self._ids


def as_input_files(protected: InputFiles | Iterable[str | os.PathLike]) -> InputFiles:
    """``protected`` as :class:`InputFiles` (a list of paths is wrapped)."""
    return protected if isinstance(protected, InputFiles) else InputFiles(protected)


def temp_path(path: Path) -> Path:
    """A fresh hidden temporary path beside ``path`` (its parent folders are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent / f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}"


def commit(temp: Path, path: Path) -> Path:
    """Move a finished temporary file into place (readable by everyone, as a normal file)."""
    os.chmod(temp, 0o644)
    os.replace(temp, path)
    return path


def write_atomic(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], protected: InputFiles | Iterable[str | os.PathLike] = ()
) -> Path:
    """Call ``write(binary_handle)`` on a temporary file beside ``path``, then rename it into place.

    A failure (or an interruption) leaves no partial file behind. Refuses to replace any of the
    ``protected`` files (the inputs, :class:`InputFiles` or paths) with :class:`OutputError`.
    """
    path = Path(path)
    if path in as_input_files(protected):
        raise OutputError(f"{path}: refusing to overwrite an input file")
    temp = temp_path(path)
    try:
        with open(temp, "xb") as handle:
            write(handle)
        return commit(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text(text: str, path: str | os.PathLike, protected: InputFiles | Iterable[str | os.PathLike] = ()) -> Path:
    """Write a UTF-8 text file atomically."""
    return write_atomic(Path(path), lambda handle: handle.write(text.encode("utf-8")), protected)


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files left in ``folder`` (and its sub-folders) by a killed run; returns the count.

    Only names faceflex itself makes (``.faceflex-*.tmp``) are touched. Call it while holding the
    folder's :class:`FolderLock`, so that no running faceflex is still writing them.
    """
    removed = 0
    if not folder.is_dir():
        return 0
    for temp in folder.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        try:
            temp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


class FolderLock:
    """An exclusive advisory lock on a folder (``<folder>/.faceflex.lock``), for one writing run at a time.

    Released when the process ends, however it ends (kill -9 included), so a stale lock file never
    blocks a later run. Raises :class:`OutputError` when another process holds it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl

        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.folder}: cannot write here (not a folder)")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputError(f"{self.folder}: cannot write here ({describe_os_error(error)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputError(
                    f"{self.folder}: another faceflex run (pid {holder}) is writing into this folder; "
                    "wait for it or choose another --out-dir"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
