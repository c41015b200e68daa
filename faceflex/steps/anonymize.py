"""``faceflex anonymize``: every face replaced by someone else with the same expression, or obscured.

``generate`` (default): the anonymizer (:mod:`faceflex.inference.anonymizing`) paints a new face
into the aligned face's hole from its surroundings, its landmarks drawn as lines and a random
identity; it never sees the face's own pixels. A face's identities are drawn from ``seed`` and the
face's key (its place in the photo, or its track in a video) and tried in turn until dlib no longer
takes the painted face for the person, so a run is reproducible and a face keeps one new identity
through a video. ``blur`` and ``pixelate`` obscure the face region in the photo's
own pixels (:mod:`faceflex.face.obscure`). Every face's record says how far the result is from the
person: dlib's descriptor distance between the original and the anonymised face (>= 0.6: not the
same person by dlib's rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from faceflex.choices import ANONYMIZE_METHODS
from faceflex.face.blend import paste_back
from faceflex.face.identity import SAME_PERSON, face_descriptors
from faceflex.face.obscure import obscure_patch
from faceflex.face.sketch import landmark_sketch
from faceflex.inference.anonymizing import Anonymizer, drawn_landmarks, load_anonymizer
from faceflex.inference.unmasking import paint_region
from faceflex.pipeline.flow import FaceCrop, Layer, StepOutput, Variant


def parts_picture(originals: np.ndarray, landmarks: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """Per face a row of three aligned 128-px tiles (the original crop, its landmarks drawn, the
    generated face): what ExpMask saves. (N x 128, 384, 3) uint8."""
    rows = []
    for original, points, new in zip(originals, landmarks, generated):
        drawing = (np.repeat(landmark_sketch(points).max(axis=0)[..., None], 3, axis=2) * 255 + 0.5).astype(np.uint8)
        rows.append(np.concatenate([original, drawing, new], axis=1))
    return np.concatenate(rows, axis=0)


@dataclass
class AnonymizeStep:
    """One output per photo (product ``anonymized``); per face: the method, the seed and the identity
    distance between the original and the anonymised face. ``normalise_shape``, ``keep_tone``: see
    :meth:`faceflex.inference.anonymizing.Anonymizer.paint`."""

    method: str = "generate"
    seed: int = 0
    save_parts: bool = False
    weights: str | None = None
    normalise_shape: float = 0.0  # generate: how far the drawn proportions move toward the average face
    keep_tone: bool = True  # generate: the new face takes the original's coarse colouring
    device: str = "auto"
    anonymizer: Anonymizer | None = field(default=None, repr=False)

    command = "anonymize"
    writes_variants = True
    picture_format = "png"
    pictures_in_videos = False  # the parts sheet is saved for photos only

    def __post_init__(self) -> None:
        if not 0.0 <= self.normalise_shape <= 1.0:
            raise ValueError(f"normalise_shape must be between 0 and 1, not {self.normalise_shape}")
        if self.method not in ANONYMIZE_METHODS:
            raise ValueError(f"method must be one of {', '.join(ANONYMIZE_METHODS)}, not {self.method!r}")
        if self.method == "generate" and self.anonymizer is None:
            self.anonymizer = load_anonymizer(self.weights, self.device)
        self.aligned_size = 128 if self.method == "generate" else None
        self._track_codes: dict[int, np.ndarray] = {}

    def start_video(self) -> None:
        """A new video begins: its tracks get new identities (kept from frame to frame)."""
        self._track_codes = {}

    def _candidates(self, crop: FaceCrop) -> np.ndarray:
        """The identity codes to try for a face; a video track keeps the one chosen on its first frame."""
        if crop.track is not None and crop.track in self._track_codes:
            return self._track_codes[crop.track][None]
        return self.anonymizer.identities(self.seed, crop.key)

    def settings(self) -> dict:
        settings = {"method": self.method, "seed": self.seed, "save_parts": self.save_parts}
        if self.method == "generate":
            settings["weights_fingerprint"] = self.anonymizer.fingerprint
            settings["normalise_shape"] = self.normalise_shape
            settings["keep_tone"] = self.keep_tone
        return settings

    def __call__(self, photo: np.ndarray, crops: list[FaceCrop]) -> StepOutput:
        if not crops:
            return StepOutput([])
        rgb = np.ascontiguousarray(photo[..., :3])
        generating = self.method == "generate"
        records = [{"method": self.method, **({"seed": self.seed, "identity_key": crop.key} if generating else {})} for crop in crops]
        pictures = {}
        before = face_descriptors([rgb] * len(crops), [crop.face.landmarks for crop in crops])
        if generating:

            def judge(rows: np.ndarray, new: np.ndarray, holes: np.ndarray) -> np.ndarray:
                """Distances from the originals with each new face pasted into the photo as the output will have it."""
                regions = paint_region(torch.from_numpy(holes)[:, None], grow=1)[:, 0].numpy()
                pasted = [paste_back(rgb, face, crops[r].aligned.matrix, region) for r, face, region in zip(rows, new, regions)]
                return np.linalg.norm(face_descriptors(pasted, [crops[r].face.landmarks for r in rows]) - before[rows], axis=1)

            originals = np.stack([crop.aligned.image for crop in crops])
            landmarks = np.stack([crop.aligned.landmarks for crop in crops])
            painted, holes, codes, _ = self.anonymizer.paint_new_people(
                originals, landmarks, [self._candidates(crop) for crop in crops], self.normalise_shape, judge, self.keep_tone
            )
            for crop, code in zip(crops, codes):
                if crop.track is not None:
                    self._track_codes.setdefault(crop.track, code)
            regions = paint_region(torch.from_numpy(holes)[:, None], grow=1)[:, 0].numpy()
            layers = [Layer(crop.index, face, region) for crop, face, region in zip(crops, painted, regions)]
            if self.save_parts:
                drawn = [drawn_landmarks(lm, self.normalise_shape) for lm in landmarks]
                pictures["parts"] = parts_picture(originals, np.stack([lm if d is None else d for lm, d in zip(landmarks, drawn)]), painted)
        else:
            layers = []
            for crop in crops:
                patch, origin = obscure_patch(rgb, crop.face.landmarks, self.method)
                layers.append(Layer(crop.index, patch, None, "over", origin))

        def measure(result: np.ndarray) -> dict:
            after = face_descriptors([result] * len(crops), [crop.face.landmarks for crop in crops])
            distances = [round(float(d), 4) for d in np.linalg.norm(after - before, axis=1)]
            info: dict = {"identity_distance": distances}
            close = [crop.index for crop, d in zip(crops, distances) if d < SAME_PERSON]
            if close:
                info["warning"] = f"face(s) {close} still within dlib's same-person distance ({SAME_PERSON}) of the original"
            return info

        return StepOutput(records, [Variant("anonymized", lambda: layers, {"faces": len(layers)}, measure=measure)], pictures)
