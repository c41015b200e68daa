"""The anonymizer for inference: paint a new face into the hole where an aligned face was.

The network (:class:`~faceflex.models.face_unet.FaceUNet` with an identity code) sees the aligned
face's surroundings with the face region taken out, the landmarks drawn as lines (expression and
pose), and an identity code; it never sees the face's own pixels
(:func:`faceflex.face.sketch.anonymizer_input`). Codes live in the space of dlib's face
descriptor standardised over the training faces: training showed the network each face's own
descriptor; at use, codes are drawn from the training descriptors' Gaussian (:class:`~faceflex.inference.face_painting.IdentityPrior`),
seeded, so a new identity is reproducible, and tried in turn until dlib tells the painted face from
the person (:meth:`Anonymizer.paint_new_people`). Deterministic for given faces, landmarks and codes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceflex.face.align import template_landmarks
from faceflex.face.identity import SAME_PERSON, face_descriptors
from faceflex.face.sketch import anonymizer_input, expression_landmarks
from faceflex.inference.face_painting import FacePainter, load_painter

SHIPPED_WEIGHTS = "anonymizer.pt"
CANDIDATES = 8  # identity codes tried per face, in drawn order, until one paints someone else (Anonymizer.paint_new_people)

# distances(rows, new faces, holes) -> (len(rows),) dlib descriptor distances from the originals of faces ``rows``
Judge = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def aligned_distances(faces: np.ndarray, landmarks: np.ndarray) -> Judge:
    """A :data:`Judge` for faces that are their own photos (aligned crops): dlib's descriptor of
    each painted face against that of the original."""
    own: dict[int, np.ndarray] = {}

    def distances(rows: np.ndarray, new: np.ndarray, holes: np.ndarray) -> np.ndarray:
        missing = [r for r in rows if r not in own]
        if missing:
            own.update(zip(missing, face_descriptors([faces[r] for r in missing], [landmarks[r] for r in missing])))
        painted = face_descriptors(list(new), [landmarks[r] for r in rows])
        return np.linalg.norm(painted - np.stack([own[r] for r in rows]), axis=1)

    return distances


def drawn_landmarks(landmarks: np.ndarray, normalise_shape: float) -> np.ndarray | None:
    """The landmarks drawn for the network: moved ``normalise_shape`` toward the template (None: as they are)."""
    return expression_landmarks(landmarks, template_landmarks(), normalise_shape) if normalise_shape else None


class Anonymizer(FacePainter):
    """A loaded anonymizer. Faces are (N, 128, 128, 3) uint8 aligned faces, landmarks (N, 68, 2) in that frame."""

    shipped_weights, what, made_by = SHIPPED_WEIGHTS, "anonymizer weights", "faceflex train anonymize"

    def identities(self, seed: int, key: int, count: int = CANDIDATES) -> np.ndarray:
        """The identity codes (count, 128) face ``key`` (its place in a photo, or its video track) may
        get under ``seed``, in the order they are tried; the first ones do not depend on ``count``."""
        return self.prior.sample(np.random.default_rng([int(seed), int(key)]), count)

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

    def paint_new_people(
        self,
        faces: np.ndarray,
        landmarks: np.ndarray,
        candidates: list[np.ndarray],
        normalise_shape: float = 0.0,
        judge: Judge | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each face painted with the first of its candidate codes (``candidates[i]``: (k_i, 128))
        whose painting dlib does not take for the person: descriptor distance >= 0.6 (dlib's
        same-person rule) as ``judge`` measures it (``faceflex anonymize``: in the photo, after
        paste-back; None: :func:`aligned_distances`). Where no candidate gets there, the farthest one
        is kept; a face with a single code (a video track's, chosen on an earlier frame) is painted
        with it unchecked. Returns (new faces, holes, as :meth:`paint`; the codes used (N, 128); the
        distances (N,), NaN where unchecked). A face is painted once per code tried: most once."""
        faces, landmarks = np.asarray(faces), np.asarray(landmarks)
        judge = judge or aligned_distances(faces, landmarks)
        checked = np.array([len(c) > 1 for c in candidates], bool)
        painted, holes = np.array(faces), np.zeros(faces.shape[:3], np.float32)
        codes = np.zeros((len(faces), len(self.prior.mean)), np.float32)
        distances = np.full(len(faces), np.nan)
        pending = np.arange(len(faces))
        for attempt in range(max((len(c) for c in candidates), default=0)):
            pending = pending[[attempt < len(candidates[i]) for i in pending]]
            if not len(pending):
                break
            trying = np.stack([candidates[i][attempt] for i in pending])
            new, new_holes = self.paint(faces[pending], landmarks[pending], trying, normalise_shape)
            distance, check = np.full(len(pending), np.nan), checked[pending]
            if check.any():
                distance[check] = judge(pending[check], new[check], new_holes[check])
            farther = (attempt == 0) | (distance > distances[pending])
            kept = pending[farther]
            painted[kept], holes[kept], codes[kept], distances[kept] = new[farther], new_holes[farther], trying[farther], distance[farther]
            pending = pending[distance < SAME_PERSON]
        return painted, holes, codes, distances


def load_anonymizer(path: str | Path | None = None, device: str = "auto") -> Anonymizer:
    """The shipped anonymizer (loaded once per process), or the weight file at ``path``."""
    return load_painter(Anonymizer, path, device)
