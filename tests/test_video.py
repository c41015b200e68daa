"""Video frames in and out (PyAV): sampling every Nth frame, atomic writes, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from faceflex.io.inputs import InputError
from faceflex.io.video import VideoWriter, iter_frames


def make_clip(path, frames: int = 10, size=(96, 64)):
    writer = VideoWriter(path, 10)
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, : (i + 1) * size[0] // frames] = 200  # a bar growing frame by frame
        writer.write(frame)
    return writer.close()


def test_write_then_read_every_third_frame(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4")
    frames = list(iter_frames(clip, every=3))
    assert [f.index for f in frames] == [0, 3, 6, 9]
    assert frames[0].rgb.shape == (64, 96, 3)
    assert frames[1].time < frames[2].time
    widths = [(f.rgb[32, :, 0] > 100).sum() for f in frames]
    assert widths == sorted(widths) and widths[-1] > 80
    assert not list(tmp_path.glob(".*.mp4"))  # no temp file left


def test_not_a_video_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    with pytest.raises(InputError, match="not a readable video"):
        list(iter_frames(bad))


def test_aborted_writer_leaves_nothing(tmp_path):
    writer = VideoWriter(tmp_path / "out.mp4", 5)
    writer.write(np.zeros((32, 32, 3), np.uint8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
