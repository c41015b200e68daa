"""What the face painters (the anonymizer, the attribute painter) are shown of a face: its landmarks
drawn as lines, and the hole where the face, or one region of it, was.

Coordinates are pixel coordinates of the aligned frame (pixel centres at integer + 0.5 after
Pillow's convention: a point (x, y) lies in pixel (floor(x), floor(y))); images are (H, W) or
(C, H, W) float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from faceflex.face.masks import OUTER_LIPS, convex_hull, polygon_mask, region_polygons

# The parts drawn, one channel each: (landmark indices, closed outline?)
SKETCH_PARTS: tuple[tuple[tuple[int, ...], bool], ...] = (
    (tuple(range(0, 17)), False),  # jaw
    (tuple(range(17, 22)), False),  # brows (two strokes in one channel)
    (tuple(range(27, 31)) + (33,), False),  # nose bridge and tip
    (tuple(range(36, 42)), True),  # eyes (two outlines in one channel)
    (tuple(range(48, 60)), True),  # outer lips
    (tuple(range(60, 68)), True),  # inner lips (the mouth's opening)
)
_SECOND_STROKE = {1: (tuple(range(22, 27)), False), 3: (tuple(range(42, 48)), True)}  # right brow, right eye
SKETCH_CHANNELS = len(SKETCH_PARTS)
_SUPERSAMPLE = 2


def landmark_sketch(landmarks: np.ndarray, size: int = 128) -> np.ndarray:
    """(SKETCH_CHANNELS, size, size) float32 in [0, 1]: each part's polyline about 1 px wide,
    anti-aliased (drawn at 2x and averaged down), plus the nose's lower edge in the nose channel."""
    points = np.asarray(landmarks, dtype=np.float64) * _SUPERSAMPLE
    big = size * _SUPERSAMPLE
    channels = []
    for index, part in enumerate(SKETCH_PARTS):
        canvas = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(canvas)
        strokes = [part] + ([_SECOND_STROKE[index]] if index in _SECOND_STROKE else [])
        if index == 2:
            strokes.append((tuple(range(31, 36)), False))  # the nostrils' line
        for indices, closed in strokes:
            line = [(float(x), float(y)) for x, y in points[list(indices)]]
            draw.line(line + line[:1] if closed else line, fill=255, width=_SUPERSAMPLE)
        small = np.asarray(canvas, np.float32).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))
        channels.append(small / 255.0)
    return np.stack(channels)


def _grown(mask: np.ndarray, grow: int) -> np.ndarray:
    """A 0/1 mask grown by ``grow`` px (a square neighbourhood's maximum)."""
    if not grow:
        return mask
    padded = np.pad(mask, grow)
    return np.lib.stride_tricks.sliding_window_view(padded, (2 * grow + 1, 2 * grow + 1)).max(axis=(2, 3))


def region_hole(landmarks: np.ndarray, region: str = "face", size: int = 128, grow: int = 2) -> np.ndarray:
    """(size, size) float32, 1 where a region is taken away before a painter fills it: one of
    faceflex's landmark regions (:func:`faceflex.face.masks.region_polygons`; "face" = jaw, brows
    and forehead, where the anonymizer paints a new face) grown by ``grow`` px, hard-edged; or
    "frames": the "eyes" region (temple to temple) without the eyes themselves (their lids grown by
    ``grow`` px), where glasses' frames lie: the eyes behind clear lenses stay the person's own; or
    "skin": the "face" region without the eyes and brows (grown by ``grow`` px), where age shows; or
    "beard": the "lower-face" region reaching 5 % of the frame below the jaw (a beard grows under the
    chin too), without the lips (grown by ``grow`` px)."""
    if region == "beard":
        points = np.asarray(landmarks, np.float64)
        under_chin = points[4:13] + (0, 0.05 * size)
        lower = polygon_mask([convex_hull(np.vstack([*region_polygons(points, "lower-face"), under_chin]))], (size, size))
        lips = polygon_mask([points[OUTER_LIPS]], (size, size))
        return (_grown(lower, grow) * (1 - _grown(lips, grow))).astype(np.float32)
    if region in ("frames", "skin"):
        points = np.asarray(landmarks, np.float64)
        kept = [points[list(eye)] for eye in _EYES]
        if region == "skin":  # a brow's points run along its top edge: its lower edge lies about 3 % of the frame below
            kept += [np.vstack([points[list(brow)], points[list(brow)][::-1] + (0, 0.03 * size)]) for brow in _BROWS]
        kept = polygon_mask(kept, (size, size))
        around = region_hole(landmarks, "eyes" if region == "frames" else "face", size, grow)
        return (around * (1 - _grown(kept, grow))).astype(np.float32)
    return _grown(polygon_mask(region_polygons(landmarks, region), (size, size)), grow).astype(np.float32)


def painter_input(face: np.ndarray, hole: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """A face painter's input for an aligned face (H, W, 3) uint8: (3 + 1 + SKETCH_CHANNELS, H, W)
    float32 in [0, 1] = the face with the ``hole`` (H, W) filled with mid-grey, the hole, the
    sketch of the landmarks ``drawn``. The face's own pixels inside the hole never reach the network."""
    rgb = np.asarray(face, np.float32).transpose(2, 0, 1) / 255.0
    rgb = rgb * (1 - hole) + 0.5 * hole
    return np.concatenate([rgb, hole[None], landmark_sketch(drawn, face.shape[0])]).astype(np.float32)


def anonymizer_input(face: np.ndarray, landmarks: np.ndarray, drawn: np.ndarray | None = None) -> np.ndarray:
    """The anonymizer's input: :func:`painter_input` with the whole face region (from ``landmarks``)
    as the hole, and the sketch of ``drawn`` (default ``landmarks``)."""
    return painter_input(face, region_hole(landmarks, "face", face.shape[0]), landmarks if drawn is None else drawn)


# Inner parts whose place and size tell people apart, and the points that anchor them.
_EYES = (tuple(range(36, 42)), tuple(range(42, 48)))
_BROWS = (tuple(range(17, 22)), tuple(range(22, 27)))
_NOSE = tuple(range(27, 36))
_MOUTH = tuple(range(48, 68))
_UPPER_LIP_TOP = (50, 51, 52)  # moves least as the mouth opens or smiles


def expression_landmarks(landmarks: np.ndarray, template: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Landmarks (aligned frame) whose face proportions are moved ``strength`` (0-1) of the way to the
    ``template``'s while the expression is kept: each eye moves to the template's place keeping its
    own shape (how open it is), each brow moves with its eye (so a raised brow stays raised), the
    nose takes the template's place and size, the mouth moves so that the top of its upper lip is
    where the template's is, keeping its own shape (width, smile, opening); the jaw is kept (it meets
    the surroundings). (68, 2) float64."""
    points, target = np.asarray(landmarks, np.float64), np.asarray(template, np.float64)
    out = points.copy()
    for eye, brow in zip(_EYES, _BROWS):
        shift = strength * (target[list(eye)].mean(axis=0) - points[list(eye)].mean(axis=0))
        out[list(eye)] += shift
        out[list(brow)] += shift
    nose, tnose = points[list(_NOSE)], target[list(_NOSE)]
    centre, tcentre = nose.mean(axis=0), tnose.mean(axis=0)
    scale = np.sqrt(((tnose - tcentre) ** 2).sum(axis=1).mean() / max(((nose - centre) ** 2).sum(axis=1).mean(), 1e-9))
    out[list(_NOSE)] = centre + strength * (tcentre - centre) + (nose - centre) * (1 + strength * (scale - 1))
    anchor = strength * (target[list(_UPPER_LIP_TOP)].mean(axis=0) - points[list(_UPPER_LIP_TOP)].mean(axis=0))
    out[list(_MOUTH)] += anchor
    return out
