"""How well faces are anonymised: held-out CelebA-HQ faces, each method side by side.

Every method works from the landmarks dlib finds on the 128-px crop itself, fitted in the box
dlib's detector finds there (:func:`fitting_box`), as ``faceflex anonymize`` works from those dlib
fits in the box it detects in the photo; the cached landmarks (dlib's, found on the 256-px faces)
would be points the generator is measured against but never shown.

Per held-out face (ids 28001-30000, aligned 128-px crops) and method (``generate``: the
anonymizer with identities seeded by (seed, row), tried in turn as ``faceflex anonymize`` does; ``blur`` and ``pixelate``:
:mod:`faceflex.face.obscure`):

- re-identified: dlib descriptor distance between the original and the anonymised face < 0.6
  (dlib's same-person rule; descriptors taken with landmarks re-fitted on each image in the
  original's box); rank-1 identified: the anonymised face's nearest original, among all the faces
  evaluated, is its own;
- detected: dlib's HOG detector finds a face in the anonymised crop (upsampled once); the
  originals' rate is reported beside it;
- landmark error: mean distance between dlib's 68 points on the anonymised and on the original
  crop (same box), over the inter-ocular distance (eye centres);
- expression kept: the shipped expression classifier's label, the attribute model's Smiling
  (p >= 0.5) and the mouth open (inner-lip gap >= 0.1 inter-ocular distances, from dlib's points),
  each the same on input and output;
- sharpness: the fine detail (3x3 Laplacian energy of the luma) inside the face region, 2 px in
  from its edge, over the original face's there (1.0: as detailed; the mean of each over the mean of
  the other);
- colour cast: how far the anonymised face's colour strays from the original's, coarsely: the 95th
  percentile over the face's skin (the face region 2 px in from its edge, less the eyes, brows and
  mouth: :func:`faceflex.face.masks.skin_mask`) of the CbCr distance (0-255 scale) between
  the two faces' chroma, each smoothed by a Gaussian of :data:`CAST_SIGMA` px. A new person under
  the same light and beside the same neck and ears has about the same skin tone; a greenish
  patch or a tinted face raises it, fine detail (pores, stubble) barely does;
- time: the method's own time per face (the descriptors and classifiers of the measurement excluded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from faceflex.face.blend import paste_over
from faceflex.face.detect import DetectSettings, detect_boxes, predict_landmarks
from faceflex.face.identity import SAME_PERSON, face_descriptors
from faceflex.face.masks import region_mask, skin_mask
from faceflex.face.obscure import obscure_patch
from faceflex.face.texture import chroma, smooth
from faceflex.inference.anonymizing import Anonymizer, Judge, aligned_distances
from faceflex.metrics import high_frequency_energy
from faceflex.models.labels import ATTRIBUTES
from faceflex.train.cache import CachedFaces

METHODS = ("generate", "blur", "pixelate")
CAST_SIGMA = 4.0  # px (128-px frame): the colour-cast figure compares chroma coarser than this


def anonymized(
    method: str,
    anonymizer: Anonymizer | None,
    faces: np.ndarray,
    landmarks: np.ndarray,
    candidates: list[np.ndarray] | None,
    normalise_shape: float = 0.0,
    judge: Judge | None = None,
    keep_tone: bool = True,
) -> np.ndarray:
    """Aligned faces (N, 128, 128, 3) uint8 anonymised by ``method`` (``candidates``: generate's
    identity codes per face, tried in turn, each checked by ``judge``, as in :meth:`Anonymizer.paint_new_people`)."""
    if method == "generate":
        if anonymizer is None or candidates is None:
            raise ValueError("generate needs the anonymizer and identity codes")
        return anonymizer.paint_new_people(faces, landmarks, candidates, normalise_shape, judge, keep_tone)[0]
    return np.stack([paste_over(face, *obscure_patch(face, lm, method)) for face, lm in zip(faces, landmarks)])


def _iod(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36:42].mean(axis=0) - points[42:48].mean(axis=0)))


def colour_cast(image: np.ndarray, original: np.ndarray, region: np.ndarray) -> float:
    """The colour-cast figure (module docstring) of ``image`` against ``original`` (both (H, W, 3)
    uint8) over ``region`` ((H, W) bool): the 95th percentile of their coarse chroma distance."""
    difference = chroma(image) - chroma(original)
    coarse = np.stack([smooth(difference[..., k], CAST_SIGMA) for k in range(2)], axis=-1)
    return float(np.percentile(np.linalg.norm(coarse[region], axis=1), 95)) if region.any() else 0.0


def fitting_box(rgb: np.ndarray, points: np.ndarray) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1; pixels, x right, y down) in which dlib's 68 points are fitted on a
    held-out crop ``rgb``, whose face's cached points are ``points`` (68, 2): the box dlib's detector
    finds there (:func:`~faceflex.face.detect.detect_boxes`, ``faceflex anonymize``'s settings) with
    its centre nearest the points' centre, as the command fits them in the box it detects; the
    points' own box where the detector finds none (4 % of the held-out crops). Fitted in the points'
    own box, dlib's points on the crop are off the cached ones by more than 0.15 inter-ocular
    distances on 12 % of the faces; in the detector's box, on 3.6 % (docs/ANONYMIZE.md)."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    boxes = [box for box, _, _ in detect_boxes(np.ascontiguousarray(rgb), DetectSettings())]
    if not boxes:
        return float(x0), float(y0), float(x1), float(y1)
    centre = points.mean(axis=0)
    return min(boxes, key=lambda b: float(np.hypot((b[0] + b[2]) / 2 - centre[0], (b[1] + b[3]) / 2 - centre[1])))


def _detected(rgb: np.ndarray) -> bool:
    from faceflex.face.dlib_models import hog_detector

    return len(hog_detector()(np.ascontiguousarray(rgb), 1)) > 0


def held_out_figures(
    anonymizer: Anonymizer | None,
    cache: CachedFaces,
    rows: np.ndarray,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    classifiers: bool = True,
    progress: Callable[[int], None] | None = None,
    normalise_shape: float = 0.0,
    keep_tone: bool = True,
) -> dict[str, dict[str, np.ndarray]]:
    """Per method, per-face figures (arrays, see the module docstring) on cache ``rows``;
    ``classifiers`` False leaves out the expression-kept figures (no classifier loaded);
    ``normalise_shape`` and ``keep_tone`` as ``faceflex anonymize``'s."""
    from faceflex.face.crops import attribute_input, expression_input

    models = None
    if classifiers:
        from faceflex.inference.classifiers import load_classifiers

        models = load_classifiers("cpu")
    faces, given = np.asarray(cache.faces[rows]), np.asarray(cache.landmarks[rows], np.float64)
    boxes = [fitting_box(face, lm) for face, lm in zip(faces, given)]
    points = np.stack([predict_landmarks(np.ascontiguousarray(face), box) for face, box in zip(faces, boxes)])
    originals = face_descriptors(list(faces), list(given))
    candidates = None if anonymizer is None else [anonymizer.identities(seed, int(r)) for r in rows]

    def expression_facts(images: np.ndarray, marks: np.ndarray) -> dict[str, np.ndarray]:
        if models is None:
            return {}
        expressions = np.stack([expression_input(im, lm) for im, lm in zip(images, marks)])
        predictions = models.predict(attribute_input(images), expressions, None)  # gender is not read
        gap = np.linalg.norm(marks[:, 62] - marks[:, 66], axis=1) / np.array([_iod(m) for m in marks])
        return {
            "expression": predictions.expressions.argmax(axis=1),
            "smiling": predictions.attributes[:, ATTRIBUTES.index("Smiling")] >= 0.5,
            "mouth_open": gap >= 0.1,
        }

    before = expression_facts(faces, points)
    detected_before = np.array([_detected(face) for face in faces])
    figures: dict[str, dict[str, np.ndarray]] = {}
    for method in methods:
        start = time.perf_counter()
        out = anonymized(
            method, anonymizer, faces, points, candidates, normalise_shape, aligned_distances(faces, given), keep_tone
        )  # checked as measured
        seconds = (time.perf_counter() - start) / max(1, len(rows))
        descriptors = face_descriptors(list(out), list(given))
        distances = np.linalg.norm(descriptors - originals, axis=1)
        nearest = np.linalg.norm(descriptors[:, None] - originals[None], axis=2).argmin(axis=1)
        marks = np.stack([predict_landmarks(np.ascontiguousarray(face), box) for face, box in zip(out, boxes)])
        after = expression_facts(out, marks)
        core = torch.from_numpy(np.stack([region_mask(lm, "face") >= 0.99 for lm in points])[:, None].astype(np.float32))
        core = -F.max_pool2d(-core, 5, stride=1, padding=2)  # 2 px in from the region's edge
        figures[method] = {
            "distance": distances,
            "rank1": nearest == np.arange(len(rows)),
            "detected": np.array([_detected(face) for face in out]),
            "detected_original": detected_before,
            "landmark_error": np.array([np.linalg.norm(a - b, axis=1).mean() / _iod(b) for a, b in zip(marks, points)]),
            "seconds": np.full(len(rows), seconds),
            "detail": high_frequency_energy(torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255, core).numpy(),
            "true_detail": high_frequency_energy(torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255, core).numpy(),
            "colour_cast": np.array(
                [colour_cast(o, f, (c[0] > 0) & skin_mask(lm)) for o, f, c, lm in zip(out, faces, core.numpy(), points)]
            ),
            **{f"{key}_kept": after[key] == before[key] for key in after},
        }
        if progress:
            progress(len(rows))
    return figures


def summary(figures: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
    """Per method: re-identified and rank-1 identified shares, detection rates, landmark error
    (IOD), the expression-kept shares, sharpness, the colour cast, milliseconds per face."""
    report = {}
    for method, f in figures.items():
        report[method] = {
            "faces": len(f["distance"]),
            "reidentified": round(float((f["distance"] < SAME_PERSON).mean()), 4),
            "rank1_identified": round(float(f["rank1"].mean()), 4),
            "identity_distance": round(float(f["distance"].mean()), 4),
            "detected": round(float(f["detected"].mean()), 4),
            "detected_original": round(float(f["detected_original"].mean()), 4),
            "landmark_error_iod": round(float(f["landmark_error"].mean()), 4),
            **{key: round(float(f[key].mean()), 4) for key in ("expression_kept", "smiling_kept", "mouth_open_kept") if key in f},
            "sharpness": round(float(f["detail"].mean() / max(float(f["true_detail"].mean()), 1e-12)), 4),
            "colour_cast": round(float(f["colour_cast"].mean()), 2),
            "ms_per_face": round(1000 * float(f["seconds"].mean()), 1),
        }
    return report
