"""Video in and out with PyAV (its wheel bundles FFmpeg and its codecs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from faceflex.io.files import commit, temp_path
from faceflex.io.inputs import InputError, check_regular_file


@dataclass(frozen=True)
class Frame:
    """One decoded frame, upright as stored."""

    index: int  # frame number from 0
    time: float  # seconds
    rgb: np.ndarray  # (H, W, 3) uint8
    rate: Fraction  # the stream's average frame rate (frames per second)


def iter_frames(path: str | os.PathLike, every: int = 1) -> Iterator[Frame]:
    """Every ``every``-th decoded frame of a video file, as RGB.

    Raises :class:`InputError` for a file that is not a readable video, and for one whose data
    stops early (corrupt or truncated): the frames decoded before that point have been yielded.
    """
    import av

    if every < 1:
        raise ValueError("every must be at least 1")
    check_regular_file(Path(path))
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise InputError(path, f"not a readable video ({error.__class__.__name__})") from None
    with container:
        if not container.streams.video:
            raise InputError(path, "no video stream in this file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate or 25)
        decoded = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                if index % every == 0:
                    seconds = float(frame.time) if frame.time is not None else index / float(rate)
                    yield Frame(index, seconds, frame.to_ndarray(format="rgb24"), rate)
        except av.error.FFmpegError as error:
            raise InputError(path, f"video data is corrupt or truncated after frame {decoded} ({error.__class__.__name__})") from None
        declared = int(stream.frames or 0)
        if declared and decoded < declared:
            raise InputError(path, f"video ends early: {decoded} of {declared} frames decoded (corrupt or truncated)")


class VideoWriter:
    """Writes RGB frames to an H.264 MP4 at ``rate`` frames per second, atomically: the file
    appears only when :meth:`close` succeeds; :meth:`abort` drops it."""

    def __init__(self, path: str | os.PathLike, rate: Fraction | float) -> None:
        import av

        self.path = Path(path)
        self.temp = temp_path(self.path)
        self.container = av.open(str(self.temp), mode="w", format="mp4")
        self.rate = Fraction(rate).limit_denominator(1001) if rate > 0 else Fraction(25)
        self.stream = None

    def write(self, rgb: np.ndarray) -> None:
        import av

        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
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
        return commit(self.temp, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            self.container.close()
        finally:
            self.temp.unlink(missing_ok=True)
