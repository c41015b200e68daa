"""The shipped classifiers for inference: the face model (10 attributes incl. gender, and age) and
the expression model, loaded once.

:class:`ClassifierModels` turns model inputs cut by :mod:`faceflex.face.crops` into calibrated
probabilities (each head's logits divided by the temperature fitted on the validation part and
stored in the weights); :mod:`faceflex.steps.classify` turns those into the per-face records users
see. Deterministic: eval mode, no sampling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.choices import CLASSIFIER_TASKS
from faceflex.device import resolve_device
from faceflex.models.classifier_nets import ClassifierConfig, ClassifierNet, build_classifier, predict
from faceflex.models.labels import expected_age
from faceflex.models.weights import load_network
from faceflex.shipped import shipped

TASKS = ("face", "expression")  # the networks `faceflex classify` runs
SHIPPED = {task: f"classifier_{task}.pt" for task in CLASSIFIER_TASKS}


def load_task_model(task: str, path: str | Path | None = None, device: torch.device | str = "cpu") -> tuple[ClassifierNet, dict]:
    """(a classifier network in eval mode, its training record ``meta``), from ``path`` or the
    shipped weights of ``task``."""
    path = Path(path) if path is not None else shipped(SHIPPED[task])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: classifier weights missing (train them with `faceflex train classifier --task {task}`)")
    model, record = load_network(path, lambda config: build_classifier(ClassifierConfig.from_dict(config)), f"{task} classifier weights")
    return model.eval().to(resolve_device(device)), record.get("meta", {})


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class FacePredictions:
    """Per-face model outputs for N faces."""

    attributes: np.ndarray  # (N, len(ATTRIBUTES)) calibrated probabilities; Male is the gender
    expressions: np.ndarray  # (N, len(EXPRESSIONS)) calibrated probabilities
    age_years: np.ndarray  # (N,) the expected age


class ClassifierModels:
    """The face and expression networks, loaded once; ``predict`` runs each on all faces of a call in one batch."""

    def __init__(self, device: str = "auto", paths: dict[str, str | Path] | None = None) -> None:
        self.device = resolve_device(device)
        paths = paths or {}
        loaded = {task: load_task_model(task, paths.get(task), self.device) for task in TASKS}
        self.models = {task: model for task, (model, _) in loaded.items()}
        self.temperatures = {task: meta.get("temperatures", {}) for task, (_, meta) in loaded.items()}

    @property
    def attribute_model(self) -> ClassifierNet:
        """The network whose ``attributes`` head reads the 10 CelebA attributes (raw logits)."""
        return self.models["face"]

    def predict(self, attribute_inputs: np.ndarray, expression_inputs: np.ndarray) -> FacePredictions:
        """``attribute_inputs`` (N, 64, 64, 3) and ``expression_inputs`` (N, 48, 48) uint8, from :mod:`faceflex.face.crops`."""
        face = predict(self.models["face"], attribute_inputs, self.device)
        attribute_t = np.asarray(self.temperatures["face"].get("attributes", 1.0), dtype=np.float32)
        expression_t = float(self.temperatures["expression"].get("expression", 1.0))
        expressions = predict(self.models["expression"], expression_inputs[..., None], self.device)["expression"]
        return FacePredictions(sigmoid(face["attributes"] / attribute_t), softmax(expressions / expression_t), expected_age(face["age"]))


@functools.cache
def load_classifiers(device: str = "auto") -> ClassifierModels:
    """The shipped classifiers (loaded once per process and device)."""
    return ClassifierModels(device)
