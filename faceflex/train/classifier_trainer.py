"""Training and measuring the mini-Xception classifiers (on the shared :class:`~faceflex.train.trainer.Trainer`).

Tasks (``TASKS``): ``attributes`` (CelebA-HQ, 10 binary attributes, one multi-label head),
``expression`` (FER2013, 7 classes) and ``age`` (UTKFace, age regression in decades + gender).
CPU: channels_last + bf16 autocast (also avoids torch 2.13's segfault in the fp32 channels_last
backward of the first 1x1 stride-2 shortcut); CUDA: fp16 autocast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceflex.models.labels import AGE_UNIT, ATTRIBUTES, EXPRESSIONS, GENDERS
from faceflex.models.xception import MiniXception, XceptionConfig, predict, to_tensor
from faceflex.train.face_sets import LabelledSet
from faceflex.train.trainer import Trainer


@dataclass(frozen=True)
class TaskSpec:
    """What a task's model outputs and how it is judged."""

    name: str
    heads: dict[str, int]
    in_channels: int
    image_size: int
    select_metric: str  # the validation metric reported per epoch (higher is better)


TASKS = {
    "attributes": TaskSpec("attributes", {"attributes": len(ATTRIBUTES)}, 3, 64, "mean_accuracy"),
    "expression": TaskSpec("expression", {"expression": len(EXPRESSIONS)}, 1, 48, "accuracy"),
    "age": TaskSpec("age", {"age": 1, "gender": len(GENDERS)}, 3, 64, "neg_age_mae"),
}


@dataclass(frozen=True)
class ClassifierSettings:
    """The ``train_classifier.<task>`` section of the config."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    widths: tuple[int, ...] = (16, 32, 64, 128)
    stem: int = 8
    dropout: float = 0.0
    rotate: float = 10.0  # augmentation: degrees
    scale: float = 0.1  # +- relative zoom
    shift: float = 0.08  # +- fraction of the side
    photometric: float = 0.2  # +- brightness and contrast
    label_smoothing: float = 0.0
    seed: int = 0


def augment(x: torch.Tensor, settings: ClassifierSettings, generator: torch.Generator) -> torch.Tensor:
    """Random flip, rotation, zoom, shift, brightness and contrast of a batch in [0, 1] (seeded)."""
    n = x.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(settings.rotate))
    zoom = 1 + uniform(settings.scale)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / zoom * flip
    theta[:, 0, 1] = -torch.sin(angle) / zoom
    theta[:, 1, 0] = torch.sin(angle) / zoom * flip
    theta[:, 1, 1] = torch.cos(angle) / zoom
    theta[:, :, 2] = torch.stack([uniform(2 * settings.shift), uniform(2 * settings.shift)], dim=1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = (1 + uniform(settings.photometric)).to(x.device).view(n, 1, 1, 1)
    contrast = (1 + uniform(settings.photometric)).to(x.device).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean * brightness).clamp(0, 1)


def task_loss(
    spec: TaskSpec, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], settings: ClassifierSettings
) -> torch.Tensor:
    """The training loss of one batch."""
    if spec.name == "attributes":
        return F.binary_cross_entropy_with_logits(outputs["attributes"].float(), targets["attributes"])
    if spec.name == "expression":
        return F.cross_entropy(outputs["expression"].float(), targets["expression"], label_smoothing=settings.label_smoothing)
    age = F.smooth_l1_loss(outputs["age"].float().squeeze(1), targets["age"] / AGE_UNIT)
    return age + F.cross_entropy(outputs["gender"].float(), targets["gender"])


def metrics(spec: TaskSpec, outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> dict:
    """Held-out figures: per-attribute accuracy, class accuracy and confusion, or age MAE."""
    if spec.name == "attributes":
        correct = (outputs["attributes"] > 0) == (targets["attributes"] > 0.5)
        per = {name: round(float(correct[:, i].mean()), 4) for i, name in enumerate(ATTRIBUTES)}
        return {"mean_accuracy": round(float(np.mean(list(per.values()))), 4), "accuracy": per, "count": len(correct)}
    if spec.name == "expression":
        predicted = outputs["expression"].argmax(1)
        truth = targets["expression"]
        confusion = np.zeros((len(EXPRESSIONS), len(EXPRESSIONS)), dtype=int)
        np.add.at(confusion, (truth, predicted), 1)
        recall = {
            name: round(float(confusion[i, i] / max(1, confusion[i].sum())), 4) for i, name in enumerate(EXPRESSIONS) if confusion[i].sum()
        }
        return {
            "accuracy": round(float((predicted == truth).mean()), 4),
            "recall": recall,
            "confusion": confusion.tolist(),
            "count": len(truth),
        }
    age = outputs["age"][:, 0] * AGE_UNIT
    mae = float(np.abs(age - targets["age"]).mean())
    gender = float((outputs["gender"].argmax(1) == targets["gender"]).mean())
    return {"neg_age_mae": round(-mae, 3), "age_mae": round(mae, 3), "gender_accuracy": round(gender, 4), "count": len(age)}


def evaluate_part(spec: TaskSpec, model: MiniXception, data: LabelledSet, part: str, device: torch.device) -> dict:
    """Metrics of ``model`` on one part (``val`` or ``test``) of a labelled set."""
    rows = data.rows(part)
    outputs = predict(model, data.images[rows], device)
    return metrics(spec, outputs, {k: v[rows] for k, v in data.targets.items()})


class ClassifierTrainer(Trainer):
    """Trains one task's mini-Xception on its data's training part; ``val`` is measured each epoch."""

    def __init__(self, spec: TaskSpec, data: LabelledSet, settings: ClassifierSettings, out: Path, device: torch.device):
        torch.manual_seed(settings.seed)
        self.spec, self.data, self.name = spec, data, spec.name
        config = XceptionConfig(
            spec.in_channels, spec.image_size, settings.stem, tuple(settings.widths), dict(spec.heads), settings.dropout
        )
        model = MiniXception(config).to(device).to(memory_format=torch.channels_last)
        decay = [p for p in model.parameters() if p.ndim > 1]
        rest = [p for p in model.parameters() if p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": settings.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=settings.lr
        )
        train_rows = data.rows("train")
        self.setup(model, optimizer, train_rows, settings, out, device, warmup_steps=max(1, len(train_rows) // settings.batch_size))

    def step_loss(self, rows: np.ndarray, generator: torch.Generator):
        rows = np.sort(rows)
        x = augment(to_tensor(self.data.images[rows], self.device), self.settings, generator).contiguous(memory_format=torch.channels_last)
        targets = {k: torch.from_numpy(v[rows]).to(self.device) for k, v in self.data.targets.items()}
        return task_loss(self.spec, self.model(x), targets, self.settings), {}

    def evaluate(self) -> dict:
        if not len(self.data.rows("val")):
            return {"val": None}
        return {"val": evaluate_part(self.spec, self.model, self.data, "val", self.device).get(self.spec.select_metric)}

    def export_meta(self) -> dict:
        return {"task": self.spec.name, "data": self.data.notes}
