"""The anonymizer for inference: paint a new face into the hole where an aligned face was.

The network (:class:`~faceflex.models.face_unet.FaceUNet` with an identity code) sees the aligned
face's surroundings with the face region taken out, the landmarks drawn as lines (expression and
pose), and an identity code; it never sees the face's own pixels
(:func:`faceflex.face.sketch.anonymizer_input`). Codes live in the space of dlib's face
descriptor standardised over the training faces: training showed the network each face's own
descriptor; at use, codes are drawn from the training descriptors' Gaussian (:class:`~faceflex.inference.face_painting.IdentityPrior`),
seeded, so a new identity is reproducible, and tried in turn until dlib tells the painted face from
the person (:meth:`Anonymizer.paint_new_people`). How much detail the network paints is mostly a
property of the code (a face painted from one code is about as sharp as any other face painted from
it), so the weights carry a linear rating of codes by the detail they paint (:class:`CodeRating`,
fitted on training faces when the weights are exported) and the codes tried are the best-rated of
those drawn. By default the painting then takes the original face's skin tone, its colour blurred
over 4 px and its skin's mean lightness (:func:`faceflex.face.blend.kept_tone`): the network's
colour for a drawn identity can stray (a green fringe, an orange face, a dark face on a light neck),
the photo's light and the person's skin tone do not. Deterministic for given faces, landmarks and codes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.face.align import template_landmarks
from faceflex.face.blend import kept_tone
from faceflex.face.identity import SAME_PERSON, face_descriptors
from faceflex.face.masks import skin_mask
from faceflex.face.sketch import anonymizer_input, expression_landmarks
from faceflex.inference.face_painting import FacePainter, load_painter
from faceflex.metrics import high_frequency_energy

SHIPPED_WEIGHTS = "anonymizer.pt"
CANDIDATES = 8  # identity codes tried per face, best-rated first, until one paints someone else (Anonymizer.paint_new_people)
DRAWN = 32  # codes drawn per face (seeded), of which the CANDIDATES best-rated are tried (Anonymizer.identities)
RATING_RIDGE = 7.0  # ridge penalty of the code rating's fit (CodeRating.fit), in units of the codes' standardised scale

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


def central_detail(faces: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(N,) the fine detail of aligned faces (N, S, S, 3) uint8 in their centre: the 3x3-Laplacian
    energy of the luminance (:func:`faceflex.metrics.high_frequency_energy`, 0-1 units) over the box
    from the brows' top to 2 px below the lips and from 4 px outside the eyes' outer corners
    (``landmarks`` (N, 68, 2) or (68, 2), x right, y down, pixel centres at whole numbers): eyes,
    nose and mouth, not the hair or the rim."""
    faces = np.asarray(faces)
    marks = np.broadcast_to(np.asarray(landmarks, np.float64), (len(faces), 68, 2))
    weight = np.zeros((len(faces), 1, *faces.shape[1:3]), np.float32)
    for box, points in zip(weight, marks):
        top, bottom = int(points[17:27, 1].min()), int(points[48:68, 1].max()) + 2
        left, right = int(points[36, 0]) - 4, int(points[45, 0]) + 4
        box[0, max(top, 0) : bottom, max(left, 0) : right] = 1.0
    images = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
    return high_frequency_energy(images, torch.from_numpy(weight)).double().numpy()


@dataclass(frozen=True)
class CodeRating:
    """A linear rating of identity codes by the detail the network paints from them: ``weights``
    (128,) and ``bias``; a code's rating is about how many standard deviations sharper than the
    average code its paintings come out (:func:`central_detail`, standardised per face)."""

    weights: np.ndarray
    bias: float

    def rate(self, codes: np.ndarray) -> np.ndarray:
        """(N,) ratings of codes (N, 128) (an einsum: no OpenBLAS threads left spinning, as :meth:`IdentityPrior.sample`)."""
        return np.einsum("nk,k->n", np.asarray(codes, np.float64), self.weights) + self.bias

    @classmethod
    def fit(cls, anonymizer: Anonymizer, faces: np.ndarray, landmarks: np.ndarray, codes: np.ndarray) -> CodeRating:
        """Paint every face (N, 128, 128, 3) uint8 with every code (K, 128) in the network's own
        colour (as :meth:`Anonymizer.paint` with ``keep_tone`` off), standardise each face's
        :func:`central_detail` over the codes, average over the faces,
        and fit a ridge regression (:data:`RATING_RIDGE`) of that from the codes."""
        faces, codes = np.asarray(faces), np.asarray(codes, np.float32)
        detail = np.zeros((len(faces), len(codes)))
        for i, (face, points) in enumerate(zip(faces, landmarks)):
            network_input = anonymizer_input(face, points)  # the same for every code: drawn once
            for start in range(0, len(codes), 64):
                chunk = codes[start : start + 64]
                new, _ = anonymizer.fill(np.repeat(face[None], len(chunk), 0), lambda _, x=network_input: x, chunk)
                detail[i, start : start + len(chunk)] = central_detail(new, points)
        spread = detail.std(axis=1, keepdims=True)
        target = ((detail - detail.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)).mean(axis=0)
        centre = codes.astype(np.float64).mean(axis=0)
        x = codes - centre
        weights = np.linalg.solve(x.T @ x + RATING_RIDGE * np.eye(x.shape[1]), x.T @ (target - target.mean()))
        return cls(weights, float(target.mean() - centre @ weights))

    def to_dict(self) -> dict:
        return {"weights": self.weights.tolist(), "bias": self.bias}

    @classmethod
    def from_dict(cls, data: dict) -> CodeRating:
        return cls(np.asarray(data["weights"], np.float64), float(data["bias"]))


def drawn_landmarks(landmarks: np.ndarray, normalise_shape: float) -> np.ndarray | None:
    """The landmarks drawn for the network: moved ``normalise_shape`` toward the template (None: as they are)."""
    return expression_landmarks(landmarks, template_landmarks(), normalise_shape) if normalise_shape else None


class Anonymizer(FacePainter):
    """A loaded anonymizer. Faces are (N, 128, 128, 3) uint8 aligned faces, landmarks (N, 68, 2) in that frame."""

    shipped_weights, what, made_by = SHIPPED_WEIGHTS, "anonymizer weights", "faceflex train anonymize"

    @functools.cached_property
    def rating(self) -> CodeRating | None:
        """The weights' code rating (None: weights exported without one)."""
        return CodeRating.from_dict(self.meta["code_rating"]) if "code_rating" in self.meta else None

    def identities(self, seed: int, key: int, count: int = CANDIDATES) -> np.ndarray:
        """The identity codes (count, 128) face ``key`` (its place in a photo, or its video track) may
        get under ``seed``, in the order they are tried: of :data:`DRAWN` codes drawn from the prior
        with ``(seed, key)``, the ``count`` best-rated (:class:`CodeRating`), best first (without a
        rating: the first drawn, in drawn order); the first ones do not depend on ``count``."""
        drawn = self.prior.sample(np.random.default_rng([int(seed), int(key)]), max(DRAWN, count))
        if self.rating is None:
            return drawn[:count]
        return drawn[np.argsort(-self.rating.rate(drawn), kind="stable")[:count]]

    def paint(
        self,
        faces: np.ndarray,
        landmarks: np.ndarray,
        codes: np.ndarray,
        normalise_shape: float = 0.0,
        keep_tone: bool = True,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(new faces (N, 128, 128, 3) uint8, holes (N, 128, 128) float32 in {0, 1}): each face's
        hole painted by the network with its code (N, 128); pixels outside the hole unchanged.
        ``normalise_shape`` (0-1): the landmarks drawn for the network are moved that far toward the
        template face's proportions, expression kept (:func:`faceflex.face.sketch.expression_landmarks`),
        so less of the person's face shape reaches the new face. ``keep_tone``: the painting takes
        the original face's skin tone, its coarse colour and its skin's mean lightness
        (:func:`faceflex.face.blend.kept_tone`); False: the network's own, nothing of the face's
        pixels used."""
        faces = np.asarray(faces)

        def make_input(i: int) -> np.ndarray:
            return anonymizer_input(faces[i], landmarks[i], drawn_landmarks(landmarks[i], normalise_shape))

        new, holes = self.fill(faces, make_input, codes, batch_size)
        if keep_tone and len(new):
            new = np.stack([kept_tone(p, face, hole > 0.5, skin_mask(lm)) for p, face, hole, lm in zip(new, faces, holes, landmarks)])
        return new, holes

    def paint_new_people(
        self,
        faces: np.ndarray,
        landmarks: np.ndarray,
        candidates: list[np.ndarray],
        normalise_shape: float = 0.0,
        judge: Judge | None = None,
        keep_tone: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each face painted with the first of its candidate codes (``candidates[i]``: (k_i, 128))
        whose painting dlib does not take for the person: descriptor distance >= 0.6 (dlib's
        same-person rule) as ``judge`` measures it (``faceflex anonymize``: in the photo, after
        paste-back; None: :func:`aligned_distances`). Where no candidate gets there, the farthest one
        is kept; a face with a single code (a video track's, chosen on an earlier frame) is painted
        with it unchecked. ``normalise_shape``, ``keep_tone``: as :meth:`paint`. Returns (new faces,
        holes, as :meth:`paint`; the codes used (N, 128); the
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
            new, new_holes = self.paint(faces[pending], landmarks[pending], trying, normalise_shape, keep_tone)
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
