"""What one input writes: stable output names, atomic image/text writes, streamed outputs, and
removal of everything an input wrote when it fails (no partial outputs)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceflex.io.files import InputFiles, OutputError, commit, temp_path, write_text
from faceflex.io.images import save_image
from faceflex.io.inputs import InputItem

NAME_LIMIT = 255  # bytes in one file name on common file systems


class OutputNames:
    """Stable output paths: ``<out_dir>/<relative parent>/<stem>.<product>.<ext>``.

    ``relative`` is the input's path inside a folder input (its name for a file input). When two
    inputs would get the same name, the later one (in input order) gets ``-2``, ``-3``, ... added
    to its stem. A name longer than the file system allows keeps the start of the stem and adds
    ``~`` and 8 hex digits of the full stem's hash.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self._stems: dict[Path, Path] = {}
        self._taken: set[Path] = set()

    def stem(self, item: InputItem) -> Path:
        """The output stem of an input, without product or extension (fixed on first use)."""
        if item.path not in self._stems:
            base = self.out_dir / item.relative.parent / item.relative.stem
            stem, n = base, 1
            while stem in self._taken:
                n += 1
                stem = base.with_name(f"{base.name}-{n}")
            self._taken.add(stem)
            self._stems[item.path] = stem
        return self._stems[item.path]

    def fix(self, item: InputItem, stem: Path) -> None:
        """Use ``stem`` for ``item`` (a stem another :class:`OutputNames` chose for the batch)."""
        self._stems[item.path] = stem
        self._taken.add(stem)

    def path(self, item: InputItem, product: str, ext: str) -> Path:
        """Output path for one product of an input."""
        stem = self.stem(item)
        tail = f".{product}.{ext.lstrip('.')}"
        name = stem.name + tail
        if len(os.fsencode(name)) > NAME_LIMIT:
            digest = hashlib.sha1(os.fsencode(stem.name)).hexdigest()[:8]
            room = NAME_LIMIT - len(os.fsencode(tail)) - 9
            short = os.fsencode(stem.name)[: max(room, 1)].decode("utf-8", "ignore") or "x"
            name = f"{short}~{digest}{tail}"
        return stem.with_name(name)


class Outputs:
    """The files one input produces; every write is atomic, and all of them are removed if the input fails."""

    def __init__(self, item: InputItem, names: OutputNames, jpeg_quality: int, protected: InputFiles) -> None:
        self.item, self.names, self.jpeg_quality, self.protected = item, names, jpeg_quality, protected
        self.written: list[dict] = []
        self._open: list = []

    def _record(self, path: Path, product: str, info: dict | None) -> Path:
        self.written.append({"path": str(path), "product": product, **(info or {})})
        return path

    def image(self, product: str, rgb: np.ndarray, ext: str, alpha: np.ndarray | None = None, info: dict | None = None) -> Path:
        """Save a picture ``<stem>.<product>.<ext>`` (alpha kept where the format allows; quality from the config)."""
        path = self.names.path(self.item, product, ext)
        save_image(rgb, path, alpha=alpha, jpeg_quality=self.jpeg_quality, protected=self.protected)
        return self._record(path, product, info)

    def text(self, product: str, ext: str, text: str, info: dict | None = None) -> Path:
        path = self.names.path(self.item, product, ext)
        write_text(text, path, protected=self.protected)
        return self._record(path, product, info)

    def stream(self, product: str, ext: str, opener: Callable[[Path], object], info: dict | None = None):
        """A streamed output (a video, a frame log): ``opener(path)`` must return an object with
        ``close()`` (moves the file into place) and ``abort()`` (drops it). Closed by :meth:`finish`."""
        path = self.names.path(self.item, product, ext)
        if path in self.protected:
            raise OutputError(f"{path}: refusing to overwrite an input file")
        stream = opener(path)
        self._open.append((stream, path, product, info))
        return stream

    def finish(self) -> None:
        """Close every stream (their files appear only now)."""
        while self._open:
            stream, path, product, info = self._open.pop(0)
            stream.close()
            self._record(path, product, info)

    def discard(self) -> None:
        """Drop open streams and remove every file written for this input (no partial outputs)."""
        for stream, *_ in self._open:
            try:
                stream.abort()
            except Exception:  # noqa: BLE001 - best effort while failing anyway
                pass
        self._open.clear()
        for entry in self.written:
            Path(entry["path"]).unlink(missing_ok=True)
        self.written.clear()


class TextStream:
    """A text output written line by line to a temporary file and moved into place on ``close``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp = temp_path(path)
        self.handle = open(self.temp, "x", encoding="utf-8")

    def write(self, text: str) -> None:
        self.handle.write(text)

    def close(self) -> Path:
        self.handle.close()
        return commit(self.temp, self.path)

    def abort(self) -> None:
        self.handle.close()
        self.temp.unlink(missing_ok=True)
