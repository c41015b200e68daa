"""``faceflex mask``: a face mask on every face (MaskTheFace's templates, fitted to the landmarks).

Per face: the template of the asked type, seen from the face's side (its yaw), recoloured or
textured if asked, warped by the homography that takes its six anchors onto the face's
(:func:`faceflex.face.mask_overlay.anchor_points`), dimmed to the photo's light, and composited at
full resolution. Random choices (``random`` type or texture) come from ``seed`` and the face itself,
so a photo gets the same masks whatever else is in the batch.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from faceflex.choices import MASK_KINDS
from faceflex.face.mask_overlay import (
    anchor_points,
    dimmed,
    load_mask_templates,
    render_mask,
    scene_brightness,
    styled,
    view_for,
)
from faceflex.face.masks import convex_hull
from faceflex.pipeline.flow import FaceCrop, Layer, StepOutput, Variant

RANDOM = "random"


def parse_color(text: str) -> tuple[int, int, int]:
    """An RGB triple from a CSS colour name or hex code (``navy``, ``#1f4e79``)."""
    try:
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        raise ValueError(f"unknown colour {text!r} (a name such as navy, or a hex code such as #1f4e79)") from None


def hull_coverage(alpha: np.ndarray, origin: tuple[int, int], landmarks: np.ndarray) -> float:
    """The fraction of the landmarks' convex hull (the face) that a mask patch's alpha covers."""
    hull = convex_hull(np.asarray(landmarks))
    x0, y0 = np.floor(hull.min(axis=0)).astype(int)
    x1, y1 = np.ceil(hull.max(axis=0)).astype(int) + 1
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(canvas).polygon([(float(x - x0), float(y - y0)) for x, y in hull], fill=255)
    face = np.asarray(canvas, np.float32) / 255.0
    covered = np.zeros_like(face)
    ox, oy = origin[0] - x0, origin[1] - y0
    h, w = alpha.shape
    ys, xs = slice(max(oy, 0), max(min(oy + h, face.shape[0]), 0)), slice(max(ox, 0), max(min(ox + w, face.shape[1]), 0))
    covered[ys, xs] = alpha[ys.start - oy : ys.stop - oy, xs.start - ox : xs.stop - ox]
    return float((covered * face).sum() / max(face.sum(), 1.0))


@dataclass(frozen=True)
class MaskSettings:
    kind: str = "surgical"  # one of MASK_KINDS, or "random"
    color: str | None = None  # CSS name or hex; None: the template's own colours
    texture: str | None = None  # "group/name" of a shipped texture, or "random"; None: none
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind != RANDOM and self.kind not in MASK_KINDS:
            raise ValueError(f"unknown mask type {self.kind!r}; choose one of {', '.join((*MASK_KINDS, RANDOM))}")
        if self.color is not None and self.texture is not None:
            raise ValueError("choose a colour or a texture, not both")
        if self.color is not None:
            parse_color(self.color)
        if self.texture not in (None, RANDOM):
            load_mask_templates().texture(self.texture)


class MaskStep:
    """One output per photo (product ``masked``); per face, what was put on and how much it covers."""

    command = "mask"
    aligned_size = None
    writes_variants = True
    picture_format = None

    def __init__(self, options: MaskSettings = MaskSettings()) -> None:
        self.options = options
        self.templates = load_mask_templates()

    def settings(self) -> dict:
        s = self.options
        return {"type": s.kind, "color": s.color, "texture": s.texture, "seed": s.seed}

    def _choices(self, crop: FaceCrop) -> tuple[str, str | None]:
        """(mask type, texture) for a face: random ones drawn from the seed and the face's landmarks."""
        s = self.options
        rng = np.random.default_rng([s.seed, crop.index, zlib.crc32(np.round(crop.face.landmarks).astype(np.int32).tobytes())])
        kind = s.kind if s.kind != RANDOM else str(rng.choice(MASK_KINDS))
        texture = s.texture if s.texture != RANDOM else str(rng.choice(sorted(self.templates.textures)))
        return kind, texture

    def __call__(self, photo: np.ndarray, crops: list[FaceCrop]) -> StepOutput:
        if not crops:
            return StepOutput([])
        s = self.options
        size = (photo.shape[1], photo.shape[0])
        color = parse_color(s.color) if s.color else None
        records, layers = [], []
        for crop in crops:
            landmarks = crop.face.landmarks
            kind, texture_name = self._choices(crop)
            view = view_for(landmarks)
            template = self.templates.template(kind, view)
            texture = self.templates.texture(texture_name) if texture_name else None
            placed = render_mask(styled(template, color, texture), template.anchors, anchor_points(landmarks), size)
            record = {"type": kind, "template": template.name, "view": view, "color": s.color, "texture": texture_name}
            if placed is None:
                records.append({**record, "coverage": 0.0})
                continue
            patch, origin = placed
            records.append({**record, "coverage": round(hull_coverage(patch[..., 3] / 255.0, origin, landmarks), 4)})
            layers.append(Layer(crop.index, dimmed(patch, scene_brightness(photo, landmarks)), None, "over", origin))
        return StepOutput(records, [Variant("masked", lambda: layers, {"faces": len(layers)})])
