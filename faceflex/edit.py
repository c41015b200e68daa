"""Editing faces: move each face's VAE latent along an attribute direction and blend the result back.

``edit_photo`` handles every face of one photo at several strengths; all strengths of a face are
decoded in one batch. Modes:

- ``residual`` (default): photo + mask x (decode(z + a v) - decode(z)). Strength 0 returns the
  photo bit for bit, and the photo's own texture, lighting and identity carry through.
- ``replace``: the decoded face decode(z + a v) itself is blended in (the original Face Flex).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceflex.face.align import align_face
from faceflex.face.blend import paste_back, paste_delta
from faceflex.face.detect import Face
from faceflex.face.masks import REGIONS, region_mask
from faceflex.vae import VAE

MODES = ("residual", "replace")
# region "auto": where each attribute lives; every attribute not listed edits the whole face.
AUTO_REGIONS = {
    "smiling": "mouth",
    "mouth_slightly_open": "mouth",
    "big_lips": "mouth",
    "wearing_lipstick": "mouth",
    "mustache": "upper-lip",
    "eyeglasses": "eyes",
    "narrow_eyes": "eyes",
    "bags_under_eyes": "eyes",
    "arched_eyebrows": "eyes",
    "bushy_eyebrows": "eyes",
}


def parse_range(start: float, end: float, step: float) -> list[float]:
    """Strengths from ``start`` to ``end`` by ``step``, ``end`` included when the steps reach it.

    Values are rounded to 6 decimals, so 0.1 steps give 0.3, not 0.30000000000000004.
    Negative starts, ends and steps are allowed; the step must point from start to end.
    """
    if not all(math.isfinite(v) for v in (start, end, step)):
        raise ValueError("range values must be finite numbers")
    if step == 0:
        raise ValueError("the range step must not be 0")
    if (end - start) * step < 0:
        raise ValueError(f"a step of {step:g} never gets from {start:g} to {end:g}")
    count = math.floor((end - start) / step + 1e-9) + 1
    if count > 1000:
        raise ValueError(f"the range gives {count} strengths; at most 1000")
    return [round(start + i * step, 6) + 0.0 for i in range(count)]  # + 0.0 turns -0.0 into 0.0


def strength_name(value: float) -> str:
    """A stable file-name form of a strength: 1.0, 0.3, -2.5."""
    return repr(round(float(value), 6) + 0.0)


def auto_region(attribute: str) -> str:
    """The mask region ``auto`` picks for an attribute (see :data:`AUTO_REGIONS`)."""
    return AUTO_REGIONS.get(attribute.lower(), "face")


@dataclass(frozen=True)
class FaceEdit:
    """One face's edit: the aligned inputs and outputs, for plots and manifests."""

    face: Face
    aligned: np.ndarray  # (128, 128, 3) uint8
    landmarks: np.ndarray  # (68, 2) in the aligned frame
    mask: np.ndarray  # (128, 128) float32
    decoded: np.ndarray  # (len(strengths), 128, 128, 3) uint8: decode(z + a v)


def edit_photo(
    rgb: np.ndarray,
    faces: Sequence[Face],
    vae: VAE,
    direction: np.ndarray,
    strengths: Sequence[float],
    mode: str = "residual",
    region: str = "face",
    feather: float = 0.04,
) -> tuple[list[np.ndarray], list[FaceEdit]]:
    """The photo edited at each strength (every face changed in each output), and the per-face details."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")
    outputs = [rgb.copy() for _ in strengths]
    edits = []
    direction = np.asarray(direction, dtype=np.float32)
    for face in faces:
        aligned = align_face(rgb, face.landmarks)
        z = vae.encode(aligned.image)[0]
        latents = np.concatenate([z[None], z[None] + np.asarray(strengths, np.float32)[:, None] * direction[None]])
        decoded = vae.decode(latents)
        base, shifted = decoded[0].astype(np.float32), decoded[1:]
        mask = region_mask(aligned.landmarks, region, feather=feather)
        for i, strength in enumerate(strengths):
            if mode == "residual":
                delta = shifted[i].astype(np.float32) - base if strength != 0 else np.zeros_like(base)
                outputs[i] = paste_delta(outputs[i], delta, aligned.matrix, mask)
            else:
                outputs[i] = paste_back(outputs[i], shifted[i], aligned.matrix, mask)
        edits.append(FaceEdit(face, aligned.image, aligned.landmarks, mask, shifted))
    return outputs, edits
