"""Classifying faces: gender, age, expression, smiling, occlusion, makeup, pose and illumination.

``Classifier.classify(rgb, faces)`` returns one record per face; the three networks (attributes,
expression, age) each see all faces of the call in one batch. Deterministic: eval mode.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from faceflex.device import resolve_device
from faceflex.face.align import align_face
from faceflex.face.crops import attribute_input, expression_input
from faceflex.face.detect import Face
from faceflex.face.illumination import measure_illumination
from faceflex.face.pose import estimate_pose
from faceflex.models.labels import AGE_UNIT, ATTRIBUTES, EXPRESSIONS
from faceflex.models.weights import load_weights, shipped
from faceflex.models.xception import MiniXception, XceptionConfig, predict

SHIPPED = {task: f"classifier_{task}.pt" for task in ("attributes", "expression", "age")}
# Age groups (years): child < 13 <= young < 30 <= middle < 55 <= old.
AGE_GROUPS = ((13, "child"), (30, "young"), (55, "middle"), (float("inf"), "old"))
OCCLUSION = {"eyeglasses": "Eyeglasses", "hat": "Wearing_Hat", "beard": "No_Beard", "mustache": "Mustache", "bangs": "Bangs"}
MAKEUP = {"heavy_makeup": "Heavy_Makeup", "lipstick": "Wearing_Lipstick"}


def load_task_model(task: str, path: str | Path | None = None, device: torch.device | str = "cpu") -> MiniXception:
    """A classifier network in eval mode, from ``path`` or the shipped weights of ``task``."""
    path = Path(path) if path is not None else shipped(SHIPPED[task])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: classifier weights missing (train them with `faceflex train classifier --task {task}`)")
    record = load_weights(path)
    model = MiniXception(XceptionConfig.from_dict(record["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()})
    device = resolve_device(device) if isinstance(device, str) else device
    return model.float().eval().to(device)


def age_group(years: float) -> str:
    """child / young / middle / old (see ``AGE_GROUPS``)."""
    return next(name for limit, name in AGE_GROUPS if years < limit)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def male_probabilities(attribute_logits: np.ndarray, gender_logits: np.ndarray) -> dict[str, np.ndarray]:
    """P(male) from the attribute model's Male output (CelebA-HQ), from the age model's gender head
    (UTKFace), and their mean -- the one reported, measured better across both test sets than
    either alone (docs/CLASSIFY.md)."""
    attributes = _sigmoid(attribute_logits[:, ATTRIBUTES.index("Male")])
    head = _softmax(gender_logits)[:, 0]
    return {"attribute model (Male)": attributes, "age model's gender head": head, "mean of both (shipped)": (attributes + head) / 2}


def _flag(probability: float) -> dict:
    return {"value": bool(probability >= 0.5), "probability": round(float(probability), 4)}


class Classifier:
    """The three shipped networks, loaded once."""

    def __init__(self, device: str = "auto", paths: dict[str, str | Path] | None = None) -> None:
        self.device = resolve_device(device)
        paths = paths or {}
        self.models = {task: load_task_model(task, paths.get(task), self.device) for task in SHIPPED}

    def classify(self, rgb: np.ndarray, faces: list[Face]) -> list[dict]:
        """One record per face of an RGB photo (same order as ``faces``)."""
        if not faces:
            return []
        aligned = np.stack([attribute_input(align_face(rgb, f.landmarks).image) for f in faces])
        expression = np.stack([expression_input(rgb, f.landmarks) for f in faces])[..., None]
        attribute_logits = predict(self.models["attributes"], aligned, self.device)["attributes"]
        attributes = _sigmoid(attribute_logits)
        expressions = _softmax(predict(self.models["expression"], expression, self.device)["expression"])
        age_outputs = predict(self.models["age"], aligned, self.device)
        ages = age_outputs["age"][:, 0] * AGE_UNIT
        males = male_probabilities(attribute_logits, age_outputs["gender"])["mean of both (shipped)"]
        records = []
        for i, face in enumerate(faces):
            p = dict(zip(ATTRIBUTES, attributes[i].tolist()))
            p["No_Beard"] = 1.0 - p["No_Beard"]  # reported as "beard"
            male = float(males[i])
            years = float(np.clip(ages[i], 0.0, 110.0))
            records.append(
                {
                    "index": i,
                    "box": [round(float(v), 1) for v in face.box],
                    "score": round(float(face.score), 4),
                    "gender": {"label": "male" if male >= 0.5 else "female", "probability": round(max(male, 1 - male), 4)},
                    "age": {"years": round(years, 1), "group": age_group(years), "young_probability": round(p["Young"], 4)},
                    "expression": {
                        "label": EXPRESSIONS[int(expressions[i].argmax())],
                        "probabilities": {name: round(float(v), 4) for name, v in zip(EXPRESSIONS, expressions[i])},
                    },
                    "smiling": _flag(p["Smiling"]),
                    "occlusion": {key: _flag(p[name]) for key, name in OCCLUSION.items()},
                    "makeup": {key: _flag(p[name]) for key, name in MAKEUP.items()},
                    "pose": estimate_pose(face.landmarks).to_dict(),
                    "illumination": measure_illumination(rgb, face.landmarks).to_dict(),
                }
            )
        return records


@functools.cache
def load_classifier(device: str = "auto") -> Classifier:
    """The shipped classifiers (loaded once per process and device)."""
    return Classifier(device)


def flatten_record(record: dict, prefix: str = "") -> dict:
    """A nested record as flat ``a.b.c`` columns (for CSV)."""
    flat: dict = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_record(value, name + "."))
        elif isinstance(value, list):
            flat[name] = " ".join(str(v) for v in value)
        else:
            flat[name] = value
    return flat
