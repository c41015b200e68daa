"""dlib's face descriptor computed by torch: the same numbers as dlib's own network."""

from __future__ import annotations

import numpy as np
import pytest


def _dlib_descriptors(images, landmarks):
    """dlib's own ``compute_face_descriptor`` on the same chips."""
    import dlib

    from faceflex.face.dlib_models import FACE_DESCRIPTOR, model_path
    from faceflex.face.identity import face_chip

    model = dlib.face_recognition_model_v1(str(model_path(FACE_DESCRIPTOR)))
    return np.stack([np.asarray(model.compute_face_descriptor(face_chip(i, lm))) for i, lm in zip(images, landmarks)])


def test_torch_descriptors_are_dlibs(demo_rgb, demo_faces):
    from faceflex.face.identity import face_descriptor, face_descriptors

    landmarks = demo_faces[0].landmarks
    mirrored = np.ascontiguousarray(demo_rgb[:, ::-1])
    mirrored_landmarks = np.stack([demo_rgb.shape[1] - 1 - landmarks[:, 0], landmarks[:, 1]], axis=1)
    darker = (demo_rgb * 0.6).astype(np.uint8)
    images, points = [demo_rgb, mirrored, darker], [landmarks, mirrored_landmarks, landmarks]
    ours = face_descriptors(images, points)
    assert ours.shape == (3, 128) and ours.dtype == np.float64
    assert np.abs(ours - _dlib_descriptors(images, points)).max() < 1e-5
    assert np.abs(face_descriptor(demo_rgb, landmarks) - ours[0]).max() < 1e-5  # one at a time = in a batch
    assert np.linalg.norm(ours[0] - ours[1]) > 1e-3  # the mirror is a different input, not a cached answer
    assert face_descriptors([], []).shape == (0, 128)


def test_a_file_that_is_not_dlibs_network_is_refused(tmp_path):
    from faceflex.models.face_descriptor_net import load_face_descriptor_net

    path = tmp_path / "other.dat"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ValueError, match="not dlib's face recognition model"):
        load_face_descriptor_net(path)


def test_dlib_integer_packing_and_zero_filled_addition():
    import torch

    from faceflex.models.face_descriptor_net import _add_zero_filled, _packed_int

    assert _packed_int(0) == b"\x01\x00" and _packed_int(2) == b"\x01\x02" and _packed_int(4736) == b"\x02\x80\x12"
    a, b = torch.ones(1, 2, 3, 3), torch.ones(1, 1, 4, 4)
    total = _add_zero_filled(a, b)
    assert total.shape == (1, 2, 4, 4)
    assert total[0, 0, :3, :3].eq(2).all() and total[0, 0, 3].eq(1).all() and total[0, 1, 3].eq(0).all()
