"""Blurring and pixelating a face: the anonymisation people use today, as faceflex's baselines.

Both work in the photo's own pixels (the blocks of a pixelated face are square in the photo) over
the face region of :func:`faceflex.face.masks.region_polygons` (jaw, brows, forehead), softened at
its edge; nothing outside that region changes. Coordinates: pixel (x, y) covers [x, x+1) x [y, y+1).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from faceflex.face.masks import face_scale, region_mask

OBSCURE_METHODS = ("blur", "pixelate")
BLUR_SIGMA = 0.08  # x face width (jaw end to jaw end): features and skin texture gone, the head's shape kept
PIXEL_BLOCKS = 8  # blocks across the face width
FEATHER = 0.02  # x face width: the region's soft edge


def obscure_patch(rgb: np.ndarray, landmarks: np.ndarray, method: str) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGBA patch (h, w, 4) uint8, its top-left pixel (x0, y0) in ``rgb``): the face blurred or
    pixelated, with the face region as its alpha (composite it with
    :func:`faceflex.face.blend.paste_over`). The patch lies inside the image."""
    if method not in OBSCURE_METHODS:
        raise ValueError(f"method must be one of {', '.join(OBSCURE_METHODS)}, not {method!r}")
    points = np.asarray(landmarks, np.float64)
    width = face_scale(points)
    margin = int(np.ceil(0.6 * width))  # room for the forehead and the soft edge
    (x0, y0), (x1, y1) = np.floor(points.min(axis=0)).astype(int) - margin, np.ceil(points.max(axis=0)).astype(int) + margin
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, rgb.shape[1]), min(y1, rgb.shape[0])
    crop = Image.fromarray(np.ascontiguousarray(rgb[y0:y1, x0:x1, :3]))
    if method == "blur":
        changed = crop.filter(ImageFilter.GaussianBlur(BLUR_SIGMA * width))
    else:
        block = max(2, int(round(width / PIXEL_BLOCKS)))
        small = crop.resize((max(1, -(-crop.width // block)), max(1, -(-crop.height // block))), Image.Resampling.BOX)
        changed = small.resize((small.width * block, small.height * block), Image.Resampling.NEAREST).crop((0, 0, crop.width, crop.height))
    alpha = region_mask(points - (x0, y0), "face", (crop.width, crop.height), feather=FEATHER)
    patch = np.dstack([np.asarray(changed), (alpha * 255 + 0.5).astype(np.uint8)])
    return patch, (int(x0), int(y0))
