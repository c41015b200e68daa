"""Training the gender-and-age network on dlib's features (``faceflex train gender-age``).

dlib's face recognition network was trained on millions of faces to tell people apart; a linear
probe on its descriptor already read gender better than faceflex's 64-px networks on adults, but
not children's (docs/CLASSIFY.md). Here a copy of its top residual blocks is fine-tuned on the face
set (CelebA-HQ's Male; UTKFace's gender and age, 1-116 years) with two heads, gender and age as a
distribution over whole years (the face task's loss, :func:`~faceflex.train.classifier_trainer.face_loss`:
each source half of the gender loss, label-distribution learning for age). dlib's lower blocks stay
frozen, so their activations on every training face and on its mirror image are computed once
(:func:`~faceflex.train.face_sets.face_set_dlib_stages`) and an epoch takes under three minutes on
2 CPU cores (blocks 7-13); the augmentation is the mirror image (one of the two, drawn per face and epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.evaluation.calibration import binary_ece, fit_temperature
from faceflex.models.face_descriptor_net import FaceDescriptorNet, GenderAgeConfig, GenderAgeNet
from faceflex.models.labels import AGE_BANDS, ATTRIBUTES, age_distribution
from faceflex.train.classifier_trainer import face_loss, gender_accuracy
from faceflex.train.face_sets import LabelledSet
from faceflex.train.trainer import Trainer


@dataclass(frozen=True)
class GenderAgeSettings:
    """The ``train_classifier.gender_age`` section of the config."""

    epochs: int = 8
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.05
    age_weight: float = 0.5  # weight of the age terms against the gender term
    age_sigma: float = 3.0  # width (years) of the Gaussian label distribution around the true age
    from_block: int = 7  # the first of dlib's residual blocks fine-tuned (the cached features are block from_block - 1's)
    seed: int = 0


def known_rows(data: LabelledSet, stages: np.ndarray, part: str) -> np.ndarray:
    """The rows of ``part`` that have dlib features (dlib found the face's landmarks)."""
    rows = data.rows(part)
    return rows[np.isfinite(stages[rows, 0, 0, 0, 0])]


@torch.inference_mode()
def gender_age_outputs(model: GenderAgeNet, stages: np.ndarray, rows: np.ndarray, device: torch.device) -> dict[str, np.ndarray]:
    """The eval-mode outputs (``male`` logits (N,), ``age`` logits (N, 101)) on the plain chips' features (N, 2, C, H, W)."""
    model.eval()
    outputs: dict[str, list[np.ndarray]] = {"male": [], "age": []}
    for start in range(0, len(rows), 512):
        x = torch.from_numpy(np.asarray(stages[rows[start : start + 512], 0], np.float32)).to(device)
        for key, value in model(x).items():
            outputs[key].append(value.float().cpu().numpy())
    return {key: np.concatenate(values) for key, values in outputs.items()}


def gender_age_metrics(outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray], temperature: float | None = None) -> dict:
    """Gender accuracy per source, UTKFace age band and race group; UTKFace age MAE overall and per
    band; the gender's calibration error (ECE) as trained [and at ``temperature``]."""
    male = targets["attributes"][:, ATTRIBUTES.index("Male")]  # every face-set row knows it
    gender = gender_accuracy((outputs["male"] > 0) == (male > 0.5), targets)
    years, truth = age_distribution(outputs["age"])[0], targets["age"]
    utk = np.isfinite(truth)
    bands = {band: utk & (truth >= low) & (truth < high) for band, (low, high) in AGE_BANDS.items()}
    errors = np.abs(years - truth)
    report = {
        "gender": gender,
        "gender_ece": round(binary_ece(outputs["male"], male), 4),
        "age_mae": round(float(errors[utk].mean()), 3) if utk.any() else None,
        "age_mae_by_band": {band: round(float(errors[rows].mean()), 3) if rows.any() else None for band, rows in bands.items()},
        "count": {"celeba_hq": int((targets["source"] == 0).sum()), "utkface": int(utk.sum())},
    }
    if temperature is not None:
        report["gender_ece_calibrated"] = round(binary_ece(outputs["male"], male, temperature), 4)
    return report


class GenderAgeTrainer(Trainer):
    """Fine-tunes :class:`GenderAgeNet` (started from dlib's blocks) on the face set's training rows
    that have dlib features; ``val``'s UTKFace gender accuracy and age MAE are recorded each epoch."""

    name = "gender_age"

    def __init__(
        self,
        data: LabelledSet,
        stages: np.ndarray,
        descriptor_net: FaceDescriptorNet,
        settings: GenderAgeSettings,
        out: Path,
        device: torch.device,
    ) -> None:
        torch.manual_seed(settings.seed)
        self.data, self.stages = data, stages
        model = GenderAgeNet.from_descriptor_net(descriptor_net, GenderAgeConfig(from_block=settings.from_block)).to(device)
        decay = [p for p in model.parameters() if p.ndim > 1]
        rest = [p for p in model.parameters() if p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": settings.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=settings.lr
        )
        train_rows = known_rows(data, stages, "train")
        self.setup(model, optimizer, train_rows, settings, out, device, warmup_steps=max(1, len(train_rows) // settings.batch_size // 2))

    def step_loss(self, rows: np.ndarray, generator: torch.Generator):
        rows = np.sort(rows)
        side = torch.randint(0, 2, (len(rows),), generator=generator).numpy()  # the plain chip or its mirror image
        x = torch.from_numpy(np.asarray(self.stages[rows, side], np.float32)).to(self.device)
        outputs = self.net(x)
        targets = {k: torch.from_numpy(self.data.targets[k][rows]).to(self.device) for k in ("attributes", "age", "source")}
        male = ATTRIBUTES.index("Male")
        loss = face_loss(
            {"attributes": outputs["male"][:, None], "age": outputs["age"]},
            {**targets, "attributes": targets["attributes"][:, male : male + 1]},
            self.settings.age_sigma,
            balance_sources=True,
            age_weight=self.settings.age_weight,
        )
        return loss, {}

    def part(self, part: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(outputs, targets) on one part's rows that have dlib features."""
        rows = known_rows(self.data, self.stages, part)
        return gender_age_outputs(self.model, self.stages, rows, self.device), {k: v[rows] for k, v in self.data.targets.items()}

    def evaluate(self) -> dict:
        report = gender_age_metrics(*self.part("val"))
        gender = report["gender"]
        return {"val_gender_utkface": gender["utkface"], "val_gender_celeba_hq": gender["celeba_hq"], "val_age_mae": report["age_mae"]}

    def export_meta(self) -> dict:
        outputs, targets = self.part("val")
        male = targets["attributes"][:, ATTRIBUTES.index("Male")]
        return {
            "task": "gender_age",
            "data": self.data.notes,
            "temperatures": {"male": round(fit_temperature(outputs["male"], male), 4)},
        }
