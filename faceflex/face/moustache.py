"""Putting a moustache on a face: hair strands drawn from the 68 landmarks, at the photo's own resolution.

A network trained on the CPU paints a faint smudge where a moustache should go (docs/EDIT.md);
hair is strands, so faceflex draws strands. Conventions as :mod:`faceflex.face.glasses`: points are
(x, y) in pixel-centre coordinates, the result a straight-alpha RGBA patch (h, w, 4) uint8 and the
photo pixel of its top-left corner; sizes in units of the inter-ocular distance d.

The moustache fills the band between the nose's base (landmarks 31-35) and the top of the upper lip
(48-54), a little past the mouth's corners. Strands root in that band (seeded), grow down and
outward (more outward the further from the middle), slightly curved, each of its own length and
shade, their tips cut off just below the upper lip's top edge (teeth stay in view); under them a
soft fill of the same colour gives the moustache body. The colour is the person's hair colour, read
from the darker pixels of their eyebrows.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from faceflex.face.glasses import eye_frame

SUPERSAMPLE = 4  # strands are drawn at 4x and reduced: anti-aliased hairs
OVERHANG = 0.04  # how far (in d) strand tips may hang below the upper lip's top edge


def hair_color(photo: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """RGB (3,) float in 0-255: 0.85 x the mean of the darkest sixth of the pixels around the eyebrows
    (landmarks 17-26): brow pixels mix hair with the skin under it, so hair alone is darker."""
    points = np.asarray(landmarks, np.float64)
    _, _, _, d = eye_frame(points)
    r = max(1, int(round(0.05 * d)))
    samples = []
    for x, y in np.round(points[17:27]).astype(int):
        patch = photo[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1].reshape(-1, 3)
        samples.append(patch)
    pixels = np.concatenate(samples).astype(np.float64)
    if not len(pixels):
        return np.array([42.0, 32.0, 25.0])
    luminance = pixels @ np.array([0.299, 0.587, 0.114])
    return 0.85 * pixels[luminance <= np.quantile(luminance, 1 / 6)].mean(axis=0)


def render_moustache(landmarks: np.ndarray, color: np.ndarray, seed: int = 0, density: float = 1.0) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGBA patch (h, w, 4) uint8, straight alpha; (x0, y0): the photo pixel of its top-left, which
    may lie outside the photo) of a moustache of hair ``color`` (RGB 0-255) on the face with 68
    ``landmarks`` (photo pixels); ``seed`` places the strands, ``density`` scales their number."""
    points = np.asarray(landmarks, np.float64)
    _, _, across, d = eye_frame(points)
    down = np.array([-across[1], across[0]])
    # the band: its top follows the nose's base, its bottom the upper lip's top edge (both widened past the corners)
    lip = points[[48, 49, 50, 51, 52, 53, 54]]
    nose = points[33] + 0.02 * d * down
    corners = points[[48, 54]]
    x0, y0 = np.floor(np.minimum(corners.min(axis=0), nose) - 0.35 * d).astype(int)
    x1, y1 = np.ceil(np.maximum(corners.max(axis=0), lip.max(axis=0)) + 0.35 * d).astype(int)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    rng = np.random.default_rng(seed)
    count = int(1000 * density)
    u = rng.uniform(-1.15, 1.15, count)  # across the mouth: -1 and 1 at its corners
    t = rng.beta(1.6, 1.3, count)  # from the nose's base (0) to the lip (1)
    # the lip's top edge at u (piecewise linear through 48-54), the nose's base above it
    lip_u = np.linspace(-1, 1, len(lip))
    bottom = np.stack([np.interp(u, lip_u, lip[:, k]) for k in (0, 1)], axis=1)
    reach = np.abs(u)
    top = nose + np.outer(u, (corners[1] - corners[0]) / 2 * 0.95) + np.outer(0.06 * d * reach**2, down)
    roots = top + t[:, None] * (bottom - top) - np.outer(0.05 * d * t, down)
    roots += np.outer(rng.normal(0, 0.01 * d, count), across)
    angle = np.deg2rad(u * 38 + rng.normal(0, 10, count))  # from straight down, outward away from the middle
    direction = np.cos(angle)[:, None] * down + np.sin(angle)[:, None] * across
    length = d * rng.uniform(0.07, 0.22, count) * (1 - 0.35 * reach.clip(0, 1))
    bend = np.outer(np.sign(u) * 0.25 * length, across)  # strands curve outward as they grow
    shade = np.clip(np.asarray(color, np.float64)[None] * rng.uniform(0.7, 1.25, (count, 1)), 0, 255)
    stroke = max(1, int(round(0.011 * d * SUPERSAMPLE)))
    canvas = Image.new("RGBA", (w * SUPERSAMPLE, h * SUPERSAMPLE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for k in np.argsort(t):  # the lower strands over the upper ones
        p0 = roots[k]
        p2 = p0 + direction[k] * length[k] + bend[k]
        p1 = (p0 + p2) / 2 + bend[k] * 0.5
        s = np.linspace(0, 1, 5)[:, None]
        curve = (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s**2 * p2  # a quadratic Bezier
        path = [((x - x0 + 0.5) * SUPERSAMPLE, (y - y0 + 0.5) * SUPERSAMPLE) for x, y in curve]
        draw.line(path, fill=(*np.round(shade[k]).astype(int), int(rng.uniform(150, 235))), width=stroke)
    strands = np.asarray(canvas.resize((w, h), Image.LANCZOS), np.float64) / 255
    # tips hang over the upper lip at most OVERHANG d (a smile's teeth stay in view): alpha fades out below
    grid = np.stack(np.meshgrid(np.arange(w) + x0, np.arange(h) + y0), axis=-1) - points[51]
    lip_across, lip_down = (lip - points[51]) @ across, (lip - points[51]) @ down
    below = grid @ down - np.interp(grid @ across, lip_across, lip_down)
    strands[..., 3] *= np.clip(1 - (below - OVERHANG * d) / (0.03 * d), 0, 1)
    # the body: a soft fill of the hair colour under the strands
    fill = Image.fromarray((strands[..., 3] * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(max(1.0, 0.025 * d)))
    body_alpha = np.clip(np.asarray(fill, np.float64) / 255 * 1.6, 0, 1) * 0.55
    a_out = strands[..., 3] + body_alpha * (1 - strands[..., 3])
    base = np.asarray(color, np.float64) / 255 * 0.85
    rgb = (strands[..., :3] * strands[..., 3:] + base * (body_alpha * (1 - strands[..., 3]))[..., None]) / np.maximum(
        a_out[..., None], 1e-6
    )
    patch = np.concatenate([rgb, a_out[..., None]], axis=-1)
    return (patch * 255 + 0.5).clip(0, 255).astype(np.uint8), (int(x0), int(y0))
