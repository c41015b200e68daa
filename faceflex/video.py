"""Video in and out with PyAV (its wheel bundles FFmpeg and its codecs)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceflex.io import InputError


@dataclass(frozen=True)
class Frame:
    index: int  # frame number from 0
    time: float  # seconds
    rgb: np.ndarray  # (H, W, 3) uint8


def iter_frames(path: str | os.PathLike, every: int = 1) -> Iterator[Frame]:
    """Every ``every``-th decoded frame of a video file, upright as stored, as RGB.

    Raises :class:`InputError` for a file that is not a readable video.
    """
    import av

    if every < 1:
        raise ValueError("every must be at least 1")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise InputError(path, f"not a readable video ({error.__class__.__name__})") from None
    with container:
        if not container.streams.video:
            raise InputError(path, "no video stream in this file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % every == 0:
                    seconds = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
                    yield Frame(index, seconds, frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as error:
            raise InputError(path, f"video data is corrupt or truncated ({error.__class__.__name__})") from None


class VideoWriter:
    """Writes RGB frames to an H.264 MP4, atomically: the file appears only when ``close`` succeeds."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".mp4", dir=self.path.parent)
        os.close(fd)
        self.temp = Path(temp)
        self.container = av.open(str(self.temp), mode="w", format="mp4")
        self.fps = max(1, round(fps))
        self.stream = None

    def write(self, rgb: np.ndarray) -> None:
        import av

        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.fps)
            self.stream.width, self.stream.height = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2
            self.stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: self.stream.height, : self.stream.width]), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> Path:
        """Flush, close and move the file into place."""
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        os.chmod(self.temp, 0o644)
        os.replace(self.temp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            self.container.close()
        finally:
            self.temp.unlink(missing_ok=True)
