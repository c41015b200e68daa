"""Identity: dlib's 128-d face descriptor, to check that an edit keeps the person recognisable."""

from __future__ import annotations

import numpy as np

from faceflex.face.dlib_models import face_descriptor_model, landmark_predictor

SAME_PERSON = 0.6  # dlib's documented threshold on the Euclidean distance between descriptors


def face_descriptor(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The descriptor of the face whose 68 landmarks are given (landmarks re-fitted on this image)."""
    import dlib

    points = np.asarray(landmarks, dtype=np.float64)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    box = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
    image = np.ascontiguousarray(rgb, dtype=np.uint8)
    shape = landmark_predictor()(image, box)
    return np.asarray(face_descriptor_model().compute_face_descriptor(image, shape), dtype=np.float64)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (< 0.6: the same person, by dlib's rule)."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
