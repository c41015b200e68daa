"""Where a face's 68 landmarks sit, read from its VAE latent: how an edit moves the face's shape.

A ridge regression from the mean latent to the landmarks in the 128-px aligned frame, fitted on
the CelebA-HQ training split (``faceflex train landmarks``). Linear, so the landmark displacement
of an edit is ``strength x (direction @ W)`` whatever the face: the shape change the attribute
brings on average (Smiling: mouth corners out and up, lips apart). Shipped as
``data/latent_landmarks.npz`` with the fingerprint of the VAE weights whose latents it reads.
"""

from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceflex.io.files import write_atomic
from faceflex.shipped import shipped

SHIPPED_REGRESSOR = "latent_landmarks.npz"


class RegressorError(ValueError):
    """A landmark-regressor file that cannot be used."""


@dataclass(frozen=True)
class LandmarkRegressor:
    """landmarks (N, 68, 2) = latents (N, D) @ weights + bias, in the aligned frame."""

    weights: np.ndarray  # (D, 136) float32
    bias: np.ndarray  # (136,) float32
    meta: dict

    def __call__(self, latents: np.ndarray) -> np.ndarray:
        latents = np.atleast_2d(np.asarray(latents, dtype=np.float32))
        return (latents @ self.weights + self.bias).reshape(len(latents), 68, 2)

    def displacement(self, direction: np.ndarray) -> np.ndarray:
        """(68, 2) landmark movement per unit of strength along ``direction`` (D,)."""
        return (np.asarray(direction, dtype=np.float32) @ self.weights).reshape(68, 2)

    def save(self, path: str | Path) -> Path:
        arrays = {"weights": self.weights.astype(np.float32), "bias": self.bias.astype(np.float32), "meta": np.array(json.dumps(self.meta))}
        return write_atomic(Path(path), lambda handle: np.savez(handle, **arrays))


def regressor_from_file(path: str | Path) -> LandmarkRegressor:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: landmark regressor not found (make it with `faceflex train landmarks`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            regressor = LandmarkRegressor(data["weights"], data["bias"], json.loads(str(data["meta"])))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise RegressorError(f"{path}: not a landmark-regressor file ({type(error).__name__})") from None
    if regressor.weights.ndim != 2 or regressor.weights.shape[1] != 136:
        raise RegressorError(f"{path}: not a landmark-regressor file (weights of shape {regressor.weights.shape})")
    return regressor


@functools.cache
def _shipped() -> LandmarkRegressor:
    return regressor_from_file(shipped(SHIPPED_REGRESSOR))


def load_landmark_regressor(path: str | Path | None = None) -> LandmarkRegressor:
    """The shipped regressor (read once), or the file at ``path``."""
    return _shipped() if path is None else regressor_from_file(path)
