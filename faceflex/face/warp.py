"""Moving a face's own pixels: a thin-plate-spline warp that takes landmarks to new positions.

Conventions: points are (x, y) with pixel centres at integers; images (H, W, C) uint8 or float32.
A warp is given as *moves*: each landmark at ``source`` should appear at ``target`` in the output.
It is applied backwards (every output pixel looks up where its content comes from), fitted by a
thin-plate spline through the moved landmarks plus *anchors* that stay put, so the warp fades to
nothing at the anchors (a ring around the face) and outside them the photo is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

GRID_STEP = 4  # the spline is evaluated every GRID_STEP pixels and interpolated bilinearly in between
MESH_CELLS = 32  # photo warps: the face's extent is cut into about this many bilinear quads a side (2-16 px each)


def _kernel(r2: np.ndarray) -> np.ndarray:
    """The thin-plate kernel U = r^2 log r^2 (0 at r = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r2 > 0, r2 * np.log(r2), 0.0)


@dataclass(frozen=True)
class ThinPlateSpline:
    """A map R^2 -> R^2 through given points: f(centres[i]) = values[i] (least bending)."""

    centres: np.ndarray  # (N, 2)
    weights: np.ndarray  # (N, 2)
    affine: np.ndarray  # (3, 2): [1, x, y] -> value

    @classmethod
    def fit(cls, centres: np.ndarray, values: np.ndarray, smoothing: float = 0.0) -> ThinPlateSpline:
        """Fit through ``values`` (N, 2) at ``centres`` (N, 2), N >= 3 and not all on a line."""
        centres = np.asarray(centres, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        n = len(centres)
        k = _kernel(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1)) + smoothing * np.eye(n)
        p = np.hstack([np.ones((n, 1)), centres])
        system = np.zeros((n + 3, n + 3))
        system[:n, :n], system[:n, n:], system[n:, :n] = k, p, p.T
        rhs = np.zeros((n + 3, 2))
        rhs[:n] = values
        solution = np.linalg.lstsq(system, rhs, rcond=None)[0]
        return cls(centres, solution[:n], solution[n:])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """The map at (M, 2) points."""
        points = np.asarray(points, dtype=np.float64)
        u = _kernel(((points[:, None, :] - self.centres[None, :, :]) ** 2).sum(-1))
        return u @ self.weights + np.hstack([np.ones((len(points), 1)), points]) @ self.affine


def anchor_ring(points: np.ndarray, scale: float = 1.35, count: int = 24) -> np.ndarray:
    """``count`` fixed points on an ellipse around ``points`` (their spread grown by ``scale``)."""
    points = np.asarray(points, dtype=np.float64)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    radii = (points.max(axis=0) - points.min(axis=0)) / 2 * scale
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii


def backward_map(sources: np.ndarray, targets: np.ndarray, anchors: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """For every pixel of ``box`` = (x0, y0, x1, y1) (exclusive end), where its content comes from:
    (y1 - y0, x1 - x0, 2) float32 (x, y) in the same frame as the points.

    Landmarks at ``sources`` move to ``targets``; ``anchors`` stay put.
    """
    x0, y0, x1, y1 = box
    spline = ThinPlateSpline.fit(np.vstack([targets, anchors]), np.vstack([sources, anchors]))
    xs = np.arange(x0, x1 + GRID_STEP, GRID_STEP, dtype=np.float64)
    ys = np.arange(y0, y1 + GRID_STEP, GRID_STEP, dtype=np.float64)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    coarse = (spline(grid) - grid).reshape(len(ys), len(xs), 2).astype(np.float32)  # displacement, smooth
    size = ((len(xs) - 1) * GRID_STEP + 1, (len(ys) - 1) * GRID_STEP + 1)
    fine = np.stack([np.asarray(Image.fromarray(coarse[..., c], "F").resize(size, Image.Resampling.BILINEAR)) for c in range(2)], -1)
    # Pillow's resize maps corner pixels to corner pixels only approximately; the displacement is
    # smooth at this scale, so the sub-pixel difference is negligible.
    fine = fine[: y1 - y0, : x1 - x0]
    px, py = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    return np.stack([px + fine[..., 0], py + fine[..., 1]], axis=-1)


def sample_bilinear(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``image`` (H, W, C) read at float (x, y) positions ``where`` (h, w, 2), bilinearly; positions
    outside the image read the nearest edge pixel. Returns float32 (h, w, C)."""
    height, width = image.shape[:2]
    x = np.clip(where[..., 0], 0, width - 1)
    y = np.clip(where[..., 1], 0, height - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2 if width > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2 if height > 1 else 0)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    img = image.astype(np.float32)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def warp_points(
    image: np.ndarray, sources: np.ndarray, targets: np.ndarray, anchors: np.ndarray, box: tuple[int, int, int, int]
) -> np.ndarray:
    """The pixels of ``box`` in ``image`` after moving ``sources`` to ``targets`` (anchors fixed);
    float32 (y1 - y0, x1 - x0, C). With no movement this is the box itself, exactly."""
    return sample_bilinear(image, backward_map(sources, targets, anchors, box))


def mesh_warp(
    image: np.ndarray, sources: np.ndarray, targets: np.ndarray, anchors: np.ndarray, box: tuple[int, int, int, int]
) -> np.ndarray:
    """As :func:`warp_points` for a uint8 RGB ``image``, returning uint8: the spline is evaluated on
    a grid of cells (the face's extent / :data:`MESH_CELLS`, 2-16 px) and each cell is resampled by
    Pillow (bilinear, in C) from the source quad its corners map to. The spline is smooth at the
    scale of a face, so the cells' bilinear patches follow it to a small fraction of a pixel."""
    x0, y0, x1, y1 = box
    height, width = image.shape[:2]
    step = int(np.clip(np.ptp(sources, axis=0).max() / MESH_CELLS, 2, 16))
    spline = ThinPlateSpline.fit(np.vstack([targets, anchors]), np.vstack([sources, anchors]))
    xs = np.arange(x0, x1 + step, step, dtype=np.float64)
    ys = np.arange(y0, y1 + step, step, dtype=np.float64)
    nodes = np.stack(np.meshgrid(xs, ys), axis=-1)
    # our frame has pixel centres at integers; Pillow's has them at +0.5: an output cell spanning
    # our [x - 0.5, x + STEP - 0.5] reads the source quad the spline maps those corners to.
    mapped = spline((nodes - 0.5).reshape(-1, 2)).reshape(nodes.shape) + 0.5
    # the source is cut to the area the quads can reach (plus a pixel), not the whole photo
    sx0, sy0 = np.maximum(np.floor(mapped.reshape(-1, 2).min(axis=0)).astype(int) - 1, 0)
    sx1, sy1 = np.minimum(np.ceil(mapped.reshape(-1, 2).max(axis=0)).astype(int) + 1, [width, height])
    source = Image.fromarray(np.ascontiguousarray(image[sy0:sy1, sx0:sx1]))
    mapped -= (sx0, sy0)
    mesh = []
    for j in range(len(ys) - 1):
        for i in range(len(xs) - 1):
            bx, by = int(xs[i]) - x0, int(ys[j]) - y0
            quad = (*mapped[j, i], *mapped[j + 1, i], *mapped[j + 1, i + 1], *mapped[j, i + 1])  # NW, SW, SE, NE
            mesh.append(((bx, by, bx + step, by + step), quad))
    out = source.transform((x1 - x0, y1 - y0), Image.Transform.MESH, mesh, resample=Image.Resampling.BILINEAR)
    return np.asarray(out)
