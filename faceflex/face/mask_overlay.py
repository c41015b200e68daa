"""Putting a face mask on a face: MaskTheFace's templates fitted to six points from the 68 landmarks.

Conventions: images are (H, W, C) uint8 RGB(A); points are (x, y) in pixel-centre coordinates
(the centre of pixel column i is x = i), as dlib's landmarks are. A homography ``H`` maps
template points to image points: ``[x, y, 1] ~ H @ [u, v, 1]``.

The six anchors (MaskTheFace's a-f) are: a and c, the jaw at the height of the nose bridge;
b, the middle of the nose bridge; d and f, the jaw at the height of the lips; e, the chin. Heights
are measured along the face's own vertical axis (perpendicular to the line between the eyes),
so a tilted head gets a tilted mask. The templates' anchors were placed by MaskTheFace on the
same points; ``data/mask_templates.npz`` holds them (``scripts/make_mask_templates.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from faceflex.choices import MASK_KINDS
from faceflex.face.blend import paste_over
from faceflex.face.pose import FRONTAL_DEGREES, estimate_pose
from faceflex.shipped import shipped

MASK_TEMPLATES = "mask_templates.npz"
LEFT_JAW, RIGHT_JAW = np.arange(0, 9), np.arange(16, 7, -1)  # each from the top of the jaw to the chin


@dataclass(frozen=True)
class MaskTemplate:
    """One RGBA mask picture and its six anchors (template pixels, pixel-centre coordinates)."""

    name: str  # e.g. "surgical_left"
    rgba: np.ndarray  # (h, w, 4) uint8, straight (not premultiplied) alpha
    anchors: np.ndarray  # (6, 2) float: a-f


@dataclass(frozen=True)
class MaskTemplates:
    """The shipped templates by name, and the textures by ``group/name``."""

    templates: dict[str, MaskTemplate]
    textures: dict[str, np.ndarray]

    def template(self, kind: str, view: str = "front") -> MaskTemplate:
        """The template of ``kind`` seen from ``view`` (front, left or right; front when there is no side view)."""
        if kind not in MASK_KINDS:
            raise ValueError(f"unknown mask type {kind!r}; choose one of {', '.join(MASK_KINDS)}")
        name = kind if view == "front" else f"{kind}_{view}"
        return self.templates.get(name) or self.templates[kind]

    def texture(self, name: str) -> np.ndarray:
        if name not in self.textures:
            raise ValueError(f"unknown texture {name!r}; choose one of {', '.join(sorted(self.textures))}")
        return self.textures[name]


@functools.cache
def load_mask_templates() -> MaskTemplates:
    """The templates and textures shipped in ``data/mask_templates.npz`` (loaded once)."""
    with np.load(shipped(MASK_TEMPLATES)) as pack:
        templates = {
            k: MaskTemplate(k, pack[k], pack[f"{k}.anchors"].astype(np.float64)) for k in pack.files if "." not in k and ":" not in k
        }
        textures = {k.split(":", 1)[1]: pack[k] for k in pack.files if k.startswith("texture:")}
    return MaskTemplates(templates, textures)


def _jaw_at(landmarks: np.ndarray, jaw: np.ndarray, height: float, down: np.ndarray) -> np.ndarray:
    """The point of the jaw polyline ``jaw`` (indices, top to chin) whose height along ``down`` is ``height``."""
    points = landmarks[jaw]
    heights = points @ down
    for i in range(len(points) - 1):
        h0, h1 = heights[i], heights[i + 1]
        if (h0 - height) * (h1 - height) <= 0 and h0 != h1:
            t = (height - h0) / (h1 - h0)
            return points[i] + t * (points[i + 1] - points[i])
    return points[0] if abs(heights[0] - height) < abs(heights[-1] - height) else points[-1]


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """The six anchors a-f (6, 2) of a face from its 68 landmarks (see the module's docstring)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    across = lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0)  # left eye (image) to right eye
    across /= np.linalg.norm(across) + 1e-12
    down = np.array([-across[1], across[0]])  # the face's downward axis
    bridge = (lm[28] + lm[29]) / 2
    lips = (lm[62] + lm[66]) / 2
    top, low = bridge @ down, lips @ down
    return np.stack(
        [
            _jaw_at(lm, LEFT_JAW, top, down),
            bridge,
            _jaw_at(lm, RIGHT_JAW, top, down),
            _jaw_at(lm, LEFT_JAW, low, down),
            lm[8],
            _jaw_at(lm, RIGHT_JAW, low, down),
        ]
    )


def fit_homography(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3x3 homography H (H[2, 2] = 1) that maps ``source`` points to ``target`` points in the
    least-squares sense (normalised DLT; four points or more, not all on a line)."""

    def normaliser(points: np.ndarray) -> np.ndarray:
        centre = points.mean(axis=0)
        scale = np.sqrt(2) / (np.linalg.norm(points - centre, axis=1).mean() + 1e-12)
        return np.array([[scale, 0, -scale * centre[0]], [0, scale, -scale * centre[1]], [0, 0, 1]])

    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    ns, nt = normaliser(source), normaliser(target)
    s = (ns @ np.c_[source, np.ones(len(source))].T).T
    t = (nt @ np.c_[target, np.ones(len(target))].T).T
    rows = []
    for (u, v, _), (x, y, _) in zip(s, t):
        rows.append([u, v, 1, 0, 0, 0, -x * u, -x * v, -x])
        rows.append([0, 0, 0, u, v, 1, -y * u, -y * v, -y])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    h = np.linalg.inv(nt) @ vt[-1].reshape(3, 3) @ ns
    return h / h[2, 2]


def apply_homography(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped by the homography ``h``."""
    p = np.c_[np.asarray(points, np.float64), np.ones(len(points))] @ h.T
    return p[:, :2] / p[:, 2:3]


def view_for(landmarks: np.ndarray) -> str:
    """front, left or right: the template view for the face's yaw (left: the face turns to the image's left)."""
    yaw = estimate_pose(landmarks).yaw
    return "front" if abs(yaw) <= FRONTAL_DEGREES else ("right" if yaw > 0 else "left")


def styled(template: MaskTemplate, color: tuple[int, int, int] | None = None, texture: np.ndarray | None = None) -> np.ndarray:
    """The template's RGBA with its shading kept and its colour replaced by ``color`` or a tiled
    ``texture`` (the template's own colours when both are None). The shading is the template's
    luminance over its bright (90th-percentile) value, so folds and seams stay visible."""
    rgba = template.rgba
    if color is None and texture is None:
        return rgba
    rgb = rgba[..., :3].astype(np.float32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    inside = rgba[..., 3] > 128
    bright = np.percentile(luma[inside], 90) if inside.any() else 255.0
    shading = np.clip(luma / max(bright, 1.0), 0.0, 1.2)[..., None]
    if texture is not None:
        reps = (-(-rgba.shape[0] // texture.shape[0]), -(-rgba.shape[1] // texture.shape[1]), 1)
        paint = np.tile(texture, reps)[: rgba.shape[0], : rgba.shape[1]].astype(np.float32)
    else:
        paint = np.broadcast_to(np.asarray(color, np.float32), rgb.shape)
    out = rgba.copy()
    out[..., :3] = np.clip(paint * shading + 0.5, 0, 255).astype(np.uint8)
    return out


def render_mask(
    rgba: np.ndarray, anchors: np.ndarray, targets: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The RGBA mask picture warped so that its ``anchors`` land on ``targets`` in an image of
    ``size`` (width, height): the (h, w, 4) uint8 patch covering the mask's box inside the image
    and the patch's top-left (x0, y0); None when the mask falls outside the image."""
    h = fit_homography(anchors, targets)
    th, tw = rgba.shape[:2]
    corners = apply_homography(h, np.array([[-0.5, -0.5], [tw - 0.5, -0.5], [tw - 0.5, th - 0.5], [-0.5, th - 0.5]]))
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size[0]), min(y1, size[1])
    if x1 <= x0 or y1 <= y0:
        return None
    # Pillow maps output pixel (i, j) at continuous (i + 0.5, j + 0.5) to input continuous coordinates:
    # patch continuous -> image pixel-centre (+x0 - 0.5) -> template pixel-centre (H^-1) -> template continuous (+0.5)
    shift = np.array([[1, 0, x0 - 0.5], [0, 1, y0 - 0.5], [0, 0, 1]])
    back = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]]) @ np.linalg.inv(h) @ shift
    back /= back[2, 2]
    picture = Image.fromarray(rgba, "RGBA").convert("RGBa")
    warped = picture.transform((x1 - x0, y1 - y0), Image.Transform.PERSPECTIVE, tuple(back.ravel()[:8]), Image.Resampling.BICUBIC)
    return np.asarray(warped.convert("RGBA")), (int(x0), int(y0))


def coverage(patch: np.ndarray, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Where the mask covers an image of ``size`` (width, height): (H, W) float32 alpha in [0, 1]."""
    x0, y0 = origin
    out = np.zeros((size[1], size[0]), np.float32)
    out[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch[..., 3] / 255.0
    return out


def dimmed(patch: np.ndarray, brightness: float) -> np.ndarray:
    """The RGBA patch with its colours scaled by ``brightness`` (alpha unchanged)."""
    out = patch.copy()
    out[..., :3] = np.clip(patch[..., :3].astype(np.float32) * brightness + 0.5, 0, 255).astype(np.uint8)
    return out


def scene_brightness(image: np.ndarray, landmarks: np.ndarray) -> float:
    """A factor that dims a mask in a dark photo: the square root of the face's median luminance
    (inside the eyes-to-chin box) over a typical well-lit face's (150), clipped to [0.55, 1.1]."""
    lm = np.asarray(landmarks)
    x0, y0 = np.floor(lm.min(axis=0)).astype(int)
    x1, y1 = np.ceil(lm.max(axis=0)).astype(int)
    box = image[max(y0, 0) : max(y1, 1), max(x0, 0) : max(x1, 1), :3]
    if box.size == 0:
        return 1.0
    luma = float(np.median(box.reshape(-1, 3) @ np.array([0.299, 0.587, 0.114])))
    return float(np.clip(np.sqrt(luma / 150.0), 0.55, 1.1))


def ear_loops(landmarks: np.ndarray, corners: np.ndarray, size: tuple[int, int], width: float, rgb: tuple[int, int, int]) -> np.ndarray:
    """Two elastic ear loops per side as an RGBA layer (H, W, 4) uint8 of an image of ``size``
    (width, height): curves from the mask's top and bottom side corners (``corners``: the fitted
    anchors a-f) to a point just outside the jaw at ear height, ``width`` px thick, colour ``rgb``."""
    lm = np.asarray(landmarks, np.float64)
    face_width = np.linalg.norm(lm[16] - lm[0])
    scale = 2  # drawn at twice the size, then shrunk: smooth edges
    layer = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    draw = ImageDraw.Draw(layer)
    t = np.linspace(0.0, 1.0, 24)[:, None]
    for top, low, jaw_top in ((corners[0], corners[3], lm[0]), (corners[2], corners[5], lm[16])):
        outward = jaw_top - lm[27]
        outward /= np.linalg.norm(outward) + 1e-12
        ear = jaw_top + outward * 0.05 * face_width
        for start, bulge in ((top, 0.03), (low, 0.10)):
            control = (start + ear) / 2 + outward * bulge * face_width
            curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * ear
            draw.line([tuple(p) for p in ((curve + 0.5) * scale - 0.5)], fill=255, width=max(1, round(width * scale)), joint="curve")
    alpha = np.asarray(layer.resize(size, Image.Resampling.BOX))
    return np.dstack([np.broadcast_to(np.array(rgb, np.uint8), (size[1], size[0], 3)), alpha])


def synthetic_mask(
    image: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    templates: MaskTemplates | None = None,
    loops: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A randomly varied mask on ``image`` (RGB uint8, any size) for training data: (masked image,
    the mask's alpha (H, W) float32 in [0, 1], the exact segmentation label).

    Varied: the type (surgical ones twice as likely), the template's own colours (40 %), a random
    colour (30 %) or a random texture (30 %), each anchor moved by up to 3 % of the face width, the
    top edge raised or lowered (nose covered or not), brightness x 0.6-1.15 of the photo's light,
    and a blur of 0-1 px (camera softness). With probability ``loops`` the mask has ear loops
    (:func:`ear_loops`, light grey to white, 0.8-2 % of the face width thick), part of the label."""
    templates = templates or load_mask_templates()
    weights = np.array([2.0 if kind.startswith("surgical") else 1.0 for kind in MASK_KINDS])
    kind = str(rng.choice(MASK_KINDS, p=weights / weights.sum()))
    template = templates.template(kind, view_for(landmarks))
    style = rng.random()
    if style < 0.4:
        rgba = template.rgba
    elif style < 0.7:
        rgba = styled(template, color=tuple(int(v) for v in rng.integers(0, 256, 3)))
    else:
        rgba = styled(template, texture=templates.texture(str(rng.choice(sorted(templates.textures)))))
    targets = anchor_points(landmarks)
    width = np.linalg.norm(targets[2] - targets[0])
    targets = targets + rng.normal(0.0, 0.015 * width, targets.shape).clip(-0.03 * width, 0.03 * width)
    targets[:3, 1] += rng.uniform(-0.06, 0.08) * width  # the top edge: over the nose bridge or lower
    size = (image.shape[1], image.shape[0])
    placed = render_mask(rgba, template.anchors, targets, size)
    if placed is None:
        return image.copy(), np.zeros(image.shape[:2], np.float32)
    patch, origin = placed
    sigma = rng.uniform(0.0, 1.0)
    if sigma > 0.2:
        patch = np.asarray(Image.fromarray(patch, "RGBA").convert("RGBa").filter(ImageFilter.GaussianBlur(sigma)).convert("RGBA"))
    brightness = scene_brightness(image, landmarks) * rng.uniform(0.6, 1.15)
    patch = dimmed(patch, brightness)
    base, label = image[..., :3], coverage(patch, origin, size)
    if loops and rng.random() < loops:
        grey = int(rng.integers(190, 256))
        layer = dimmed(ear_loops(landmarks, targets, size, rng.uniform(0.008, 0.02) * width, (grey, grey, grey)), brightness)
        base, label = paste_over(base, layer, (0, 0)), np.maximum(label, layer[..., 3] / 255.0)
    return paste_over(base, patch, origin), label
