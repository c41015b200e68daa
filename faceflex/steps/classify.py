"""``faceflex classify``: gender, age, expression, smiling, occlusion, makeup, pose and illumination per face.

The networks (attributes, expression, age for its gender head, the face model for age) each see all faces of a photo in one batch.
Their inputs are cut by :mod:`faceflex.face.crops`, the same functions that made the training data.
A face mask (``occlusion.mask``) comes from the unmasking network's segmentation of the aligned
face, the same measure ``faceflex unmask`` uses to decide which faces to repaint, and like it
looked for again in another detector's box where the first shows none (with ``--detector
hog+masked+upper``, the detection ``unmask`` uses, masked faces are found at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceflex.face.crops import attribute_input, expression_input
from faceflex.face.illumination import measure_illumination
from faceflex.face.pose import estimate_pose
from faceflex.inference.classifiers import ClassifierModels, load_classifiers
from faceflex.inference.unmasking import Unmasker, load_unmasker, mask_presence
from faceflex.models.labels import ATTRIBUTES, EXPRESSIONS
from faceflex.pipeline.flow import FaceCrop, StepOutput
from faceflex.steps.unmask import masked_in_another_box
from faceflex.viz import draw_classifications

# Age groups (years): child < 13 <= young < 30 <= middle < 55 <= old.
AGE_GROUPS = ((13, "child"), (30, "young"), (55, "middle"), (float("inf"), "old"))
OCCLUSION = {"eyeglasses": "Eyeglasses", "hat": "Wearing_Hat", "beard": "No_Beard", "mustache": "Mustache", "bangs": "Bangs"}
MAKEUP = {"heavy_makeup": "Heavy_Makeup", "lipstick": "Wearing_Lipstick"}


def age_group(years: float) -> str:
    """child / young / middle / old (see ``AGE_GROUPS``)."""
    return next(name for limit, name in AGE_GROUPS if years < limit)


def _flag(probability: float) -> dict:
    return {"value": bool(probability >= 0.5), "probability": round(float(probability), 4)}


@dataclass
class ClassifyStep:
    """One record per face; with ``annotate``, the photo with each face's box and labels (product ``classified``)."""

    device: str = "auto"
    annotate: bool = False
    models: ClassifierModels | None = field(default=None, repr=False)
    unmasker: Unmasker | None = field(default=None, repr=False)

    command = "classify"
    aligned_size = 128
    writes_variants = False
    picture_format = "jpg"

    def __post_init__(self) -> None:
        if self.models is None:
            self.models = load_classifiers(self.device)
        if self.unmasker is None:
            self.unmasker = load_unmasker(device=self.device)

    def settings(self) -> dict:
        return {"annotate": self.annotate}

    def __call__(self, photo: np.ndarray, crops: list[FaceCrop]) -> StepOutput:
        if not crops:
            return StepOutput([])
        aligned = np.stack([c.aligned.image for c in crops])
        probabilities, frames = self.unmasker.mask_probabilities(aligned), [c.aligned for c in crops]
        for k, (crop, chance) in masked_in_another_box(photo, crops, probabilities, self.unmasker.mask_probabilities).items():
            probabilities[k], frames[k] = chance, crop.aligned  # seen from another detector's box, as `unmask` does
        coverages, presences = mask_presence(probabilities)
        expression_inputs = np.stack([expression_input(photo, c.face.landmarks) for c in crops])
        _, stages = self.models.dlib_features([photo] * len(crops), [c.face.landmarks for c in crops])
        predictions = self.models.predict(np.stack([attribute_input(image) for image in aligned]), expression_inputs, stages)
        males = predictions.male.copy()
        masked = np.flatnonzero(presences >= 0.5)
        if len(masked):  # gender from the face the unmasking network paints under the mask (docs/CLASSIFY.md)
            painted = self.unmasker(np.stack([frames[k].image for k in masked]))[0]
            _, painted_stages = self.models.dlib_features(list(painted), [frames[k].landmarks for k in masked])
            inputs = np.stack([attribute_input(image) for image in painted])
            males[masked] = self.models.predict(inputs, expression_inputs[masked], painted_stages).male
        records = []
        for i, crop in enumerate(crops):
            p = dict(zip(ATTRIBUTES, predictions.attributes[i].tolist()))
            p["No_Beard"] = 1.0 - p["No_Beard"]  # reported as "beard"
            male, years = float(males[i]), float(predictions.age_years[i])
            expressions = predictions.expressions[i]
            records.append(
                {
                    "gender": {"label": "male" if male >= 0.5 else "female", "probability": round(max(male, 1 - male), 4)},
                    "age": {
                        "years": round(years, 1),
                        "sd": round(float(predictions.age_sd[i]), 1),
                        "group": age_group(years),
                        "young_probability": round(p["Young"], 4),
                    },
                    "expression": {
                        "label": EXPRESSIONS[int(expressions.argmax())],
                        "probabilities": {name: round(float(v), 4) for name, v in zip(EXPRESSIONS, expressions)},
                    },
                    "smiling": _flag(p["Smiling"]),
                    "occlusion": {
                        **{key: _flag(p[name]) for key, name in OCCLUSION.items()},
                        "mask": {**_flag(presences[i]), "coverage": round(float(coverages[i]), 4)},
                    },
                    "makeup": {key: _flag(p[name]) for key, name in MAKEUP.items()},
                    "pose": estimate_pose(crop.face.landmarks).to_dict(),
                    "illumination": measure_illumination(photo, crop.face.landmarks).to_dict(),
                }
            )
        pictures = {}
        if self.annotate:
            drawn = [{"index": c.index, "box": list(c.face.box), **r} for c, r in zip(crops, records)]
            pictures["classified"] = draw_classifications(photo, drawn)
        return StepOutput(records, pictures=pictures)
