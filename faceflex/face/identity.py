"""Identity: dlib's 128-d face descriptor, to check that an edit keeps the person recognisable."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from faceflex.face.dlib_models import face_descriptor_net, landmark_predictor
from faceflex.models.face_descriptor_net import CHIP_PADDING, CHIP_SIZE, stage_shape

SAME_PERSON = 0.6  # dlib's documented threshold on the Euclidean distance between descriptors


def face_chip(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib's 150 x 150 RGB face chip (uint8) of the face whose 68 landmarks (photo pixels) are
    given: the landmarks are fitted again on this image from their bounding box, as dlib's
    descriptor expects its own shape predictor's points."""
    import dlib

    points = np.asarray(landmarks, dtype=np.float64)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    box = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
    image = np.ascontiguousarray(rgb, dtype=np.uint8)
    shape = landmark_predictor()(image, box)
    return np.asarray(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


def chip_matrix(landmarks: np.ndarray) -> np.ndarray:
    """(2, 3) float64 affine map from dlib's 150-px face chip to the image the 68 ``landmarks`` are in
    (pixel centres at integers; ``p = M[:, :2] @ q + M[:, 2]``, q a chip pixel, p an image point):
    the chip ``dlib.get_face_chip`` extracts for these points (rounded to whole pixels, as dlib keeps
    them; no refit), so a network can
    read the same chip differentiably (``grid_sample``). dlib's chip spans its rectangle edge to
    edge: 150 samples from its left to its right side, rotated about its centre."""
    import dlib

    points = np.asarray(landmarks, dtype=np.float64)
    parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in points])
    shape = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), parts)
    details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    rect = details.rect
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    step = (rect.right() - rect.left()) / (CHIP_SIZE - 1)
    c, s = np.cos(details.angle), np.sin(details.angle)
    linear = step * np.array([[c, -s], [s, c]])
    return np.hstack([linear, (centre - linear @ np.full(2, (CHIP_SIZE - 1) / 2))[:, None]])


@torch.inference_mode()
def dlib_features(images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], tap: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors (N, 128) float64, stages (N, C, H, W) float32) of the faces with these
    landmarks in these RGB images (one face per pair), computed in one batch: dlib's descriptor
    (``compute_face_descriptor`` without jitter, to within 1e-6) and the activations of its
    residual block ``tap`` on the same chip (:func:`~faceflex.models.face_descriptor_net.stage_shape`; the
    descriptor does not depend on ``tap``),
    which the gender-and-age network reads (:class:`~faceflex.models.face_descriptor_net.GenderAgeNet`)."""
    if len(images) == 0:
        return np.zeros((0, 128)), np.zeros((0, *stage_shape(tap)), np.float32)
    chips = np.stack([face_chip(image, points) for image, points in zip(images, landmarks)])
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
    (stages,), descriptors = face_descriptor_net().features(x, taps=(tap,))
    return descriptors.double().numpy(), stages.float().contiguous().numpy()


def face_descriptors(images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 128) float64 descriptors of the faces with these landmarks in these RGB images
    (:func:`dlib_features`)."""
    return dlib_features(images, landmarks)[0]


def face_descriptor(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The descriptor (128,) of the face whose 68 landmarks are given (:func:`face_descriptors`)."""
    return face_descriptors([rgb], [landmarks])[0]


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (< 0.6: the same person, by dlib's rule)."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
