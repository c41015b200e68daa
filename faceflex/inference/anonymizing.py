"""The anonymizer for inference: paint a new face into the hole where an aligned face was.

The network (:class:`~faceflex.models.face_unet.FaceUNet` with an identity code) sees the aligned
face's surroundings with the face region taken out, the landmarks drawn as lines (expression and
pose), and an identity code; it never sees the face's own pixels
(:func:`faceflex.face.sketch.anonymizer_input`). Codes live in the space of dlib's face
descriptor standardised over the training faces: training showed the network each face's own
descriptor; at use, a code is drawn from the training descriptors' Gaussian (:class:`IdentityPrior`),
seeded, so a new identity is reproducible. Deterministic for given faces, landmarks and codes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.device import resolve_device
from faceflex.face.align import template_landmarks
from faceflex.face.sketch import anonymizer_input, expression_landmarks
from faceflex.models.face_unet import FaceUNet, FaceUNetConfig
from faceflex.models.weights import fingerprint, load_network
from faceflex.shipped import require_shipped

SHIPPED_WEIGHTS = "anonymizer.pt"
CANDIDATES = 8  # identity codes drawn per face, the farthest from the person kept (Anonymizer.identity)


@dataclass(frozen=True)
class IdentityPrior:
    """The training faces' dlib descriptors as a Gaussian: ``mean`` and ``std`` (128,) standardise a
    descriptor into a code; ``cholesky`` (128, 128) is the lower Cholesky factor of the codes' covariance."""

    mean: np.ndarray
    std: np.ndarray
    cholesky: np.ndarray

    @classmethod
    def fit(cls, descriptors: np.ndarray) -> IdentityPrior:
        """From (N, 128) descriptors (NaN rows ignored)."""
        usable = np.asarray(descriptors, np.float64)[np.isfinite(descriptors).all(axis=1)]
        mean, std = usable.mean(axis=0), usable.std(axis=0)
        codes = (usable - mean) / std
        covariance = np.cov(codes, rowvar=False) + 1e-6 * np.eye(codes.shape[1])
        return cls(mean.astype(np.float32), std.astype(np.float32), np.linalg.cholesky(covariance).astype(np.float32))

    def code(self, descriptors: np.ndarray) -> np.ndarray:
        """Descriptors (N, 128) -> codes (N, 128) float32; NaN rows (no descriptor) -> the mean code, zeros."""
        codes = (np.asarray(descriptors, np.float32) - self.mean) / self.std
        return np.where(np.isfinite(codes), codes, 0.0).astype(np.float32)

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` codes (count, 128) float32 drawn from the Gaussian with ``rng``."""
        return (rng.standard_normal((count, len(self.mean))) @ self.cholesky.T).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "cholesky": self.cholesky.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> IdentityPrior:
        return cls(*(np.asarray(data[key], np.float32) for key in ("mean", "std", "cholesky")))


def drawn_landmarks(landmarks: np.ndarray, normalise_shape: float) -> np.ndarray | None:
    """The landmarks drawn for the network: moved ``normalise_shape`` toward the template (None: as they are)."""
    return expression_landmarks(landmarks, template_landmarks(), normalise_shape) if normalise_shape else None


class Anonymizer:
    """A loaded anonymizer. Faces are (N, 128, 128, 3) uint8 aligned faces, landmarks (N, 68, 2) in that frame."""

    def __init__(
        self, model: FaceUNet, prior: IdentityPrior, device: torch.device, meta: dict | None = None, fingerprint: str | None = None
    ):
        self.model = model.eval().to(device)
        self.prior, self.device, self.meta, self.fingerprint = prior, device, meta or {}, fingerprint

    def identity(self, seed: int, key: int, avoid: np.ndarray | None = None, candidates: int = CANDIDATES) -> np.ndarray:
        """The identity code (128,) of face ``key`` (its place in a photo, or its video track) under
        ``seed``. With ``avoid`` (the original face's dlib descriptor), the farthest from it of
        ``candidates`` codes drawn with that seed: the network paints a mix of the code and what the
        surroundings suggest, so a code far from the person pushes the new face away from them."""
        drawn = self.prior.sample(np.random.default_rng([int(seed), int(key)]), candidates if avoid is not None else 1)
        if avoid is None:
            return drawn[0]
        own = self.prior.code(np.asarray(avoid, np.float32)[None])[0]
        return drawn[int(np.argmax(np.linalg.norm(drawn - own, axis=1)))]

    @torch.inference_mode()
    def paint(
        self, faces: np.ndarray, landmarks: np.ndarray, codes: np.ndarray, normalise_shape: float = 0.0, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """(new faces (N, 128, 128, 3) uint8, holes (N, 128, 128) float32 in {0, 1}): each face's
        hole painted by the network with its code (N, 128); pixels outside the hole unchanged.
        ``normalise_shape`` (0-1): the landmarks drawn for the network are moved that far toward the
        template face's proportions, expression kept (:func:`faceflex.face.sketch.expression_landmarks`),
        so less of the person's face shape reaches the new face."""
        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[1:] != (128, 128, 3) or faces.dtype != np.uint8:
            raise ValueError(f"the anonymizer needs (N, 128, 128, 3) uint8 aligned faces, got {faces.shape} {faces.dtype}")
        out, holes = np.array(faces), np.zeros(faces.shape[:3], np.float32)
        for start in range(0, len(faces), batch_size):
            block = zip(faces[start : start + batch_size], landmarks[start : start + batch_size])
            inputs = np.stack([anonymizer_input(f, lm, drawn_landmarks(lm, normalise_shape)) for f, lm in block])
            x = torch.from_numpy(inputs).to(self.device).contiguous(memory_format=torch.channels_last)
            code = torch.from_numpy(np.asarray(codes[start : start + len(inputs)], np.float32)).to(self.device)
            _, painted = self.model(x, code)
            hole = inputs[:, 3] > 0.5
            painted_u8 = (painted.float().permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
            result = out[start : start + len(inputs)]
            result[hole] = painted_u8[hole]
            holes[start : start + len(inputs)] = hole
        return out, holes


def anonymizer_from_file(path: str | Path, device: str = "auto") -> Anonymizer:
    """Load anonymizer weights (fp16 on disk, float32 in memory) with their identity prior."""
    model, record = load_network(path, lambda config: FaceUNet(FaceUNetConfig.from_dict(config)), "anonymizer weights")
    meta = record.get("meta", {})
    return Anonymizer(model, IdentityPrior.from_dict(meta["identity_prior"]), resolve_device(device), meta, fingerprint(path))


@functools.cache
def _shipped(device: str) -> Anonymizer:
    path = require_shipped(SHIPPED_WEIGHTS, "anonymizer weights", "faceflex train anonymize")
    return anonymizer_from_file(path, device)


def load_anonymizer(path: str | Path | None = None, device: str = "auto") -> Anonymizer:
    """The shipped anonymizer (loaded once per process), or the weight file at ``path``."""
    return _shipped(device) if path is None else anonymizer_from_file(path, device)
