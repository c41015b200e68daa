"""The per-photo flow every command shares: detect -> align -> the command's step -> paste back.

A **step** (one per command, in :mod:`faceflex.steps`) is handed the photo and every face of it,
aligned at the size the step asks for, in one call, and returns what it found (one record per
face) and what to paint (variants: output images, each a list of per-face layers). This module
does everything around it, the same way for every command: detection, alignment, pasting each
layer back through its mask, and composing each output image only when it is asked for, so
that a photo with many variants is processed in bounded memory.

Conventions: photos are (H, W, 3) uint8 RGB; a layer's pixels and mask are in the face's aligned
frame (``FaceCrop.aligned.matrix`` maps photo -> aligned).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from faceflex.face.align import AlignedFace, align_face, invert_affine, transform_points
from faceflex.face.blend import PasteCache, paste_back, paste_back_with_grain, paste_delta, paste_detail, paste_over, paste_warp
from faceflex.face.detect import DetectSettings, Face, detect_faces
from faceflex.face.tracking import FaceTracker

FACES_CHOICES = ("all", "largest")
LAYER_MODES = ("replace", "add", "warp", "over", "detail")


@dataclass(frozen=True)
class FaceCrop:
    """One face of the photo, handed to a step."""

    index: int  # position in the photo's faces (largest first)
    face: Face  # box, score and 68 landmarks in photo pixels
    aligned: AlignedFace | None  # at the step's ``aligned_size``; None when the step needs none
    track: int | None = None  # video frames: the face's track (the same face keeps it from frame to frame)

    @property
    def key(self) -> int:
        """What names this face across a video (its track) or in a photo (its index)."""
        return self.index if self.track is None else self.track


@dataclass(frozen=True)
class Layer:
    """One face's contribution to an output image, in that face's aligned frame.

    ``mode`` ``"replace"``: ``pixels`` (S, S, 3) uint8 are blended in through ``mask``;
    ``"add"``: ``pixels`` (S, S, 3) float32 is a change in 0-255 units added through ``mask``
    (an all-zero change leaves the photo bit for bit); ``"warp"``: ``pixels`` (2, N, 2) are points
    in the aligned frame, [sources, targets]: the photo's own pixels move so that the sources land
    on the targets (:func:`faceflex.face.blend.paste_warp`; ``mask`` unused); ``"over"``: ``pixels``
    (h, w, 4) uint8 RGBA in *photo* pixels, composited with their alpha at ``origin`` (x0, y0), the
    patch's top-left pixel, the part outside the photo dropped (``mask`` unused; the face needs no aligned crop);
    ``"detail"``: ``pixels`` (B, S, S) float32 are log gains of the photo's own detail bands, applied at
    the photo's resolution through ``mask`` (:func:`faceflex.face.blend.paste_detail`).
    ``amount`` (``"add"`` and ``"detail"``) multiplies ``pixels``: outputs that differ only by it share
    the arrays, which :func:`compose` then places into the photo once (its ``cache``).
    """

    face: int
    pixels: np.ndarray
    mask: np.ndarray | None  # (S, S) float32 in [0, 1]
    mode: str = "replace"
    origin: tuple[int, int] = (0, 0)  # "over" only
    grain: bool = False  # "replace" only: painted pixels get the photo's fine grain where they are enlarged (paste_back_with_grain)
    amount: float = 1.0  # "add" and "detail" only: the change (log gains) multiplied by it
    shading: np.ndarray | None = None  # "add" only, (S, S): where a change made for skin is scaled by each pixel's luminance (paste_delta)


@dataclass(frozen=True)
class Variant:
    """One output image of a photo: the photo with ``layers`` pasted on it.

    ``layers`` is a callable so that the pixels of a variant exist only while it is being
    composed. ``info`` goes into the manifest beside the output's path; ``measure``, when set, is
    called on the composed image and its result joins ``info`` (a ``"warning"`` key is also said
    to the user); ``row``/``column``/``title`` place it in the contact sheet (steps without a
    sheet leave ``row`` None).
    """

    product: str  # output name part: <stem>.<product>.<ext>
    layers: Callable[[], Sequence[Layer]]
    info: dict = field(default_factory=dict)
    row: int | None = None
    column: int = 0
    title: str = ""
    measure: Callable[[np.ndarray], dict] | None = None


@dataclass
class StepOutput:
    """What a step returns for one photo."""

    records: list[dict]  # one per face, in the order of the crops
    variants: Iterable[Variant] = ()  # output images, composed lazily in this order
    pictures: dict[str, np.ndarray] = field(default_factory=dict)  # product -> extra RGB picture (e.g. mask panels)
    sheet_columns: int = 0  # columns of the contact sheet the variants' row/column place them in (0: no sheet)
    crops: list[FaceCrop] | None = None  # the crops worked on, where the step placed a face again (unmask: another detector's box)


class Step(Protocol):
    """A command's model step. ``aligned_size`` None: the step needs no aligned crops."""

    command: str
    aligned_size: int | None
    writes_variants: bool  # True when the step paints the photo (outputs keep the input's format and alpha)
    picture_format: str | None  # file format of the step's extra pictures (None: the input's)
    # optional: ``alignment_points``, the landmark indices the alignment is fitted on (default: all 68);
    # ``pictures_in_videos`` (False: its pictures are saved for photos only); ``start_video()``, called
    # before a video's first frame (a step that keeps something per face track)

    def settings(self) -> dict:
        """JSON-ready settings, recorded in the manifest header."""
        ...

    def __call__(self, photo: np.ndarray, crops: list[FaceCrop]) -> StepOutput: ...


@dataclass
class PhotoResult:
    """A photo run through a step."""

    photo: np.ndarray
    crops: list[FaceCrop]
    output: StepOutput
    tracked: bool = False  # a video frame: the records carry each face's track

    @property
    def faces(self) -> list[Face]:
        return [crop.face for crop in self.crops]

    @property
    def records(self) -> list[dict]:
        """Per-face records: index, box and score, then the step's fields."""
        return [
            {
                "index": crop.index,
                **({"track": crop.track} if self.tracked else {}),
                "box": [round(float(v), 2) for v in crop.face.box],
                "score": round(float(crop.face.score), 4),
                **record,
            }
            for crop, record in zip(self.crops, self.output.records)
        ]

    def images(self) -> Iterator[tuple[Variant, np.ndarray]]:
        """Each variant composed at full resolution, one at a time (what they share placed once)."""
        cache = PasteCache(self.photo)
        for variant in self.output.variants:
            yield variant, compose(self.photo, self.crops, variant.layers(), cache)


def _inside(patch: np.ndarray, origin: tuple[int, int], shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of an RGBA ``patch`` at ``origin`` (x0, y0) that lies inside an image of ``shape``, and its origin."""
    x0, y0 = origin
    left, top = max(0, -x0), max(0, -y0)
    right, bottom = min(patch.shape[1], shape[1] - x0), min(patch.shape[0], shape[0] - y0)
    if right <= left or bottom <= top:
        return np.zeros((1, 1, 4), np.uint8), (0, 0)
    return patch[top:bottom, left:right], (x0 + left, y0 + top)


def compose(photo: np.ndarray, crops: Sequence[FaceCrop], layers: Iterable[Layer], cache: PasteCache | None = None) -> np.ndarray:
    """The photo with each layer pasted back through its face's inverse alignment (a new array).
    ``cache``: one made for ``photo``, passed for each of its outputs, keeps what they share (:class:`PasteCache`)."""
    result = photo
    for layer in layers:
        if layer.mode == "over":
            result = paste_over(result, *_inside(layer.pixels, layer.origin, result.shape))
            continue
        aligned = crops[layer.face].aligned
        if aligned is None:
            raise ValueError("a layer needs its face's aligned crop (the step's aligned_size is None)")
        if layer.mode == "warp":
            to_photo = invert_affine(aligned.matrix)
            result = paste_warp(result, transform_points(layer.pixels[0], to_photo), transform_points(layer.pixels[1], to_photo), cache)
        elif layer.mode == "add":
            result = paste_delta(result, layer.pixels, aligned.matrix, layer.mask, layer.amount, cache, layer.shading)
        elif layer.mode == "detail":
            result = paste_detail(result, layer.pixels, aligned.matrix, layer.mask, layer.amount, cache)
        elif layer.mode == "replace" and layer.grain:
            result = paste_back_with_grain(result, layer.pixels, aligned.matrix, layer.mask)
        elif layer.mode == "replace":
            result = paste_back(result, layer.pixels, aligned.matrix, layer.mask)
        else:
            raise ValueError(f"unknown layer mode {layer.mode!r}; choose one of {', '.join(LAYER_MODES)}")
    return result.copy() if result is photo else result


def select_faces(faces: list[Face], which: str) -> list[Face]:
    """``all`` faces, or only the ``largest`` (faces come largest first)."""
    if which not in FACES_CHOICES:
        raise ValueError(f"faces must be one of {', '.join(FACES_CHOICES)}, not {which!r}")
    return faces[:1] if which == "largest" else faces


def run_step(
    photo: np.ndarray, step: Step, detect: DetectSettings | None = None, faces: str = "all", tracker: FaceTracker | None = None
) -> PhotoResult:
    """Detect the faces of an RGB photo, align them at the step's size, and run the step on all of
    them at once; ``tracker`` (video frames): give each face its track."""
    found = select_faces(detect_faces(photo, detect), faces)
    size = step.aligned_size
    points = getattr(step, "alignment_points", None)
    tracks = tracker.assign([face.box for face in found]) if tracker is not None else [None] * len(found)
    crops = [
        FaceCrop(i, face, align_face(photo, face.landmarks, size, points) if size else None, track)
        for i, (face, track) in enumerate(zip(found, tracks))
    ]
    output = step(photo, crops)
    return PhotoResult(photo, output.crops or crops, output, tracked=tracker is not None)
