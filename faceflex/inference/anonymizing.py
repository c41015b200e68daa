"""The anonymizer for inference: paint a new face into the hole where an aligned face was.

The network (:class:`~faceflex.models.face_unet.FaceUNet` with an identity code) sees the aligned
face's surroundings with the face region taken out, the landmarks drawn as lines (expression and
pose), and an identity code; it never sees the face's own pixels
(:func:`faceflex.face.sketch.anonymizer_input`). Codes live in the space of dlib's face
descriptor standardised over the training faces: training showed the network each face's own
descriptor; at use, a code is drawn from the training descriptors' Gaussian (:class:`~faceflex.inference.face_painting.IdentityPrior`),
seeded, so a new identity is reproducible. Deterministic for given faces, landmarks and codes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceflex.face.align import template_landmarks
from faceflex.face.sketch import anonymizer_input, expression_landmarks
from faceflex.inference.face_painting import FacePainter, load_painter

SHIPPED_WEIGHTS = "anonymizer.pt"
CANDIDATES = 8  # identity codes drawn per face, the farthest from the person kept (Anonymizer.identity)


def drawn_landmarks(landmarks: np.ndarray, normalise_shape: float) -> np.ndarray | None:
    """The landmarks drawn for the network: moved ``normalise_shape`` toward the template (None: as they are)."""
    return expression_landmarks(landmarks, template_landmarks(), normalise_shape) if normalise_shape else None


class Anonymizer(FacePainter):
    """A loaded anonymizer. Faces are (N, 128, 128, 3) uint8 aligned faces, landmarks (N, 68, 2) in that frame."""

    shipped_weights, what, made_by = SHIPPED_WEIGHTS, "anonymizer weights", "faceflex train anonymize"

    def identity(self, seed: int, key: int, avoid: np.ndarray | None = None, candidates: int = CANDIDATES) -> np.ndarray:
        """The identity code (128,) of face ``key`` (its place in a photo, or its video track) under
        ``seed``. With ``avoid`` (the original face's dlib descriptor), the farthest from it of
        ``candidates`` codes drawn with that seed: the network paints a mix of the code and what the
        surroundings suggest, so a code far from the person pushes the new face away from them."""
        drawn = self.prior.sample(np.random.default_rng([int(seed), int(key)]), candidates if avoid is not None else 1)
        if avoid is None:
            return drawn[0]
        own = self.prior.code(np.asarray(avoid, np.float32)[None])[0]
        return drawn[int(np.argmax(np.linalg.norm(drawn - own, axis=1)))]

    def paint(
        self, faces: np.ndarray, landmarks: np.ndarray, codes: np.ndarray, normalise_shape: float = 0.0, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """(new faces (N, 128, 128, 3) uint8, holes (N, 128, 128) float32 in {0, 1}): each face's
        hole painted by the network with its code (N, 128); pixels outside the hole unchanged.
        ``normalise_shape`` (0-1): the landmarks drawn for the network are moved that far toward the
        template face's proportions, expression kept (:func:`faceflex.face.sketch.expression_landmarks`),
        so less of the person's face shape reaches the new face."""
        faces = np.asarray(faces)

        def make_input(i: int) -> np.ndarray:
            return anonymizer_input(faces[i], landmarks[i], drawn_landmarks(landmarks[i], normalise_shape))

        return self.fill(faces, make_input, codes, batch_size)


def load_anonymizer(path: str | Path | None = None, device: str = "auto") -> Anonymizer:
    """The shipped anonymizer (loaded once per process), or the weight file at ``path``."""
    return load_painter(Anonymizer, path, device)
