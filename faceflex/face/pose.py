"""Head pose (yaw, pitch, roll) from 68 landmarks: a scaled-orthographic fit of a generic 3D face.

The 3D face (``data/face3d68.json``) was recovered from CelebA-HQ's landmarks by
``scripts/make_face3d.py``. Camera frame: x right, y down, z towards the viewer; the rotation is
``Rz(roll) @ Rx(pitch) @ Ry(yaw)`` applied to the model. Signs, as seen in the image: yaw > 0 the
face turns towards the image's right (the person's own left); pitch > 0 the face tilts up;
roll > 0 the face leans clockwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceflex.shipped import shipped_array

FRONTAL_DEGREES = 15.0


def face_model() -> np.ndarray:
    """The generic 3D face, (68, 3), units of the outer-eye-corner distance (read-only)."""
    return shipped_array("face3d68.json", "points")


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) @ Rx(pitch) @ Ry(yaw)`` for angles in degrees."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def rotation_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation built as in :func:`rotation_matrix`."""
    pitch = np.degrees(np.arcsin(np.clip(rotation[2, 1], -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(-rotation[2, 0], rotation[2, 2]))
    roll = np.degrees(np.arctan2(-rotation[0, 1], rotation[1, 1]))
    return float(yaw), float(pitch), float(roll)


def project(points3d: np.ndarray, rotation: np.ndarray, scale: float, translation: np.ndarray) -> np.ndarray:
    """Scaled-orthographic image points (N, 2) of 3D points."""
    return scale * (points3d @ rotation[:2].T) + translation


def fit_rotation(landmarks: np.ndarray, model: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Rotation (3x3) and scale that best project ``model`` onto the 68 ``landmarks``.

    Least-squares 2x3 affine camera, then the nearest scaled pair of orthonormal rows (SVD),
    the third row completing a proper rotation.
    """
    model = face_model() if model is None else model
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (len(model), 2):
        raise ValueError(f"need ({len(model)}, 2) landmarks, got {points.shape}")
    x = points - points.mean(axis=0)
    m = model - model.mean(axis=0)
    affine = np.linalg.lstsq(m, x, rcond=None)[0].T  # (2, 3)
    u, singular, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt
    rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
    return rotation, float(singular.mean())


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees, with a coarse label."""

    yaw: float
    pitch: float
    roll: float

    @property
    def label(self) -> str:
        """frontal, or the dominant direction: left / right / up / down (as seen in the image)."""
        if max(abs(self.yaw), abs(self.pitch)) <= FRONTAL_DEGREES:
            return "frontal"
        if abs(self.yaw) >= abs(self.pitch):
            return "right" if self.yaw > 0 else "left"
        return "up" if self.pitch > 0 else "down"

    def to_dict(self) -> dict:
        return {"yaw": round(self.yaw, 1), "pitch": round(self.pitch, 1), "roll": round(self.roll, 1), "label": self.label}


def estimate_pose(landmarks: np.ndarray) -> Pose:
    """Yaw, pitch and roll of a face from its 68 photo landmarks."""
    rotation, _ = fit_rotation(landmarks)
    return Pose(*rotation_angles(rotation))
