"""The attribute painter for inference: repaint one region of an aligned face with the attributes
asked for, keeping the person.

The network (:class:`~faceflex.models.face_unet.FaceUNet`, as the anonymizer) sees the aligned face
with one region taken out (the eyes from temple to temple, the mouth with its smile folds, or the
upper lip: :func:`faceflex.face.sketch.region_hole`), the landmarks drawn as lines, and a code: the
person's dlib descriptor (standardised, :class:`~faceflex.inference.face_painting.IdentityPrior`)
followed by the classifier's attributes (:data:`faceflex.models.labels.ATTRIBUTES`, each in [-1, 1]:
-1 without, +1 with). Trained to paint every training face's region back from its own descriptor
and CelebA labels, it paints glasses, a moustache or a smile's teeth as a face has them, in the
person's own surroundings, when the code asks for them. Deterministic for given inputs and codes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceflex.face.sketch import painter_input, region_hole
from faceflex.inference.face_painting import FacePainter, load_painter

SHIPPED_WEIGHTS = "attribute_painter.pt"
PAINT_REGIONS = ("eyes", "mouth", "upper-lip")  # the regions it was trained to repaint
# the attributes it paints, and where (each is one of the classifier's attributes)
PAINTED = {"Eyeglasses": "eyes", "Mustache": "upper-lip", "Smiling": "mouth", "Wearing_Lipstick": "mouth"}


def attribute_code(probabilities: np.ndarray) -> np.ndarray:
    """The attribute part of a code from classifier probabilities (N, A) in [0, 1]: 2 p - 1, in [-1, 1]."""
    return (2.0 * np.asarray(probabilities, np.float32) - 1.0).astype(np.float32)


class AttributePainter(FacePainter):
    """A loaded attribute painter. Faces are (N, 128, 128, 3) uint8 aligned faces, landmarks (N, 68, 2) in that frame."""

    shipped_weights, what, made_by = SHIPPED_WEIGHTS, "attribute painter weights", "faceflex train painter"

    @property
    def attributes(self) -> list[str]:
        """The attribute names of the code's tail, in order."""
        return list(self.meta["attributes"])

    def code(self, descriptors: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        """Codes (N, 128 + A) float32 from dlib descriptors (N, 128) and attribute values (N, A) in [-1, 1]."""
        return np.concatenate([self.prior.code(descriptors), np.asarray(attributes, np.float32)], axis=1)

    def paint(
        self,
        faces: np.ndarray,
        landmarks: np.ndarray,
        region: str,
        codes: np.ndarray,
        drawn: np.ndarray | None = None,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(faces (N, 128, 128, 3) uint8 with ``region`` repainted, holes (N, 128, 128) float32 in
        {0, 1}). ``drawn`` (N, 68, 2): landmarks to paint to instead of the face's own (a smile's
        moved mouth); the hole then covers the region at both."""
        if region not in PAINT_REGIONS:
            raise ValueError(f"the attribute painter repaints {', '.join(PAINT_REGIONS)}, not {region!r}")
        faces = np.asarray(faces)

        def make_input(i: int) -> np.ndarray:
            hole = region_hole(landmarks[i], region)
            if drawn is None:
                return painter_input(faces[i], hole, landmarks[i])
            return painter_input(faces[i], np.maximum(hole, region_hole(drawn[i], region)), drawn[i])

        return self.fill(faces, make_input, codes, batch_size)


def load_attribute_painter(path: str | Path | None = None, device: str = "auto") -> AttributePainter:
    """The shipped attribute painter (loaded once per process), or the weight file at ``path``."""
    return load_painter(AttributePainter, path, device)
