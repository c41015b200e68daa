"""What the face painters share at inference: a :class:`~faceflex.models.face_unet.FaceUNet` that
fills a hole in aligned 128-px faces, steered by a code that starts with an identity (dlib's face
descriptor, standardised over the training faces: :class:`IdentityPrior`).

The anonymizer (:mod:`faceflex.inference.anonymizing`) paints the whole face with a drawn identity;
the attribute painter (:mod:`faceflex.inference.attribute_painting`) paints one region (eyes,
mouth, upper lip) with the person's own identity and the attributes asked for. Deterministic for
given inputs and codes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from faceflex.device import resolve_device
from faceflex.models.face_unet import FaceUNet, face_unet_from_config
from faceflex.models.weights import fingerprint, load_network
from faceflex.shipped import require_shipped


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
        """``count`` codes (count, 128) float32 drawn from the Gaussian with ``rng`` (an einsum, not a
        matrix product: OpenBLAS's threads would spin on and slow the network that paints next)."""
        return np.einsum("nk,ck->nc", rng.standard_normal((count, len(self.mean))), self.cholesky).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "cholesky": self.cholesky.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> IdentityPrior:
        return cls(*(np.asarray(data[key], np.float32) for key in ("mean", "std", "cholesky")))


Painter = TypeVar("Painter", bound="FacePainter")


class FacePainter:
    """A loaded face painter. Faces are (N, 128, 128, 3) uint8 aligned faces. A subclass names its
    shipped weight file, what they are and the command that makes them (for :meth:`load`)."""

    shipped_weights = ""
    what = "face painter weights"
    made_by = ""

    def __init__(
        self, model: FaceUNet, prior: IdentityPrior, device: torch.device, meta: dict | None = None, fingerprint: str | None = None
    ):
        self.model = model.eval().to(device)
        self.prior, self.device, self.meta, self.fingerprint = prior, device, meta or {}, fingerprint

    @classmethod
    def from_file(cls: type[Painter], path: str | Path, device: str = "auto") -> Painter:
        """Load weights (fp16 on disk, float32 in memory) with their identity prior (``meta``)."""
        model, record = load_network(path, face_unet_from_config, cls.what)
        meta = record.get("meta", {})
        return cls(model, IdentityPrior.from_dict(meta["identity_prior"]), resolve_device(device), meta, fingerprint(path))

    @torch.inference_mode()
    def fill(
        self, faces: np.ndarray, make_input: Callable[[int], np.ndarray], codes: np.ndarray, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """(new faces (N, 128, 128, 3) uint8, holes (N, 128, 128) float32 in {0, 1}): face i's hole
        (channel 3 of ``make_input(i)``, a :func:`faceflex.face.sketch.painter_input`) painted by
        the network with code ``codes[i]``; pixels outside the hole unchanged."""
        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[1:] != (128, 128, 3) or faces.dtype != np.uint8:
            raise ValueError(f"a face painter needs (N, 128, 128, 3) uint8 aligned faces, got {faces.shape} {faces.dtype}")
        out, holes = np.array(faces), np.zeros(faces.shape[:3], np.float32)
        for start in range(0, len(faces), batch_size):
            inputs = np.stack([make_input(i) for i in range(start, min(start + batch_size, len(faces)))])
            x = torch.from_numpy(inputs).to(self.device).contiguous(memory_format=torch.channels_last)
            code = torch.from_numpy(np.asarray(codes[start : start + len(inputs)], np.float32)).to(self.device)
            _, painted = self.model(x, code)
            hole = inputs[:, 3] > 0.5
            painted_u8 = (painted.float().permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
            result = out[start : start + len(inputs)]
            result[hole] = painted_u8[hole]
            holes[start : start + len(inputs)] = hole
        return out, holes


@functools.cache
def _shipped(cls: type[FacePainter], device: str) -> FacePainter:
    return cls.from_file(require_shipped(cls.shipped_weights, cls.what, cls.made_by), device)


def load_painter(cls: type[Painter], path: str | Path | None = None, device: str = "auto") -> Painter:
    """A ``cls`` painter: its shipped weights (loaded once per process and device), or the file at ``path``."""
    return _shipped(cls, device) if path is None else cls.from_file(path, device)
