"""Find every face in a photo: dlib detection at a per-image working scale, then 68 landmarks.

The working scale rule (see README, "How faces are found"): dlib's detectors see faces of about
80 px and up. A photo whose long side L exceeds ``max_side`` is shrunk to ``max_side`` (large
photos never pay for upsampling); a smaller photo is enlarged towards ``upscale_side``, at most
``max_upscale`` times, so that small photos are searched for faces down to 80 / max_upscale px
(40 px by default). ``upsample`` adds dlib's own pyramid doublings on top of that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from faceflex.choices import DETECTORS
from faceflex.face import dlib_models


@dataclass(frozen=True)
class DetectSettings:
    """How faces are searched for; every field is also a ``detect:`` key of the config."""

    detector: str = "hog"  # one of faceflex.choices.DETECTORS: "hog", "cnn", "hog+cnn", "hog+masked"
    max_side: int = 800  # photos larger than this are searched on a copy shrunk to it
    upscale_side: int = 1024  # smaller photos are enlarged towards this long side ...
    max_upscale: float = 2.0  # ... by at most this factor
    upsample: int = 0  # extra dlib upsampling (x2 each) of the working copy
    threshold: float = 0.0  # minimum detection score (HOG: SVM margin; CNN: confidence)
    min_face: float = 0.0  # drop faces whose box side (in photo px) is smaller than this

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {self.detector!r}")
        if self.max_side < 80 or self.upscale_side < 80:
            raise ValueError("max_side and upscale_side must be at least 80 px")
        if not 1.0 <= self.max_upscale <= 8.0:
            raise ValueError("max_upscale must be between 1 and 8")
        if not 0 <= self.upsample <= 3:
            raise ValueError("upsample must be between 0 and 3")


@dataclass(frozen=True)
class Face:
    """One detected face, in the coordinates of the full-resolution photo."""

    box: tuple[float, float, float, float]  # left, top, right, bottom (pixel centres at integers)
    score: float
    landmarks: np.ndarray = field(repr=False)  # (68, 2) float64, (x, y)
    # (box, score) of the same face found by a later detector of a merged strategy ("hog+masked"), kept
    # for a step that can tell a wrong box (unmask: no mask seen where another detector's box sees one)
    alternates: tuple[tuple[tuple[float, float, float, float], float], ...] = field(default=(), repr=False)

    @property
    def size(self) -> float:
        """Side of the detection box in photo pixels (geometric mean of width and height)."""
        left, top, right, bottom = self.box
        return float(np.sqrt(max(right - left, 0.0) * max(bottom - top, 0.0)))

    def to_dict(self, decimals: int = 2) -> dict:
        """JSON-ready record: box, score and the 68 landmarks."""
        return {
            "box": [round(float(v), decimals) for v in self.box],
            "score": round(float(self.score), 4),
            "size": round(self.size, decimals),
            "landmarks": np.round(self.landmarks, decimals).tolist(),
        }


def working_scale(width: int, height: int, settings: DetectSettings) -> float:
    """Scale factor of the copy the detector runs on (the rule in the module docstring)."""
    long_side = max(width, height)
    if long_side > settings.max_side:
        return settings.max_side / long_side
    return float(min(settings.max_upscale, max(1.0, settings.upscale_side / long_side)))


def detect_boxes(
    rgb: np.ndarray, settings: DetectSettings
) -> list[tuple[tuple[float, float, float, float], float, list[tuple[tuple[float, float, float, float], float]]]]:
    """Face boxes (in photo coordinates) and scores above the threshold, largest first, each with
    the (box, score) of later detectors that found the same face (its alternates)."""
    height, width = rgb.shape[:2]
    scale = working_scale(width, height, settings)
    # The working copy is grey: dlib's HOG sees the same faces (43/43 on the VOC photos) 25% faster.
    grey = Image.fromarray(rgb).convert("L")
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        grey = grey.resize(size, Image.Resampling.BILINEAR)
    work = np.asarray(grey)
    sx, sy = width / size[0], height / size[1]

    def photo_box(rect) -> tuple[float, float, float, float]:
        # dlib rectangles are inclusive pixel ranges; map their edges (not centres) back.
        return (
            (rect.left() + 0.5) * sx - 0.5,
            (rect.top() + 0.5) * sy - 0.5,
            (rect.right() + 0.5) * sx - 0.5,
            (rect.bottom() + 0.5) * sy - 0.5,
        )

    kept: list = []  # [rect, score, alternates]
    for part in settings.detector.split("+"):  # merged: a later detector's box that overlaps an earlier one is the same face
        if part == "cnn":
            detections = dlib_models.cnn_detector()(np.asarray(Image.fromarray(work).convert("RGB")), settings.upsample)
            more = [(d.rect, d.confidence) for d in detections if d.confidence >= settings.threshold]
        elif part == "upper":  # its boxes are the face box's top: extended down to the whole box
            rects, scores, _ = dlib_models.upper_face_detector().run(work, settings.upsample, settings.threshold)
            more = [(_whole_face(rect), score) for rect, score in zip(rects, scores)]
        else:
            detector = dlib_models.hog_detector() if part == "hog" else dlib_models.masked_detector()
            rects, scores, _ = detector.run(work, settings.upsample, settings.threshold)
            more = list(zip(rects, scores))
        new = []
        for rect, score in more:
            same = [entry for entry in kept if _overlap(rect, entry[0]) >= 0.3]
            if same:
                same[0][2].append((photo_box(rect), float(score)))
            else:
                new.append([rect, score, []])
        kept += new
    found = [(photo_box(rect), float(score), alternates) for rect, score, alternates in kept]
    found = [item for item in found if min(item[0][2] - item[0][0], item[0][3] - item[0][1]) >= settings.min_face]
    found.sort(key=lambda item: -(item[0][2] - item[0][0]) * (item[0][3] - item[0][1]))
    return found


def upper_face_score(rgb: np.ndarray, box: tuple[float, float, float, float], face_size: float = 100.0) -> float:
    """How surely faceflex's upper-face detector sees brows, eyes and a nose bridge at the top of
    ``box`` (x0, y0, x1, y1, photo pixels) in an RGB photo: its best score for a window centred
    within the box's middle (across) and upper part, looked for in a crop around the box scaled so
    that the box is ``face_size`` px; -inf where it sees none. Masked faces score -0.32 and up
    (16 of 16: docs/UNMASK.md), a mission patch on a suit nothing."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1.0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.9 * side
    scale = face_size / side
    crop = Image.fromarray(np.asarray(rgb)[..., :3]).convert("L").crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half)))
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.Resampling.BILINEAR)
    rects, scores, _ = dlib_models.upper_face_detector().run(np.asarray(crop), 0, -1.5)
    left, top = int(cx - half), int(cy - half)  # the crop's origin (Pillow pads outside the photo)
    best = -np.inf
    for rect, score in zip(rects, scores):
        wx = left + (rect.left() + rect.right() + 1) / 2 / scale - cx  # window centre from the box centre, photo px
        wy = top + (rect.top() + rect.bottom() + 1) / 2 / scale - cy
        if abs(wx) < 0.35 * side and -0.6 * side < wy < 0.2 * side:
            best = max(best, float(score))
    return best


def _whole_face(upper):
    """The face box (a dlib rectangle) whose top ``UPPER_SHARE`` is the upper-face box ``upper``."""
    import dlib

    height = (upper.bottom() - upper.top() + 1) / dlib_models.UPPER_SHARE
    return dlib.rectangle(upper.left(), upper.top(), upper.right(), upper.top() + int(round(height)) - 1)


def _overlap(a, b) -> float:
    """Intersection over union of two dlib rectangles."""
    inter = a.intersect(b)
    shared = inter.area() if inter.right() >= inter.left() and inter.bottom() >= inter.top() else 0
    return shared / max(a.area() + b.area() - shared, 1)


def predict_landmarks(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """dlib's 68 landmarks of the face in ``box``, predicted on the full-resolution photo."""
    import dlib

    left, top, right, bottom = (int(round(v)) for v in box)
    shape = dlib_models.landmark_predictor()(rgb, dlib.rectangle(left, top, right, bottom))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def refit_landmarks(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """dlib's 68 landmarks (68, 2) predicted on ``rgb`` in the box spanned by ``points`` (68, 2, x right
    and y down in pixels): what dlib finds on this very image where a face is known to be (an aligned
    128-px crop reads coarser than the photo it came from)."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return predict_landmarks(np.ascontiguousarray(rgb), (x0, y0, x1, y1))


def detect_faces(rgb: np.ndarray, settings: DetectSettings | None = None) -> list[Face]:
    """Every face in an (H, W, 3) uint8 RGB photo, with 68 landmarks, largest first."""
    settings = settings or DetectSettings()
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return [Face(box, score, predict_landmarks(rgb, box), tuple(alternates)) for box, score, alternates in detect_boxes(rgb, settings)]
