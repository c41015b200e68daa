"""The shipped classifiers for inference, loaded once: attributes, expression, the age model (its
gender head), the face model (its age over whole years) and the gender probe on dlib's face
descriptor.

:class:`ClassifierModels` turns model inputs cut by :mod:`faceflex.face.crops` into probabilities;
:mod:`faceflex.steps.classify` turns those into the per-face records users see. Deterministic:
eval mode, no sampling.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.device import resolve_device
from faceflex.models.classifier_nets import ClassifierConfig, ClassifierNet, build_classifier, predict
from faceflex.models.labels import ATTRIBUTES, age_distribution
from faceflex.models.weights import load_network
from faceflex.shipped import shipped

TASKS = ("attributes", "expression", "age", "face")
SHIPPED = {task: f"classifier_{task}.pt" for task in TASKS}
GENDER_PROBE = "gender_probe.json"  # `faceflex train gender-probe`
REPORTED_MALE = "mean of the networks' mean and the descriptor probe (reported)"
PROBE_FROM_AGE = 5.0  # years (the face model's estimate): younger faces' gender from the networks alone (chosen on validation)


def load_task_model(task: str, path: str | Path | None = None, device: torch.device | str = "cpu") -> tuple[ClassifierNet, dict]:
    """(a classifier network in eval mode, its training record ``meta``), from ``path`` or the
    shipped weights of ``task``. The weights are laid out channels_last, as :func:`predict`'s inputs
    are: the same outputs, bit for bit, and the expression ensemble about a quarter faster on the CPU."""
    path = Path(path) if path is not None else shipped(SHIPPED[task])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: classifier weights missing (train them with `faceflex train classifier --task {task}`)")
    model, record = load_network(path, lambda config: build_classifier(ClassifierConfig.from_dict(config)), f"{task} classifier weights")
    return model.eval().to(resolve_device(device), memory_format=torch.channels_last), record.get("meta", {})


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
    attribute_logits: np.ndarray,
    gender_logits: np.ndarray,
    face_logits: np.ndarray,
    face_temperature: float,
    probe_logits: np.ndarray,
    ages: np.ndarray,
    reported_temperature: float,
) -> dict[str, np.ndarray]:
    """P(male) from the attribute model's Male output (CelebA-HQ), the age model's gender head
    (UTKFace), the face model's Male output (both sets; ``face_temperature``: its calibration), the
    gender probe on dlib's descriptor (``probe_logits``; NaN where a face has no descriptor), and
    the reported one (:data:`REPORTED_MALE`): the mean of the probe and of the two networks' mean
    (the age model's head and the face model's), measured better than the other sources and blends
    (docs/CLASSIFY.md); the networks' mean alone where there is no descriptor or the face model's
    age estimate (``ages``, years) is under :data:`PROBE_FROM_AGE` (dlib's descriptor reads small
    children's gender worse than the networks do); calibrated: its logit divided by
    ``reported_temperature`` (fitted on the validation part; a mean of sources is under-confident)."""
    attributes = sigmoid(attribute_logits[:, ATTRIBUTES.index("Male")])
    head = softmax(gender_logits)[:, 0]
    face = sigmoid(face_logits[:, ATTRIBUTES.index("Male")] / face_temperature)
    networks = (head + face) / 2
    probe = sigmoid(probe_logits)
    blend = np.where(np.isfinite(probe) & (ages >= PROBE_FROM_AGE), (networks + probe) / 2, networks)
    return {
        "attribute model (Male)": attributes,
        "age model's gender head": head,
        "face model (Male)": face,
        "descriptor probe": probe,
        "mean of the attribute model and the age model's head (shipped until 2026-12-04)": (attributes + head) / 2,
        "mean of the age model's head and the face model (shipped until 2026-12-05)": networks,
        REPORTED_MALE: sigmoid(logit(blend) / reported_temperature),
    }


@dataclass(frozen=True)
class FacePredictions:
    """Per-face model outputs for N faces."""

    attributes: np.ndarray  # (N, len(ATTRIBUTES)) probabilities
    expressions: np.ndarray  # (N, len(EXPRESSIONS)) probabilities
    age_years: np.ndarray  # (N,)
    age_sd: np.ndarray  # (N,) years: the spread of the face model's age distribution (how sure the age is)
    male: np.ndarray  # (N,) probability of male (:data:`REPORTED_MALE`)
    male_sources: dict[str, np.ndarray]  # every gender source and blend of :func:`male_probabilities`, (N,) each


class ClassifierModels:
    """The four networks and the gender probe, loaded once; ``predict`` runs each on all faces of a call in one batch.
    Attributes are the attribute and face models' blend (:func:`reported_attribute_logits`).
    Age comes from the face model (a distribution over whole years, trained on CelebA-HQ and
    UTKFace: MAE 5.15 years against the age model's 8.4, docs/CLASSIFY.md); gender from the age
    model's gender head, the face model's Male and the probe on dlib's descriptor
    (:func:`male_probabilities`)."""

    def __init__(self, device: str = "auto", paths: dict[str, str | Path] | None = None, gender_probe: dict | None = None) -> None:
        """``paths``: other weights per task; ``gender_probe``: another probe record (as
        ``data/gender_probe.json``: ``weights``, ``bias``, ``reported_temperature``)."""
        self.device = resolve_device(device)
        paths = paths or {}
        loaded = {task: load_task_model(task, paths.get(task), self.device) for task in TASKS}
        self.models = {task: model for task, (model, _) in loaded.items()}
        self.expression_temperature = float(loaded["expression"][1].get("temperatures", {}).get("expression", 1.0))
        face_temperatures = loaded["face"][1].get("temperatures", {}).get("attributes", [1.0] * len(ATTRIBUTES))
        self.face_temperatures = np.asarray(face_temperatures, np.float32)
        self.male_temperature = float(self.face_temperatures[ATTRIBUTES.index("Male")])
        probe = gender_probe or json.loads(shipped(GENDER_PROBE).read_text())
        self.probe_weights, self.probe_bias = np.asarray(probe["weights"], np.float64), float(probe["bias"])
        self.reported_temperature = float(probe["reported_temperature"])

    def predict(self, attribute_inputs: np.ndarray, expression_inputs: np.ndarray, descriptors: np.ndarray) -> FacePredictions:
        """``attribute_inputs`` (N, 64, 64, 3) and ``expression_inputs`` (N, 48, 48) uint8, from
        :mod:`faceflex.face.crops`; ``descriptors`` (N, 128): dlib's descriptors of the faces
        (:func:`faceflex.face.identity.face_descriptors`; NaN rows: gender from the networks alone)."""
        expression_logits = predict(self.models["expression"], expression_inputs[..., None], self.device)["expression"]
        expressions = softmax(expression_logits / self.expression_temperature)  # calibrated on FER2013's validation part
        attributes, ages, spreads, males = self._read_faces(attribute_inputs, descriptors)
        return FacePredictions(attributes, expressions, ages, spreads, males[REPORTED_MALE], males)

    def reported_attributes(self, attribute_inputs: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
        """(N, len(ATTRIBUTES)) probabilities as ``classify`` reports them: the blended attributes,
        Male the reported gender (P(male), which needs ``descriptors``; NaN rows: the networks alone).
        The judge of ``faceflex edit --to`` and ``faceflex evaluate edit``."""
        attributes, _, _, males = self._read_faces(attribute_inputs, descriptors)
        attributes[:, ATTRIBUTES.index("Male")] = males[REPORTED_MALE]
        return attributes

    def _read_faces(self, attribute_inputs: np.ndarray, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """(attributes (N, 10), age years (N,), age spread (N,), every gender source) from the
        attribute, age and face networks and the probe."""
        attribute_logits = predict(self.models["attributes"], attribute_inputs, self.device)["attributes"]
        gender_logits = predict(self.models["age"], attribute_inputs, self.device)["gender"]
        face = predict(self.models["face"], attribute_inputs, self.device)
        probe_logits = np.asarray(descriptors, np.float64) @ self.probe_weights + self.probe_bias
        ages, spreads = age_distribution(face["age"])
        males = male_probabilities(
            attribute_logits, gender_logits, face["attributes"], self.male_temperature, probe_logits, ages, self.reported_temperature
        )
        attributes = sigmoid(reported_attribute_logits(attribute_logits, face["attributes"], self.face_temperatures))
        return attributes, ages, spreads, males


@functools.cache
def load_classifiers(device: str = "auto") -> ClassifierModels:
    """The shipped classifiers (loaded once per process and device)."""
    return ClassifierModels(device)
