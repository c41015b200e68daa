"""Illumination of a face: a documented photometric rule on the face region of the photo.

Measured on the pixels inside the landmark hull (jaw line and brows), as luma (ITU-R 601, 0-255):
``brightness`` (mean), ``contrast`` (standard deviation), ``clipped`` (fraction at <= 8 or >= 247)
and ``asymmetry`` (|mean of the left half - mean of the right half| / brightness).

Rule: ``bad`` when brightness < 60 (dark) or > 215 (washed out) or clipped > 0.25;
``medium`` when brightness < 100, or contrast < 12 (flat), or asymmetry > 0.35 (strong side light);
``high`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from faceflex.face.crops import grey
from faceflex.face.masks import convex_hull

DARK, BRIGHT, CLIPPED = 60.0, 215.0, 0.25
DIM, FLAT, SIDE_LIT = 100.0, 12.0, 0.35


@dataclass(frozen=True)
class Illumination:
    brightness: float
    contrast: float
    clipped: float
    asymmetry: float

    @property
    def label(self) -> str:
        if self.brightness < DARK or self.brightness > BRIGHT or self.clipped > CLIPPED:
            return "bad"
        if self.brightness < DIM or self.contrast < FLAT or self.asymmetry > SIDE_LIT:
            return "medium"
        return "high"

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "brightness": round(self.brightness, 1),
            "contrast": round(self.contrast, 1),
            "clipped": round(self.clipped, 3),
            "asymmetry": round(self.asymmetry, 3),
        }


def measure_illumination(rgb: np.ndarray, landmarks: np.ndarray) -> Illumination:
    """Photometric statistics of the face region (hull of the 68 landmarks) of an RGB photo."""
    h, w = rgb.shape[:2]
    points = np.asarray(landmarks, dtype=np.float64)
    x0, y0 = np.floor(np.clip(points.min(axis=0), 0, [w - 1, h - 1])).astype(int)
    x1, y1 = np.ceil(np.clip(points.max(axis=0), 0, [w - 1, h - 1])).astype(int) + 1
    luma = grey(rgb[y0:y1, x0:x1]).astype(np.float64)
    mask_image = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(mask_image).polygon([tuple(p) for p in convex_hull(points - [x0, y0])], fill=255)
    mask = np.asarray(mask_image) > 0
    values = luma[mask]
    if values.size < 16:
        raise ValueError("the face region is too small to measure its illumination")
    brightness = float(values.mean())
    # Left/right halves split at the nose line (points 27-30), in the face's own frame.
    nose_x = points[27:31, 0].mean() - x0
    columns = np.arange(luma.shape[1])[None, :].repeat(luma.shape[0], axis=0)
    left, right = luma[mask & (columns < nose_x)], luma[mask & (columns >= nose_x)]
    asymmetry = abs(left.mean() - right.mean()) / max(brightness, 1.0) if left.size and right.size else 0.0
    return Illumination(
        brightness=brightness,
        contrast=float(values.std()),
        clipped=float(((values <= 8) | (values >= 247)).mean()),
        asymmetry=float(asymmetry),
    )
