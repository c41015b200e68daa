"""The model inputs cut from a photo: the same functions make training data and inference inputs.

- attribute/age models: the aligned 128-px face, box-filtered to 64 px, RGB;
- expression model: a 48-px grey crop framed as FER2013 frames faces (``data/fer_frame.json``,
  measured by ``scripts/make_fer_frame.py``), warped straight from the photo.
"""

from __future__ import annotations

import numpy as np

from faceflex.face.align import alignment_matrix, compose_affine, warp_image
from faceflex.shipped import shipped_array

ATTRIBUTE_SIZE = 64
EXPRESSION_SIZE = 48


def box_downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks of (..., H, W, C) uint8 images (H, W divisible)."""
    images = np.asarray(images)
    *lead, h, w, c = images.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {w}x{h} is not divisible by {factor}")
    blocks = images.reshape(*lead, h // factor, factor, w // factor, factor, c).astype(np.float32)
    return (blocks.mean(axis=(-4, -2)) + 0.5).astype(np.uint8)


def attribute_input(aligned: np.ndarray) -> np.ndarray:
    """The 64-px RGB input of the attribute and age models from aligned 128-px face(s)."""
    return box_downsample(aligned, aligned.shape[-2] // ATTRIBUTE_SIZE)


def fer_frame() -> np.ndarray:
    """2x3 map from the aligned 128-px frame to the FER2013-like 48-px frame."""
    return shipped_array("fer_frame.json", "matrix")


def grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (as Pillow's "L" conversion), uint8."""
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(luma + 0.5, 0, 255).astype(np.uint8)


def expression_input(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 48x48 grey input of the expression model for the face with these photo landmarks."""
    matrix = compose_affine(fer_frame(), alignment_matrix(landmarks))
    return grey(warp_image(rgb, matrix, (EXPRESSION_SIZE, EXPRESSION_SIZE)))
