"""Putting glasses on a face: frames drawn from the 68 landmarks, at the photo's own resolution.

Glasses are a made object of known shape, so faceflex draws them rather than asking a network to
imagine them (a network trained on the CPU paints blurred dark blobs where glasses should be;
docs/EDIT.md). Conventions: points are (x, y) in pixel-centre coordinates (the centre of pixel
column i is x = i), as dlib's landmarks are; the result is a straight-alpha RGBA patch (h, w, 4)
uint8 and the photo pixel of its top-left corner.

Geometry, in units of the inter-ocular distance d (eye centre to eye centre): each lens is a
superellipse |x/a|^n + |y/b|^n <= 1 centred a little below its eye and turned with the line between
the eyes; its width follows that eye's own width (so a turned head's far lens is narrower); the
bridge arches between the lenses at the height of the nose's top; each arm runs from the lens's
outer edge toward the ear until the face's outline. Frames are anti-aliased from an approximate
signed distance (the superellipse function over its gradient), lit from above (a lighter top edge),
and cast a soft shadow down onto the skin; lenses get a faint tint and a diagonal reflection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class GlassesStyle:
    """One kind of frame (sizes in inter-ocular distances, colours RGB 0-255)."""

    width: float  # lens half-width a
    height: float  # lens half-height b
    roundness: float  # superellipse exponent n: 2 an ellipse, 4+ a rounded rectangle
    top_flare: float  # > 0: the lens is wider at the top than at the bottom (wayfarer)
    frame: float  # frame thickness
    color: tuple[int, int, int]
    lens_color: tuple[int, int, int]
    lens_alpha: float  # 0: clear glass; near 1: sunglasses


GLASSES_STYLES = {  # one per faceflex.choices.GLASSES_KINDS, in that order
    "rectangle": GlassesStyle(0.40, 0.26, 4.0, 0.0, 0.050, (28, 26, 28), (200, 215, 230), 0.10),
    "round": GlassesStyle(0.34, 0.31, 2.0, 0.0, 0.035, (60, 48, 40), (200, 215, 230), 0.10),
    "wayfarer": GlassesStyle(0.42, 0.28, 3.2, 0.18, 0.070, (20, 18, 20), (200, 215, 230), 0.12),
    "metal": GlassesStyle(0.38, 0.27, 3.0, 0.0, 0.022, (150, 145, 135), (200, 215, 230), 0.08),
    "sunglasses": GlassesStyle(0.42, 0.30, 3.0, 0.10, 0.060, (20, 20, 22), (25, 28, 32), 0.88),
}


def eye_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(centre of the image-left eye, of the image-right eye, unit vector from the first to the
    second, inter-ocular distance) from 68 landmarks (68, 2)."""
    points = np.asarray(landmarks, np.float64)
    left, right = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    axis = right - left
    distance = float(np.hypot(*axis))
    return left, right, axis / distance, distance


def _lens_field(px: np.ndarray, py: np.ndarray, centre, across, down, a: float, b: float, style: GlassesStyle) -> np.ndarray:
    """Approximate signed distance (pixels; < 0 inside) from pixel centres to a lens outline."""
    x = (px - centre[0]) * across[0] + (py - centre[1]) * across[1]
    y = (px - centre[0]) * down[0] + (py - centre[1]) * down[1]
    a_at = a * (1 + style.top_flare * np.clip(-y / b, -1, 1) * 0.5)  # wider at the top (y < 0) with a flare
    n = style.roundness
    u, v = np.abs(x) / a_at + 1e-9, np.abs(y) / b + 1e-9
    f = (u**n + v**n) ** (1 / n)
    # d f / d(x, y) of the superellipse norm, for the distance estimate f - 1 / |grad f|
    common = f ** (1 - n)
    gx, gy = common * u ** (n - 1) / a_at, common * v ** (n - 1) / b
    return (f - 1) / np.maximum(np.hypot(gx, gy), 1e-6)


def _segment_distance(px: np.ndarray, py: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance (pixels) from pixel centres to the segment p0-p1."""
    d = p1 - p0
    t = np.clip(((px - p0[0]) * d[0] + (py - p0[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
    return np.hypot(px - (p0[0] + t * d[0]), py - (p0[1] + t * d[1]))


def _over(base: np.ndarray, color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA ``base`` (h, w, 4) float in [0, 1] with ``color`` (h, w, 3) or (3,) at ``alpha`` (h, w) over it."""
    a_out = alpha + base[..., 3] * (1 - alpha)
    rgb = (color * alpha[..., None] + base[..., :3] * base[..., 3:] * (1 - alpha[..., None])) / np.maximum(a_out[..., None], 1e-6)
    return np.concatenate([rgb, a_out[..., None]], axis=-1)


def render_glasses(landmarks: np.ndarray, style: str = "rectangle") -> tuple[np.ndarray, tuple[int, int]]:
    """(RGBA patch (h, w, 4) uint8, straight alpha; (x0, y0): the photo pixel of its top-left, which
    may lie outside the photo) of glasses of ``style`` (:data:`GLASSES_STYLES`) on the face with 68
    ``landmarks`` (photo pixels)."""
    if style not in GLASSES_STYLES:
        raise ValueError(f"unknown glasses style {style!r}; choose one of {', '.join(GLASSES_STYLES)}")
    s = GLASSES_STYLES[style]
    points = np.asarray(landmarks, np.float64)
    left, right, across, d = eye_frame(points)
    down = np.array([-across[1], across[0]])  # the face's own downward direction
    widths = np.array([np.hypot(*(points[39] - points[36])), np.hypot(*(points[45] - points[42]))])
    widths = widths / widths.mean()  # a turned head's far eye (and lens) is narrower
    centres = [c + 0.06 * d * down - side * 0.02 * d * across for c, side in ((left, -1), (right, 1))]
    half = [(s.width * d * w, s.height * d) for w in widths]
    # the box: the lenses, arms to the face's outline, the shadow below
    ear_left, ear_right = points[0], points[16]
    corners = np.array(
        [
            ear_left,
            ear_right,
            *(c + k * np.array([a, b]).max() * v for c, (a, b) in zip(centres, half) for k in (-1.6, 1.6) for v in (across, down)),
        ]
    )
    pad = 0.15 * d + 2
    x0, y0 = np.floor(corners.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0) + pad).astype(int)
    py, px = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float64)
    thickness = max(s.frame * d, 1.2)
    frame_distance = np.full(px.shape, np.inf)
    inside = np.zeros(px.shape, bool)
    lens_depth = np.full(px.shape, np.inf)
    outer_points, inner_points = [], []
    glint = np.zeros(px.shape)
    for centre, (a, b), side in zip(centres, half, (-1, 1)):
        field = _lens_field(px, py, centre, across, down, a, b, s)
        frame_distance = np.minimum(frame_distance, np.abs(field + thickness / 2) - thickness / 2)
        inside |= field < 0
        lens_depth = np.minimum(lens_depth, field)
        outer_points.append(centre + side * a * across - 0.45 * b * down)  # where the arm leaves the lens
        inner_points.append(centre - side * 0.92 * a * across - 0.3 * b * down)  # where the bridge meets it
        # a soft reflection: a broad diagonal band across the lens's upper half
        diagonal = ((px - centre[0]) * (across[0] + down[0]) + (py - centre[1]) * (across[1] + down[1])) / (a + b)
        glint = np.maximum(glint, np.where(field < 0, np.exp(-((diagonal + 0.35) ** 2) / 0.05), 0.0))
    bridge_mid = (inner_points[0] + inner_points[1]) / 2 - 0.015 * d * down  # the bridge arches a little over the nose
    for p0, p1 in ((inner_points[0], bridge_mid), (bridge_mid, inner_points[1])):
        frame_distance = np.minimum(frame_distance, _segment_distance(px, py, p0, p1) - 0.6 * thickness)
    for start, ear in zip(outer_points, (ear_left, ear_right)):
        # the arm runs toward the ear along the eye line, up to the face's outline at the ear (landmark 0 / 16)
        reach = float((ear - start) @ across)
        end = start + reach * across
        if abs(reach) > 0.02 * d:
            frame_distance = np.minimum(frame_distance, _segment_distance(px, py, start, end) - 0.45 * thickness)
    frame_alpha = np.clip(0.5 - frame_distance, 0, 1)  # anti-aliased edge (one pixel wide)
    # light from above: the frame's top edge lighter, its bottom darker
    shade = np.clip(-((px - px.mean()) * down[0] + (py - py.mean()) * down[1]) / (0.3 * d), -1, 1)
    relief = np.clip(frame_distance / (thickness / 2) + 1, 0, 1)  # 0 at the frame's middle line, 1 at its edge
    # a highlight along the frame's middle line, brighter where it faces up
    highlight = 0.22 * (1 - relief) * np.clip(0.5 + shade, 0, 1)
    frame_rgb = np.asarray(s.color, np.float64)[None, None] / 255 * (1 + 0.25 * shade[..., None]) + highlight[..., None]
    patch = np.zeros(px.shape + (4,))
    # a soft shadow of the frame on the skin, a little below it
    shadow = Image.fromarray((frame_alpha * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(max(0.03 * d, 1.0)))
    offset = np.round(0.035 * d * down).astype(int)
    shadow_alpha = np.roll(np.asarray(shadow, np.float64) / 255, (offset[1], offset[0]), axis=(0, 1)) * 0.35
    patch = _over(patch, np.zeros(3), shadow_alpha)
    # the lens: a faint tint, and a reflection band across it
    lens_alpha = np.where(inside, s.lens_alpha, 0.0) * np.clip(-lens_depth, 0, 1)
    patch = _over(patch, np.asarray(s.lens_color, np.float64) / 255, lens_alpha)
    patch = _over(patch, np.ones(3), glint * 0.16 * np.clip(-lens_depth / 2, 0, 1))
    patch = _over(patch, np.clip(frame_rgb, 0, 1), frame_alpha)
    return (patch * 255 + 0.5).clip(0, 255).astype(np.uint8), (int(x0), int(y0))
