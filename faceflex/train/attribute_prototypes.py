"""Making the attribute prototypes (``faceflex train prototypes``) from labelled, aligned faces."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from faceflex.face.texture import BAND_SIGMAS, detail_bands, luminance
from faceflex.face.warp import anchor_ring, warp_points
from faceflex.inference.attribute_prototypes import BALANCED, AttributePrototypes
from faceflex.train.cache import CachedFaces

ENERGY_FLOOR = 1.0  # added to both groups' mean band energies (luminance units squared) before their ratio


def overlap_weights(has: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Weights (N,) over faces that make the combinations ``cells`` (N,) int equally common among
    faces with the attribute (``has`` True) and without it: overlap weights, each combination
    counted in proportion to n_with x n_without / (n_with + n_without) (0 where a group lacks it);
    each group's weights sum to 1."""
    has = np.asarray(has, dtype=bool)
    cells = np.asarray(cells)
    weights = np.zeros(len(has))
    codes = np.unique(cells)
    n_with = np.array([np.sum(has & (cells == c)) for c in codes], dtype=np.float64)
    n_without = np.array([np.sum(~has & (cells == c)) for c in codes], dtype=np.float64)
    share = np.where((n_with > 0) & (n_without > 0), n_with * n_without / np.maximum(n_with + n_without, 1), 0.0)
    if share.sum() == 0:
        raise ValueError("no combination of the balanced attributes has faces both with and without the attribute")
    share /= share.sum()
    for code, s, w, wo in zip(codes, share, n_with, n_without):
        chosen = cells == code
        weights[chosen & has] = s / max(w, 1)
        weights[chosen & ~has] = s / max(wo, 1)
    return weights


def shape_normalised(face: np.ndarray, landmarks: np.ndarray, mean_landmarks: np.ndarray) -> np.ndarray:
    """The aligned face (128, 128, 3) warped so that its landmarks lie on ``mean_landmarks`` (float32)."""
    return warp_points(face, landmarks, mean_landmarks, anchor_ring(mean_landmarks, scale=1.35), (0, 0, 128, 128))


def build_prototypes(
    cache: CachedFaces,
    rows: np.ndarray,
    names: Sequence[str],
    meta: dict,
    balanced: Sequence[str] = BALANCED,
    batch_size: int = 128,
    progress: Callable[[int], None] | None = None,
) -> AttributePrototypes:
    """The prototypes of ``names`` from the cache faces ``rows`` (the training split), in one pass:
    every face is shape-normalised once and added, with each attribute's weights, to that
    attribute's two weighted means (colour and band energies); landmarks are averaged as they are.
    ``balanced``: the attributes made equally common in both groups of every other attribute."""
    rows = np.sort(np.asarray(rows))
    labels = cache.attributes[rows] > 0  # (N, 40)
    landmarks = np.asarray(cache.landmarks[rows], dtype=np.float64)
    mean_landmarks = landmarks.mean(axis=0)
    columns = [cache.attribute_names.index(n) for n in names]
    weights = np.zeros((len(rows), 2 * len(names)))  # column 2a: faces without attribute a, 2a + 1: with it
    for a, column in enumerate(columns):
        others = [cache.attribute_names.index(b) for b in balanced if b != names[a]]
        cells = labels[:, others] @ (1 << np.arange(len(others)))
        both = overlap_weights(labels[:, column], cells)
        weights[:, 2 * a] = np.where(labels[:, column], 0.0, both)
        weights[:, 2 * a + 1] = np.where(labels[:, column], both, 0.0)
    bands = len(BAND_SIGMAS)
    sums = np.zeros((2 * len(names), 128 * 128 * (3 + bands)))
    for start in range(0, len(rows), batch_size):
        chunk = slice(start, start + batch_size)
        features = []
        for face, points in zip(np.asarray(cache.faces[rows[chunk]]), landmarks[chunk]):
            normal = shape_normalised(face, points, mean_landmarks)
            energy = detail_bands(luminance(normal)) ** 2
            features.append(np.concatenate([normal.ravel(), energy.ravel()]))
        sums += weights[chunk].T @ np.stack(features).astype(np.float64)
        if progress:
            progress(len(features))
    without, with_ = sums[0::2], sums[1::2]
    size = 128 * 128 * 3
    colour = (with_[:, :size] - without[:, :size]).reshape(len(names), 128, 128, 3)
    energy_with = with_[:, size:].reshape(len(names), bands, 128, 128)
    energy_without = without[:, size:].reshape(len(names), bands, 128, 128)
    detail = 0.5 * np.log((energy_with + ENERGY_FLOOR) / (energy_without + ENERGY_FLOOR))  # log of the amplitude ratio
    shape = np.stack([(weights[:, 2 * a + 1] - weights[:, 2 * a]) @ landmarks.reshape(len(rows), -1) for a in range(len(names))])
    faces = np.stack([[1.0 / np.sum(weights[:, 2 * a] ** 2), 1.0 / np.sum(weights[:, 2 * a + 1] ** 2)] for a in range(len(names))])
    info = {**meta, "faces": int(len(rows)), "balanced": list(balanced), "band_sigmas": list(BAND_SIGMAS), "energy_floor": ENERGY_FLOOR}
    return AttributePrototypes(list(names), mean_landmarks, shape.reshape(-1, 68, 2), colour, detail, faces, info)
