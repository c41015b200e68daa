"""Soft face-region masks from 68 landmarks: whole face, mouth, eyes, upper lip, lower face.

Masks are float32 arrays in [0, 1], drawn in whatever frame the landmarks are given in (usually
the 128x128 aligned frame) and feathered with a Gaussian whose width is proportional to the face
size, so that a mask looks the same on a small or a large face.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from faceflex.choices import REGIONS

JAW = list(range(0, 17))
BROWS = list(range(17, 27))
NOSE_BOTTOM = list(range(31, 36))
LEFT_EYE, RIGHT_EYE = list(range(36, 42)), list(range(42, 48))
OUTER_LIPS = list(range(48, 60))
UPPER_LIP = list(range(48, 55)) + list(range(60, 65))


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of (N, 2) points, counter-clockwise, without repeated end point (monotone chain)."""
    pts = sorted(set(map(tuple, np.asarray(points, dtype=np.float64).tolist())))
    if len(pts) < 3:
        return np.asarray(pts, dtype=np.float64)

    def half(sequence):
        chain: list[tuple[float, float]] = []
        for p in sequence:
            while len(chain) >= 2:
                (ax, ay), (bx, by) = chain[-2], chain[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(reversed(pts))
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def face_scale(landmarks: np.ndarray) -> float:
    """Face width: distance between the jaw's ends (landmarks 0 and 16)."""
    return float(np.linalg.norm(landmarks[16] - landmarks[0]))


def forehead_points(landmarks: np.ndarray, height: float = 0.6) -> np.ndarray:
    """The brows lifted over the forehead by ``height`` x the eyes-to-mouth distance."""
    eyes = landmarks[36:48].mean(axis=0)
    mouth = landmarks[48:68].mean(axis=0)
    up = eyes - mouth
    return landmarks[BROWS] + height * up


def _scaled(points: np.ndarray, factor: float) -> np.ndarray:
    centre = points.mean(axis=0)
    return centre + factor * (points - centre)


def region_polygons(landmarks: np.ndarray, region: str) -> list[np.ndarray]:
    """Convex polygons covering a named region (see :data:`REGIONS`)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if region == "face":
        return [convex_hull(np.vstack([lm[JAW], lm[BROWS], forehead_points(lm)]))]
    if region == "mouth":
        return [convex_hull(_scaled(lm[OUTER_LIPS], 1.6))]  # lips and the smile folds beside them
    if region == "eyes":  # temple to temple, brows to the nose bridge: room for glasses
        return [convex_hull(np.vstack([lm[[0, 1, 15, 16, 29]], lm[BROWS], lm[LEFT_EYE], lm[RIGHT_EYE]]))]
    if region == "upper-lip":  # between the nose and the mouth, corner to corner: a moustache
        return [convex_hull(_scaled(np.vstack([lm[NOSE_BOTTOM], lm[UPPER_LIP]]), 1.4))]
    if region == "lower-face":  # below the nose, jaw to jaw: cheeks, mouth and chin, where a beard grows
        return [convex_hull(np.vstack([lm[JAW[2:15]], lm[NOSE_BOTTOM]]))]
    raise ValueError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")


def eyes_mask(landmarks: np.ndarray, size: tuple[int, int] = (128, 128), grow: float = 1.0, feather: float = 0.015) -> np.ndarray:
    """Soft (H, W) float32 mask in [0, 1] of the two eyes' openings (landmarks 36-41, 42-47, each
    polygon grown ``grow`` times about its centre), blurred by ``feather`` x face width."""
    lm = np.asarray(landmarks, dtype=np.float64)
    hard = polygon_mask([_scaled(lm[LEFT_EYE], grow), _scaled(lm[RIGHT_EYE], grow)], size)
    return np.clip(gaussian_blur(hard, feather * face_scale(lm)), 0.0, 1.0)


def forehead_mask(landmarks: np.ndarray, size: tuple[int, int] = (128, 128), feather: float = 0.04) -> np.ndarray:
    """Soft (H, W) float32 mask in [0, 1] of the forehead, from the brows up to the face region's
    top (:func:`forehead_points`): the part of the face region that a fringe or a hat often covers."""
    lm = np.asarray(landmarks, dtype=np.float64)
    hard = polygon_mask([convex_hull(np.vstack([lm[BROWS], forehead_points(lm)]))], size)
    return np.clip(gaussian_blur(hard, feather * face_scale(lm)), 0.0, 1.0)


def gaussian_blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur truncated at 3 sigma (exactly zero beyond), zero padding."""
    if sigma <= 0:
        return mask.astype(np.float32)
    radius = int(np.ceil(3.0 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()

    def band(n: int) -> np.ndarray:
        index = np.arange(n)
        diff = index[:, None] - index[None, :]
        out = np.zeros((n, n))
        inside = np.abs(diff) <= radius
        out[inside] = kernel[diff[inside] + radius]
        return out

    height, width = mask.shape
    return (band(height) @ mask.astype(np.float64) @ band(width).T).astype(np.float32)


def polygon_mask(polygons: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Hard 0/1 float32 mask of filled polygons, ``size`` = (width, height)."""
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 3:
            draw.polygon([(float(x), float(y)) for x, y in polygon], fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def skin_mask(landmarks: np.ndarray, size: tuple[int, int] = (128, 128)) -> np.ndarray:
    """(H, W) bool: the face region's polygon (:func:`region_polygons`, unblurred) less those of its
    eyes and brows and of its mouth: the skin, where a new person's colour should match the old one's."""
    face, eyes, mouth = (polygon_mask(region_polygons(landmarks, name), size) > 0.5 for name in ("face", "eyes", "mouth"))
    return face & ~eyes & ~mouth


def region_mask(landmarks: np.ndarray, region: str = "face", size: tuple[int, int] = (128, 128), feather: float = 0.04) -> np.ndarray:
    """Soft mask of a region: filled polygons blurred by ``feather`` x face width.

    The mask falls to exactly zero at least one pixel inside the frame's border, so pasting it
    back never leaves a seam at the edge of the crop.
    """
    sigma = feather * face_scale(np.asarray(landmarks, dtype=np.float64))
    margin = int(np.ceil(3.0 * sigma)) + 1
    hard = polygon_mask(region_polygons(landmarks, region), size)
    width, height = size
    if width > 2 * margin and height > 2 * margin:
        inner = np.zeros_like(hard)
        inner[margin:-margin, margin:-margin] = hard[margin:-margin, margin:-margin]
        hard = inner
    soft = gaussian_blur(hard, sigma)
    soft[soft < 1e-4] = 0.0
    return np.clip(soft, 0.0, 1.0)
