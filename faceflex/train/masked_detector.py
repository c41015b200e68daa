"""Training a HOG face detector for faces that wear a mask (dlib's HOG + linear SVM trainer).

dlib's own HOG detector was trained on bare faces and finds almost no masked ones; its CNN finds
about two thirds but costs seconds a photo on a CPU. This detector has the same form as dlib's
(a fHOG filter, run at the same speed) and learns masked faces from synthetic ones: CelebA-HQ
training faces (never the held-out ids) wearing :func:`~faceflex.face.mask_overlay.synthetic_mask`
masks, enlarged and placed on a canvas of the photo's own border colours. The box each face is
labelled with is the box dlib's bare-face HOG detector finds on the same canvas *before* the mask
is drawn, so the 68-point model sees the box it was trained on (and places the eyes and brows as
it would without the mask). With ``upper``, the label is the top ``UPPER_SHARE`` of that box
(brows, eyes, nose bridge: what any mask leaves visible), for the upper-face detector.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from faceflex.face import dlib_models
from faceflex.face.align import transform_points
from faceflex.face.dlib_models import UPPER_SHARE
from faceflex.face.mask_overlay import load_mask_templates, synthetic_mask
from faceflex.train.cache import CachedFaces

CANVAS = 320  # px, square training images


def masked_example(
    face: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """(canvas with one masked face, its box (left, top, right, bottom) as dlib's HOG boxes the bare
    face), or None when dlib's HOG does not find the bare face. The face is scaled by 1.3-2.4 and
    placed at random; the canvas around it is the face image's own edge colours, blurred."""
    side = int(round(128 * rng.uniform(1.3, 2.4)))
    scale = side / 128
    if side >= CANVAS:
        return None
    x0, y0 = (int(v) for v in rng.integers(0, CANVAS - side, 2))
    padded = np.pad(face, ((64, 64), (64, 64), (0, 0)), mode="edge")
    background = Image.fromarray(padded).resize((CANVAS, CANVAS), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(12))
    canvas = np.array(background)
    canvas[y0 : y0 + side, x0 : x0 + side] = np.asarray(Image.fromarray(face).resize((side, side), Image.Resampling.BICUBIC))
    rects = dlib_models.hog_detector()(canvas, 0)
    if len(rects) != 1:
        return None
    box = (rects[0].left(), rects[0].top(), rects[0].right(), rects[0].bottom())
    placed = transform_points(landmarks, np.array([[scale, 0.0, x0 + (scale - 1) / 2], [0.0, scale, y0 + (scale - 1) / 2]]))
    masked, _ = synthetic_mask(canvas, placed, rng, load_mask_templates())
    return masked, box


def train_masked_detector(
    cache: CachedFaces,
    out: Path,
    count: int = 2000,
    seed: int = 0,
    max_seconds: int = 1800,
    progress: Callable[[int], None] | None = None,
    upper: bool = False,
) -> dict:
    """Train on ``count`` synthetic masked faces from the training split; write ``out`` (a dlib
    detector file); return what was done (images used, dlib's training-set precision and recall).
    ``upper``: an upper-face detector (see the module docstring)."""
    import dlib

    rng = np.random.default_rng(seed)
    rows = rng.permutation(cache.split("train"))
    images, boxes = [], []
    for row in rows:
        if len(images) >= count:
            break
        example = masked_example(np.asarray(cache.faces[row]), cache.landmarks[row], rng)
        if progress:
            progress(1)
        if example is None:
            continue
        left, top, right, bottom = example[1]
        if upper:
            bottom = top + int(round((bottom - top + 1) * UPPER_SHARE)) - 1
        images.append(example[0])
        boxes.append([dlib.rectangle(left, top, right, bottom)])
    options = dlib.simple_object_detector_training_options()
    options.add_left_right_image_flips = True
    options.C = 5.0
    options.num_threads = 2
    options.max_runtime_seconds = max_seconds
    detector = dlib.train_simple_object_detector(images, boxes, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    detector.save(str(out))
    result = dlib.test_simple_object_detector(images, boxes, detector)
    return {"images": len(images), "train_precision": result.precision, "train_recall": result.recall, "seed": seed, "upper": upper}
