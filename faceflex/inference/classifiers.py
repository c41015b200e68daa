"""The shipped classifiers for inference, loaded once: attributes, expression, the face model (its
attributes blended with the attribute model's) and the gender-and-age network on dlib's face
recognition features (gender and age).

:class:`ClassifierModels` turns model inputs cut by :mod:`faceflex.face.crops` into probabilities;
:mod:`faceflex.steps.classify` turns those into the per-face records users see. Deterministic:
eval mode, no sampling.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.device import resolve_device
from faceflex.face.identity import dlib_features
from faceflex.models.classifier_nets import ClassifierConfig, ClassifierNet, build_classifier, predict
from faceflex.models.face_descriptor_net import GenderAgeConfig, GenderAgeNet, stage_shape
from faceflex.models.labels import ATTRIBUTES, age_distribution
from faceflex.models.weights import load_network
from faceflex.shipped import shipped

TASKS = ("attributes", "expression", "age", "face")
SHIPPED = {task: f"classifier_{task}.pt" for task in TASKS}
INFERENCE_TASKS = ("attributes", "expression", "face")  # the networks classify runs (the age model's outputs are not reported)
GENDER_AGE = "classifier_gender_age.pt"  # `faceflex train gender-age`
REPORTED_MALE = "gender-and-age network on dlib's features (reported)"


def load_task_model(task: str, path: str | Path | None = None, device: torch.device | str = "cpu") -> tuple[ClassifierNet, dict]:
    """(a classifier network in eval mode, its training record ``meta``), from ``path`` or the
    shipped weights of ``task``. The weights are laid out channels_last, as :func:`predict`'s inputs
    are: the same outputs, bit for bit, and the expression ensemble about a quarter faster on the CPU."""
    path = Path(path) if path is not None else shipped(SHIPPED[task])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: classifier weights missing (train them with `faceflex train classifier --task {task}`)")
    model, record = load_network(path, lambda config: build_classifier(ClassifierConfig.from_dict(config)), f"{task} classifier weights")
    return model.eval().to(resolve_device(device), memory_format=torch.channels_last), record.get("meta", {})


def load_gender_age_model(path: str | Path | None = None, device: torch.device | str = "cpu") -> tuple[GenderAgeNet, dict]:
    """(the gender-and-age network in eval mode, its training record ``meta``), from ``path`` or the shipped weights."""
    path = Path(path) if path is not None else shipped(GENDER_AGE)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: gender-and-age weights missing (train them with `faceflex train gender-age`)")
    model, record = load_network(path, lambda config: GenderAgeNet(GenderAgeConfig.from_dict(config)), "gender-and-age network weights")
    return model.eval().to(resolve_device(device)), record.get("meta", {})


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), p clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


ATTRIBUTE_MODEL_SHARE = 0.6  # of the reported attribute logits; chosen on CelebA-HQ's validation part (docs/CLASSIFY.md)


def reported_attribute_logits(attribute_logits: np.ndarray, face_logits: np.ndarray, face_temperatures: np.ndarray) -> np.ndarray:
    """The attribute logits ``classify`` reports, (N, 10) in :data:`ATTRIBUTES` order: 0.6 x the
    attribute model's + 0.4 x the face model's calibrated ones (``face_logits`` / its per-attribute
    ``face_temperatures``). The share was chosen on the validation part (best mean accuracy);
    on the test part the blend's mean accuracy is 94.3 % against the attribute model's 93.8 %
    (Smiling 92.0 against 91.8 %, Young 87.4 against 84.7 %: docs/CLASSIFY.md)."""
    return ATTRIBUTE_MODEL_SHARE * attribute_logits + (1.0 - ATTRIBUTE_MODEL_SHARE) * face_logits / face_temperatures


def male_probabilities(
    attribute_logits: np.ndarray, face_logits: np.ndarray, face_temperature: float, dlib_logits: np.ndarray, dlib_temperature: float
) -> dict[str, np.ndarray]:
    """P(male) from the attribute model's Male output (CelebA-HQ), the face model's (CelebA-HQ and
    UTKFace; ``face_temperature``: its calibration) and the gender-and-age network's (``dlib_logits``,
    NaN where a face has no dlib features; ``dlib_temperature``: its calibration, fitted on the
    validation part), and the reported one (:data:`REPORTED_MALE`): the gender-and-age network's,
    measured better than every other source and blend (docs/CLASSIFY.md), the face model's where
    there are no dlib features."""
    attributes = sigmoid(attribute_logits[:, ATTRIBUTES.index("Male")])
    face = sigmoid(face_logits[:, ATTRIBUTES.index("Male")] / face_temperature)
    dlib = sigmoid(dlib_logits / dlib_temperature)
    return {
        "attribute model (Male)": attributes,
        "face model (Male)": face,
        "mean of the attribute and face models": (attributes + face) / 2,
        REPORTED_MALE: np.where(np.isfinite(dlib), dlib, face),
    }


@dataclass(frozen=True)
class FacePredictions:
    """Per-face model outputs for N faces."""

    attributes: np.ndarray  # (N, len(ATTRIBUTES)) probabilities
    expressions: np.ndarray  # (N, len(EXPRESSIONS)) probabilities
    age_years: np.ndarray  # (N,)
    age_sd: np.ndarray  # (N,) years: the spread of the age distribution (how sure the age is)
    male: np.ndarray  # (N,) probability of male (:data:`REPORTED_MALE`)
    male_sources: dict[str, np.ndarray]  # every gender source and blend of :func:`male_probabilities`, (N,) each


class ClassifierModels:
    """The attribute, expression and face networks and the gender-and-age network, loaded once;
    ``predict`` runs each on all faces of a call in one batch. Attributes are the attribute and
    face models' blend (:func:`reported_attribute_logits`); gender and age come from the
    gender-and-age network on dlib's features (UTKFace age MAE 4.29 years against the face model's
    5.15; gender: :func:`male_probabilities`), from the face model where a face has no dlib features."""

    def __init__(self, device: str = "auto", paths: dict[str, str | Path] | None = None) -> None:
        """``paths``: other weights per task (``attributes``, ``expression``, ``face``, ``gender_age``)."""
        self.device = resolve_device(device)
        paths = paths or {}
        loaded = {task: load_task_model(task, paths.get(task), self.device) for task in INFERENCE_TASKS}
        self.models = {task: model for task, (model, _) in loaded.items()}
        self.expression_temperature = float(loaded["expression"][1].get("temperatures", {}).get("expression", 1.0))
        face_temperatures = loaded["face"][1].get("temperatures", {}).get("attributes", [1.0] * len(ATTRIBUTES))
        self.face_temperatures = np.asarray(face_temperatures, np.float32)
        self.male_temperature = float(self.face_temperatures[ATTRIBUTES.index("Male")])
        self.gender_age, meta = load_gender_age_model(paths.get("gender_age"), self.device)
        self.dlib_male_temperature = float(meta.get("temperatures", {}).get("male", 1.0))
        self.stage_block = self.gender_age.config.tap  # the block of dlib's network whose output it reads

    def dlib_features(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(dlib's descriptors, the features :meth:`predict` reads) of these faces
        (:func:`faceflex.face.identity.dlib_features` at this gender-and-age network's block)."""
        return dlib_features(images, landmarks, self.stage_block)

    def predict(self, attribute_inputs: np.ndarray, expression_inputs: np.ndarray, stages: np.ndarray | None) -> FacePredictions:
        """``attribute_inputs`` (N, 64, 64, 3) and ``expression_inputs`` (N, 48, 48) uint8, from
        :mod:`faceflex.face.crops`; ``stages``: dlib's features of the faces (:meth:`dlib_features`;
        None or NaN rows: gender and age from the face model)."""
        expression_logits = predict(self.models["expression"], expression_inputs[..., None], self.device)["expression"]
        expressions = softmax(expression_logits / self.expression_temperature)  # calibrated on FER2013's validation part
        attributes, ages, spreads, males = self._read_faces(attribute_inputs, stages)
        return FacePredictions(attributes, expressions, ages, spreads, males[REPORTED_MALE], males)

    def reported_attributes(self, attribute_inputs: np.ndarray, stages: np.ndarray | None) -> np.ndarray:
        """(N, len(ATTRIBUTES)) probabilities as ``classify`` reports them: the blended attributes,
        Male the reported gender (P(male), which reads ``stages``; None or NaN rows: the face model's).
        The judge of ``faceflex edit --to`` and ``faceflex evaluate edit``."""
        attributes, _, _, males = self._read_faces(attribute_inputs, stages)
        attributes[:, ATTRIBUTES.index("Male")] = males[REPORTED_MALE]
        return attributes

    @torch.inference_mode()
    def _dlib_outputs(self, count: int, stages: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(male logits (N,), age logits (N, 101)) of the gender-and-age network, NaN rows where ``stages`` are NaN (all: None)."""
        male, age = np.full(count, np.nan), np.full((count, self.gender_age.config.age_max + 1), np.nan)
        if stages is None:
            return male, age
        stages = np.asarray(stages, np.float32).reshape(count, -1)
        known = np.isfinite(stages).all(axis=1)
        if known.any():
            x = torch.from_numpy(stages[known]).view(int(known.sum()), *stage_shape(self.stage_block)).to(self.device)
            outputs = self.gender_age(x)
            male[known], age[known] = outputs["male"].float().cpu().numpy(), outputs["age"].float().cpu().numpy()
        return male, age

    def _read_faces(self, attribute_inputs: np.ndarray, stages: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """(attributes (N, 10), age years (N,), age spread (N,), every gender source) from the
        attribute and face networks and the gender-and-age network."""
        attribute_logits = predict(self.models["attributes"], attribute_inputs, self.device)["attributes"]
        face = predict(self.models["face"], attribute_inputs, self.device)
        dlib_male, dlib_age = self._dlib_outputs(len(attribute_inputs), stages)
        known = np.isfinite(dlib_male)
        ages, spreads = age_distribution(np.where(known[:, None], dlib_age, face["age"]))
        males = male_probabilities(attribute_logits, face["attributes"], self.male_temperature, dlib_male, self.dlib_male_temperature)
        attributes = sigmoid(reported_attribute_logits(attribute_logits, face["attributes"], self.face_temperatures))
        return attributes, ages, spreads, males


@functools.cache
def load_classifiers(device: str = "auto") -> ClassifierModels:
    """The shipped classifiers (loaded once per process and device)."""
    return ClassifierModels(device)
