"""``faceflex unmask``: find the face mask on every face and paint the face it hides.

Under a mask, dlib's 68-point model invents the mouth and jaw, so the faces are aligned on the
points a mask leaves visible (``RELIABLE_UNDER_MASK``: brows, nose bridge, eyes), never on the
lower ones. The network (:mod:`faceflex.inference.unmasking`) segments the mask on the aligned
face and paints the face under it; only the pixels of its paint region are pasted back, so a face
without a mask, and everything outside the mask, is left exactly as it was. The lower face is
synthesised, not recovered: it is a plausible face, not the person's own mouth and chin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from faceflex.face.align import template_landmarks
from faceflex.face.masks import region_mask
from faceflex.inference.unmasking import Unmasker, load_unmasker, paint_region
from faceflex.pipeline.flow import FaceCrop, Layer, StepOutput, Variant, compose

RELIABLE_UNDER_MASK = np.r_[17:31, 36:48]  # brows 17-26, nose bridge 27-30, eyes 36-47
FOUND_COVERAGE = 0.10  # a face counts as masked when the mask covers this much of it


def face_region() -> np.ndarray:
    """The template face's region (128x128, hard 0/1) over which mask coverage is measured."""
    return (region_mask(template_landmarks(), "face", feather=0.0) > 0.5).astype(np.float32)


@dataclass
class UnmaskStep:
    """One output per photo (product ``unmasked``); per face: mask found, its coverage of the face, the box."""

    save_mask: bool = False
    weights: str | None = None
    device: str = "auto"
    unmasker: Unmasker | None = field(default=None, repr=False)

    command = "unmask"
    aligned_size = 128
    alignment_points = RELIABLE_UNDER_MASK
    writes_variants = True
    picture_format = "png"

    def __post_init__(self) -> None:
        if self.unmasker is None:
            self.unmasker = load_unmasker(self.weights, self.device)
        self.region = face_region()

    def settings(self) -> dict:
        return {"save_mask": self.save_mask, "weights_fingerprint": self.unmasker.fingerprint, "found_coverage": FOUND_COVERAGE}

    def __call__(self, photo: np.ndarray, crops: list[FaceCrop]) -> StepOutput:
        if not crops:
            return StepOutput([])
        painted, probabilities = self.unmasker(np.stack([c.aligned.image for c in crops]))
        regions = paint_region(torch.from_numpy(probabilities)[:, None])[:, 0].numpy()
        records, layers = [], []
        for crop, face, probability, region in zip(crops, painted, probabilities, regions):
            coverage = float(((probability >= 0.5) * self.region).sum() / self.region.sum())
            found = coverage >= FOUND_COVERAGE
            records.append({"mask_found": found, "coverage": round(coverage, 4)})
            if found:
                layers.append(Layer(crop.index, face, region))
        pictures = {}
        if self.save_mask:
            white = np.full((128, 128, 3), 255, np.uint8)
            masks = [Layer(c.index, white, p) for c, p in zip(crops, probabilities)]
            pictures["mask"] = compose(np.zeros_like(photo[..., :3]), crops, masks)
        return StepOutput(records, [Variant("unmasked", lambda: layers, {"faces_unmasked": len(layers)})], pictures)
