"""``faceflex unmask``: find the face mask on every face and paint the face it hides.

Under a mask, dlib's 68-point model invents the mouth and jaw, so the faces are aligned on the
points a mask leaves visible (``RELIABLE_UNDER_MASK``: brows, nose bridge, eyes), never on the
lower ones. The network (:mod:`faceflex.inference.unmasking`) segments the mask on the aligned
face and paints the face under it; only the pixels of its paint region are pasted back, so a face
without a mask, and everything outside the mask, is left exactly as it was. The lower face is
synthesised, not recovered: it is a plausible face, not the person's own mouth and chin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from faceflex.face.align import align_face
from faceflex.face.detect import DetectSettings, Face, predict_landmarks, upper_face_score
from faceflex.inference.unmasking import MIN_COVERAGE, Unmasker, load_unmasker, mask_presence, paint_region
from faceflex.pipeline.flow import FaceCrop, Layer, StepOutput, Variant, compose

RELIABLE_UNDER_MASK = np.r_[17:31, 36:48]  # brows 17-26, nose bridge 27-30, eyes 36-47
# How unmask finds faces unless told otherwise (the `unmask:` section of configs/default.yaml says the same):
# dlib's HOG, faceflex's masked-face and upper-face HOG detectors, merged, down to a score of -0.2
# (docs/UNMASK.md: 10 / 10 real masked photos, no extra box on the bare VOC photos).
DETECTION = DetectSettings(detector="hog+masked+upper", threshold=-0.2)
# A mask is taken off only where faceflex's upper-face detector also sees brows and eyes (face.detect.upper_face_score):
# the 16 masked faces measured score -0.32 and up; a mission patch the network took for a masked face, nothing.
UPPER_FACE_FLOOR = -0.6


@dataclass
class UnmaskStep:
    """One output per photo (product ``unmasked``); per face: mask found (its probability >= 0.5, see
    :func:`~faceflex.inference.unmasking.mask_presence`, with the upper face seen above it: its
    ``upper_face_score`` >= :data:`UPPER_FACE_FLOOR`), the probability, its coverage of the face, the box."""

    save_mask: bool = False
    weights: str | None = None
    detail_weights: str | None = None  # a detail stage over the network (faceflex.inference.unmasking.with_detail)
    device: str = "auto"
    unmasker: Unmasker | None = field(default=None, repr=False)

    command = "unmask"
    aligned_size = 128
    alignment_points = RELIABLE_UNDER_MASK
    writes_variants = True
    picture_format = "png"

    def __post_init__(self) -> None:
        if self.unmasker is None:
            self.unmasker = load_unmasker(self.weights, self.device, self.detail_weights)

    def settings(self) -> dict:
        return {"save_mask": self.save_mask, "weights_fingerprint": self.unmasker.fingerprint}

    def __call__(self, photo: np.ndarray, crops: list[FaceCrop]) -> StepOutput:
        if not crops:
            return StepOutput([])
        painted, probabilities = self.unmasker(np.stack([c.aligned.image for c in crops]))
        placed = masked_in_another_box(photo, crops, probabilities, lambda faces: self.unmasker(faces)[1])
        if placed:  # those faces are unmasked in the frame where the mask was seen
            crops = [placed[k][0] if k in placed else crop for k, crop in enumerate(crops)]
            again, chances = self.unmasker(np.stack([crop.aligned.image for crop, _ in placed.values()]))
            for row, k in enumerate(placed):
                painted[k], probabilities[k] = again[row], chances[row]
        regions = paint_region(torch.from_numpy(probabilities)[:, None])[:, 0].numpy()
        records, layers = [], []
        coverages, presences = mask_presence(probabilities)
        for crop, face, region, coverage, presence in zip(crops, painted, regions, coverages, presences):
            record = {"probability": round(float(presence), 4), "coverage": round(float(coverage), 4)}
            if presence >= 0.5:  # the network sees a mask: is there a face's upper half above it?
                record["upper_face_score"] = round(max(upper_face_score(photo, crop.face.box), -9.0), 3)
            found = bool(presence >= 0.5 and record["upper_face_score"] >= UPPER_FACE_FLOOR)
            records.append({"mask_found": found, **record})
            if found:
                layers.append(Layer(crop.index, face, region))
        pictures = {}
        if self.save_mask:
            white = np.full((128, 128, 3), 255, np.uint8)
            masks = [Layer(c.index, white, p) for c, p in zip(crops, probabilities)]
            pictures["mask"] = compose(np.zeros_like(photo[..., :3]), crops, masks)
        return StepOutput(records, [Variant("unmasked", lambda: layers, {"faces_unmasked": len(layers)})], pictures, crops=crops)


def masked_in_another_box(
    photo: np.ndarray, crops: list[FaceCrop], probabilities: np.ndarray, mask_probabilities: Callable[[np.ndarray], np.ndarray]
) -> dict[int, tuple[FaceCrop, np.ndarray]]:
    """Faces on which the network saw no whole mask (``probabilities`` (N, 128, 128), one per crop, as
    :func:`~faceflex.inference.unmasking.mask_presence` reads them: no mask, or one covering less
    than ``MIN_COVERAGE`` of the face) but which another detector of a merged strategy boxed
    differently (``Face.alternates``): {crop index: (the crop aligned from the first such box on
    :data:`RELIABLE_UNDER_MASK`, its mask probabilities)} where the network, run by
    ``mask_probabilities`` on (M, 128, 128, 3) uint8 faces, sees a mask in that frame covering more
    of the face than in the first. dlib's HOG can box a masked face a fifth too large, and its
    aligned face is then too small for the network, which then sees none or part of the mask (the
    demo face under an N95). Used by ``unmask`` and by ``classify``'s ``occlusion.mask``."""
    coverages, presences = mask_presence(probabilities)
    shown = (presences >= 0.5) & (coverages >= MIN_COVERAGE)
    retry = [(k, box, score) for k, crop in enumerate(crops) if not shown[k] for box, score in crop.face.alternates]
    if not retry:
        return {}
    rgb = np.ascontiguousarray(photo[..., :3])
    faces = [Face(box, score, predict_landmarks(rgb, box)) for _, box, score in retry]
    aligned = [align_face(rgb, face.landmarks, UnmaskStep.aligned_size, RELIABLE_UNDER_MASK) for face in faces]
    chances = mask_probabilities(np.stack([a.image for a in aligned]))
    found: dict[int, tuple[FaceCrop, np.ndarray]] = {}
    for (k, _, _), face, frame, chance, coverage, presence in zip(retry, faces, aligned, chances, *mask_presence(chances)):
        if presence >= 0.5 and coverage > coverages[k] and k not in found:  # the first box that shows more of the mask
            face = dataclasses.replace(face, alternates=crops[k].face.alternates)
            found[k] = (dataclasses.replace(crops[k], face=face, aligned=frame), chance)
    return found
