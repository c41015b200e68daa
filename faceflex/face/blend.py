"""Paste an aligned 128x128 result back into the full-resolution photo through a soft mask."""

from __future__ import annotations

import numpy as np
from PIL import Image

from faceflex.face.align import compose_affine, invert_affine, transform_points, warp_image


def paste_region(matrix: np.ndarray, mask: np.ndarray, photo_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1, exclusive end) in the photo of the mask's support, or None.

    ``matrix`` maps photo -> aligned; ``photo_size`` is (width, height). Clipped to the photo.
    """
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        return None
    corners = np.array(
        [[xs.min() - 1, ys.min() - 1], [xs.max() + 1, ys.min() - 1], [xs.min() - 1, ys.max() + 1], [xs.max() + 1, ys.max() + 1]],
        dtype=np.float64,
    )
    photo = transform_points(corners, invert_affine(matrix))
    width, height = photo_size
    x0, y0 = np.floor(photo.min(axis=0)).astype(int)
    x1, y1 = np.ceil(photo.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def paste_back(photo: np.ndarray, aligned: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend ``aligned`` (S x S x 3 uint8) into a copy of ``photo`` where ``mask`` (S x S) is positive.

    ``matrix`` is the photo -> aligned transform the face was aligned with. Only the face's region
    of interest is warped; pixels where the warped mask is 0 are returned unchanged, bit for bit.
    """
    result = photo.copy()
    region = paste_region(matrix, mask, (photo.shape[1], photo.shape[0]))
    if region is None:
        return result
    x0, y0, x1, y1 = region
    # aligned -> region-of-interest coordinates
    to_roi = compose_affine(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), invert_affine(matrix))
    size = (x1 - x0, y1 - y0)
    mask8 = np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)
    rgba = np.dstack([aligned, mask8])  # one warp carries the face and its mask
    face = Image.fromarray(warp_image(rgba, to_roi, size), "RGBA")
    roi = Image.fromarray(np.ascontiguousarray(result[y0:y1, x0:x1]), "RGB")
    roi.paste(face, (0, 0), face)  # alpha blend at C speed; where alpha is 0 the photo is kept
    result[y0:y1, x0:x1] = np.asarray(roi)
    return result


def paste_delta(photo: np.ndarray, delta: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Add an aligned-frame change ``delta`` (S x S x 3 float, in 0-255 units), weighted by ``mask``, to a copy of ``photo``.

    The photo's own pixels carry everything the change leaves alone (texture, lighting, identity);
    where the weighted change is 0 the photo is returned unchanged, bit for bit.
    """
    result = photo.copy()
    region = paste_region(matrix, mask, (photo.shape[1], photo.shape[0]))
    if region is None or not np.any(delta):
        return result
    x0, y0, x1, y1 = region
    to_roi = compose_affine(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), invert_affine(matrix))
    size = (x1 - x0, y1 - y0)
    weighted = (np.asarray(delta, dtype=np.float32) * mask[..., None]).astype(np.float32)
    change = np.dstack([warp_image(np.ascontiguousarray(weighted[..., c]), to_roi, size) for c in range(3)])
    roi = result[y0:y1, x0:x1].astype(np.float32) + change
    result[y0:y1, x0:x1] = np.clip(np.rint(roi), 0, 255).astype(np.uint8)
    return result
