"""Similarity alignment onto the canonical 68-point template, and image warps.

Coordinates everywhere are (x, y) with pixel centres at integers, as dlib's landmarks are.
A transform is a 2x3 matrix ``M`` mapping a source point ``p`` to ``M[:, :2] @ p + M[:, 2]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from faceflex.shipped import shipped_array

ALIGNED_SIZE = 128


def template_landmarks() -> np.ndarray:
    """The 68-point template at 128x128: mean dlib landmarks of CelebA-HQ (read-only (68, 2) array)."""
    return shipped_array("template68.json", "points")


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` onto ``dst``.

    Umeyama's closed form, reflections excluded. ``src`` and ``dst`` are (N, 2), N >= 2.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N, 2) point sets, N >= 2; got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 0:
        raise ValueError("source points are all identical")
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / src_var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine transform."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -(linear @ matrix[:, 2:3])])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 transform applying ``inner`` first, then ``outer``."""
    linear = outer[:, :2] @ inner[:, :2]
    return np.hstack([linear, (outer[:, :2] @ inner[:, 2:3]) + outer[:, 2:3]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 transform to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def transform_scale(matrix: np.ndarray) -> float:
    """The uniform scale factor of a similarity transform."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def warp_image(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], resample: str = "bilinear") -> np.ndarray:
    """Warp ``image`` so that output pixel ``q`` shows source point ``matrix^-1 q``.

    ``image`` is (H, W, 3 or 4) uint8, (H, W) uint8 or (H, W) float32 (the dtype is kept); ``size`` is the output (width, height).
    Points falling outside the source read as 0. When the warp shrinks by 2x or more, the source is
    first box-averaged by that integer factor (no aliasing). Pure: the input is not modified.
    """
    if image.ndim == 2 and image.dtype == np.uint8:
        source = Image.fromarray(np.ascontiguousarray(image), "L")
    elif image.ndim == 2:
        source = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), "F")
    else:
        channels = {3: "RGB", 4: "RGBA"}[image.shape[2]]
        source = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), channels)
    scale = transform_scale(matrix)
    factor = int(1.0 / scale) if scale > 0 else 1
    if factor >= 2:  # shrinking: box-average factor x factor blocks first, so the warp does not alias
        source = source.reduce(factor)
        matrix = compose_affine(matrix, np.array([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2]]))
    inverse = invert_affine(matrix)
    # Pillow samples input point (a, b, c) . (x + 0.5, y + 0.5, 1) in a frame whose pixel centres
    # sit at +0.5; convert from our integer-centred frame.
    a, b, c = inverse[0]
    d, e, f = inverse[1]
    coefficients = (a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e))
    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}
    warped = source.transform(size, Image.Transform.AFFINE, coefficients, resample=filters[resample], fillcolor=0)
    return np.asarray(warped)


def warp_maps(maps: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """:func:`warp_image` for a stack of float maps (K, H, W) at once: (K, height, width) float32,
    ``size`` = (width, height); output pixel ``q`` shows source point ``matrix^-1 q`` (bilinear,
    pixel centres at integers), 0 beyond the source's outer pixel centres. One pass for every map;
    when the warp shrinks by 2x or more, each map goes through :func:`warp_image` (box-averaged first)."""
    maps = np.asarray(maps, dtype=np.float32)
    if transform_scale(matrix) <= 0.5:
        return np.stack([warp_image(np.ascontiguousarray(m), matrix, size) for m in maps])
    (a, b, c), (d, e, f) = invert_affine(matrix)
    width, height = size
    xs = torch.arange(width, dtype=torch.float64)[None, :]
    ys = torch.arange(height, dtype=torch.float64)[:, None]
    rows, columns = maps.shape[1:]
    # grid_sample's frame (align_corners): -1 and 1 are the centres of the first and last pixels
    gx = (a * xs + b * ys + c) * (2 / max(columns - 1, 1)) - 1
    gy = (d * xs + e * ys + f) * (2 / max(rows - 1, 1)) - 1
    grid = torch.stack([gx, gy], dim=-1).to(torch.float32)[None]
    out = F.grid_sample(torch.from_numpy(maps)[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0].numpy()


@dataclass(frozen=True)
class AlignedFace:
    """A face warped onto the template frame."""

    image: np.ndarray  # (size, size, 3) uint8
    matrix: np.ndarray  # 2x3, photo -> aligned
    landmarks: np.ndarray  # (68, 2) landmarks in the aligned frame


def alignment_matrix(landmarks: np.ndarray, size: int = ALIGNED_SIZE, points: np.ndarray | None = None) -> np.ndarray:
    """Similarity transform taking a face's 68 photo landmarks onto the template at ``size`` px,
    fitted on the landmarks ``points`` (indices; None: all 68)."""
    template = (template_landmarks() + 0.5) * (size / ALIGNED_SIZE) - 0.5  # pixel centres kept
    chosen = slice(None) if points is None else np.asarray(points)
    return estimate_similarity(np.asarray(landmarks)[chosen], template[chosen])


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE, points: np.ndarray | None = None) -> AlignedFace:
    """Rotate, scale and crop a face so its landmarks (those in ``points``; None: all) best match
    the template (pixels really warped)."""
    matrix = alignment_matrix(landmarks, size, points)
    image = warp_image(rgb, matrix, (size, size))
    return AlignedFace(image=image, matrix=matrix, landmarks=transform_points(landmarks, matrix))
