"""Training and measuring the classifiers (mini-Xception or VGG-style) (on the shared :class:`~faceflex.train.trainer.Trainer`).

Tasks (``TASKS``): ``attributes`` (CelebA-HQ, 10 binary attributes, one multi-label head),
``expression`` (FER2013, 7 classes), ``age`` (UTKFace, age regression in decades + gender) and
``face`` (both sets at once: the 10 attributes, Male learnt from CelebA-HQ and UTKFace alike, and
age as a distribution over whole years, trained by label-distribution learning: cross-entropy to a
Gaussian around the true age plus the L1 error of the expected age).
Each exported weight file carries per-head temperatures fitted on the validation part
(:mod:`faceflex.evaluation.calibration`).
CPU with native bfloat16: channels_last + bf16 autocast; other CPUs: fp32 in the default layout
(torch 2.13 segfaults in the fp32 channels_last backward of the first 1x1 stride-2 shortcut);
CUDA: channels_last + fp16 autocast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceflex.evaluation.calibration import binary_ece, fit_temperature, softmax_ece
from faceflex.models.classifier_nets import ClassifierConfig, ClassifierNet, build_classifier, predict, to_tensor
from faceflex.models.labels import AGE_BANDS, AGE_MAX, AGE_UNIT, ATTRIBUTES, EXPRESSIONS, GENDERS, UTK_RACES, expected_age
from faceflex.train.face_sets import LabelledSet
from faceflex.train.trainer import Trainer, mixed_precision


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
    "face": TaskSpec("face", {"attributes": len(ATTRIBUTES), "age": AGE_MAX + 1}, 3, 64, "summary"),
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
    age_sigma: float = 3.0  # face task: width (years) of the Gaussian label distribution around the true age
    arch: str = "mini_xception"  # or "vgg" (faceflex.models.classifier_nets)
    convs: int = 2  # vgg: 3x3 convolutions per stage
    flip_average: bool = False  # eval-mode outputs averaged with the mirror image's (stored in the weights)
    class_weights: str = "none"  # expression: cross-entropy weights none | sqrt | balanced (from training-part shares)
    age_weight: float = 1.0  # face task: weight of the age terms against the attribute terms
    balance_sources: bool = False  # face task: Male's loss is the mean of each source's mean (UTKFace as heavy as CelebA-HQ)
    erase: float = 0.0  # augmentation: chance of blanking a random rectangle (up to a third of the side) per image
    descriptor_weight: float = 0.0  # face task: weight of an extra head regressing dlib's face descriptor (training only)
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
    x = ((x - mean) * contrast + mean * brightness).clamp(0, 1)
    if settings.erase > 0:
        x = erase_rectangles(x, settings.erase, generator)
    return x


def erase_rectangles(x: torch.Tensor, chance: float, generator: torch.Generator) -> torch.Tensor:
    """Random erasing: with probability ``chance`` per image, a rectangle of 1/8 to 1/3 of each side
    (placed uniformly) is set to the image's mean -- occluders such as hands and hair (seeded)."""
    n, _, h, w = x.shape
    hit = torch.rand(n, generator=generator) < chance
    sizes = torch.rand(n, 2, generator=generator) * (1 / 3 - 1 / 8) + 1 / 8
    corners = torch.rand(n, 2, generator=generator)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    top = (corners[:, 0] * h * (1 - sizes[:, 0])).view(n, 1, 1)
    left = (corners[:, 1] * w * (1 - sizes[:, 1])).view(n, 1, 1)
    inside = (rows >= top) & (rows < top + sizes[:, 0].view(n, 1, 1) * h) & (cols >= left) & (cols < left + sizes[:, 1].view(n, 1, 1) * w)
    inside = (inside & hit.view(n, 1, 1)).unsqueeze(1).to(x.device)
    return torch.where(inside, x.mean(dim=(1, 2, 3), keepdim=True), x)


def class_weights(labels: np.ndarray, classes: int, weighting: str) -> torch.Tensor | None:
    """Cross-entropy class weights from the classes' shares of ``labels``: ``sqrt`` 1/sqrt(share),
    ``balanced`` 1/share, scaled to a mean of 1 over the samples; ``none``: None."""
    if weighting == "none":
        return None
    share = np.bincount(labels, minlength=classes).astype(np.float64) / max(1, len(labels))
    weights = 1.0 / np.sqrt(np.maximum(share, 1e-6)) if weighting == "sqrt" else 1.0 / np.maximum(share, 1e-6)
    weights /= float((share * weights).sum())
    return torch.tensor(weights, dtype=torch.float32)


def face_loss(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    sigma: float,
    balance_sources: bool = False,
    age_weight: float = 1.0,
    descriptor_weight: float = 0.0,
) -> torch.Tensor:
    """The face task's loss: per attribute, binary cross-entropy over the rows that know it, averaged
    over the attributes; with ``balance_sources`` an attribute two sources know (Male) takes the mean
    of each source's mean, so UTKFace's faces weigh in gender as much as CelebA-HQ's more numerous
    ones. For the rows with an age, ``age_weight`` x (cross-entropy to a Gaussian (``sigma`` years)
    over whole years + L1 of the expected age in decades). With ``descriptor_weight``, plus that
    times the mean squared error of the ``descriptor`` head against the standardised dlib
    descriptor, over the rows that have one (feature distillation)."""
    logits, labels = outputs["attributes"].float(), targets["attributes"]
    known = torch.isfinite(labels)
    per_label = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(labels), reduction="none") * known
    if balance_sources:
        column_losses = []
        for sources in (targets["source"] == value for value in torch.unique(targets["source"])):
            rows = known & sources[:, None]
            column_losses.append(torch.where(rows.any(0), per_label.mul(rows).sum(0) / rows.sum(0).clamp(min=1), torch.nan))
        per_column = torch.stack(column_losses).nanmean(0)
        loss = per_column[torch.isfinite(per_column)].mean()
    else:
        columns = known.any(dim=0)
        loss = (per_label.sum(dim=0)[columns] / known.sum(dim=0)[columns]).mean()
    years = targets["age"]
    has_age = torch.isfinite(years)
    if has_age.any():
        log_p = F.log_softmax(outputs["age"].float()[has_age], dim=1)
        grid = torch.arange(log_p.shape[1], device=log_p.device, dtype=torch.float32)
        truth = years[has_age].clamp(0, log_p.shape[1] - 1)
        target = torch.softmax(-0.5 * ((grid[None] - truth[:, None]) / sigma) ** 2, dim=1)
        expected = (log_p.exp() * grid).sum(dim=1)
        loss = loss + age_weight * (-(target * log_p).sum(dim=1).mean() + (expected - truth).abs().mean() / AGE_UNIT)
    if descriptor_weight:
        has_descriptor = torch.isfinite(targets["descriptor"]).all(dim=1)
        if has_descriptor.any():
            error = outputs["descriptor"].float()[has_descriptor] - targets["descriptor"][has_descriptor]
            loss = loss + descriptor_weight * error.square().mean()
    return loss


def task_loss(
    spec: TaskSpec,
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    settings: ClassifierSettings,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of one batch (``weights``: the expression classes' cross-entropy weights)."""
    if spec.name == "face":
        return face_loss(outputs, targets, settings.age_sigma, settings.balance_sources, settings.age_weight, settings.descriptor_weight)
    if spec.name == "attributes":
        return F.binary_cross_entropy_with_logits(outputs["attributes"].float(), targets["attributes"])
    if spec.name == "expression":
        return F.cross_entropy(
            outputs["expression"].float(), targets["expression"], weight=weights, label_smoothing=settings.label_smoothing
        )
    age = F.smooth_l1_loss(outputs["age"].float().squeeze(1), targets["age"] / AGE_UNIT)
    return age + F.cross_entropy(outputs["gender"].float(), targets["gender"])


def _share(correct: np.ndarray) -> float | None:
    return round(float(np.mean(correct)), 4) if len(correct) else None


def gender_accuracy(correct: np.ndarray, targets: dict[str, np.ndarray]) -> dict:
    """Shares of ``correct`` gender readings of face-set rows: per source, and on UTKFace per age
    band and race group."""
    celeba, utk, truth = targets["source"] == 0, targets["source"] == 1, targets["age"]
    bands = {band: utk & (truth >= low) & (truth < high) for band, (low, high) in AGE_BANDS.items()}
    return {
        "celeba_hq": _share(correct[celeba]),
        "utkface": _share(correct[utk]),
        "utkface_by_age": {band: _share(correct[rows]) for band, rows in bands.items()},
        "utkface_by_race": {race: _share(correct[utk & (targets["race"] == code)]) for code, race in enumerate(UTK_RACES)},
    }


def face_metrics(outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> dict:
    """The face task's figures: CelebA-HQ accuracy per attribute; gender accuracy on each source, and
    on UTKFace per age band and race group; UTKFace age MAE overall and per band."""
    logits, labels, source = outputs["attributes"], targets["attributes"], targets["source"]
    celeba, utk = source == 0, source == 1
    per = {}
    for i, name in enumerate(ATTRIBUTES):
        known = celeba & np.isfinite(labels[:, i])
        per[name] = _share((logits[known, i] > 0) == (labels[known, i] > 0.5))
    male = ATTRIBUTES.index("Male")
    years, truth = expected_age(outputs["age"]), targets["age"]
    errors = np.abs(years - truth)
    bands = {band: utk & (truth >= low) & (truth < high) for band, (low, high) in AGE_BANDS.items()}
    gender = gender_accuracy((logits[:, male] > 0) == (labels[:, male] > 0.5), targets)
    age_mae = round(float(errors[utk].mean()), 3) if utk.any() else None
    mean_accuracy = round(float(np.mean([v for v in per.values() if v is not None])), 4) if celeba.any() else None
    return {
        "summary": {"celeba_mean_accuracy": mean_accuracy, "gender_utkface": gender["utkface"], "age_mae": age_mae},
        "celeba_hq_accuracy": per,
        "gender": gender,
        "age_mae": age_mae,
        "age_mae_by_band": {band: round(float(errors[rows].mean()), 3) if rows.any() else None for band, rows in bands.items()},
        "count": {"celeba_hq": int(celeba.sum()), "utkface": int(utk.sum()), "utkface_by_age": {b: int(r.sum()) for b, r in bands.items()}},
    }


def fit_temperatures(spec: TaskSpec, outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> dict:
    """Per-head temperatures (a list per attribute for the attribute heads) fitted on these outputs."""
    if spec.name in ("attributes", "face"):
        logits, labels = outputs["attributes"], targets["attributes"]
        known = np.isfinite(labels)
        return {"attributes": [round(fit_temperature(logits[known[:, i], i], labels[known[:, i], i]), 4) for i in range(len(ATTRIBUTES))]}
    if spec.name == "expression":
        return {"expression": round(fit_temperature(outputs["expression"], targets["expression"]), 4)}
    return {"gender": round(fit_temperature(outputs["gender"], targets["gender"]), 4)}


def calibration(spec: TaskSpec, outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray], temperatures: dict) -> dict:
    """Expected calibration error per head (per attribute) as trained and at ``temperatures``."""
    report = {}
    if "attributes" in temperatures:
        logits, labels = outputs["attributes"], targets["attributes"]
        for i, name in enumerate(ATTRIBUTES):
            known = np.isfinite(labels[:, i])
            t = temperatures["attributes"][i]
            report[name] = {
                "temperature": t,
                "ece": round(binary_ece(logits[known, i], labels[known, i]), 4),
                "ece_calibrated": round(binary_ece(logits[known, i], labels[known, i], t), 4),
            }
    for head in ("expression", "gender"):
        if head in temperatures:
            t = temperatures[head]
            before, after = softmax_ece(outputs[head], targets[head]), softmax_ece(outputs[head], targets[head], t)
            report[head] = {"temperature": t, "ece": round(before, 4), "ece_calibrated": round(after, 4)}
    return report


def metrics(spec: TaskSpec, outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> dict:
    """Held-out figures: per-attribute accuracy, class accuracy and confusion, age MAE, or the face task's."""
    if spec.name == "face":
        return face_metrics(outputs, targets)
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


def part_outputs(model: ClassifierNet, data: LabelledSet, part: str, device: torch.device) -> tuple[dict, dict]:
    """(raw outputs, targets) of ``model`` on one part (``train``, ``val`` or ``test``) of a labelled set."""
    rows = data.rows(part)
    return predict(model, data.images[rows], device), {k: v[rows] for k, v in data.targets.items()}


def evaluate_part(
    spec: TaskSpec, model: ClassifierNet, data: LabelledSet, part: str, device: torch.device, temperatures: dict | None = None
) -> dict:
    """Metrics of ``model`` on one part (``val`` or ``test``) of a labelled set [+ its calibration
    as trained and at ``temperatures``]."""
    outputs, targets = part_outputs(model, data, part, device)
    report = metrics(spec, outputs, targets)
    if temperatures:
        report["calibration"] = calibration(spec, outputs, targets, temperatures)
    return report


def reported_attributes_part(data: LabelledSet, part: str, device: torch.device) -> dict:
    """Accuracy and calibration (ECE) on one part of the CelebA-HQ set of the attributes as
    ``classify`` reports them: the shipped attribute and face models blended
    (:func:`faceflex.inference.classifiers.reported_attribute_logits`)."""
    from faceflex.inference.classifiers import load_classifiers, reported_attribute_logits

    models = load_classifiers(str(device))
    outputs, targets = part_outputs(models.models["attributes"], data, part, device)
    face_outputs, _ = part_outputs(models.models["face"], data, part, device)
    logits = reported_attribute_logits(outputs["attributes"], face_outputs["attributes"], models.face_temperatures)
    ece = {name: round(binary_ece(logits[:, i], targets["attributes"][:, i]), 4) for i, name in enumerate(ATTRIBUTES)}
    return {**metrics(TASKS["attributes"], {"attributes": logits}, targets), "ece": ece}


def reported_gender_part(data: LabelledSet, part: str, device: torch.device, stages: np.ndarray) -> dict:
    """Accuracy (per source, UTKFace age band and race group) and calibration (ECE) on one part of
    the face set of the gender as ``classify`` reports it (:func:`faceflex.inference.classifiers.male_probabilities`:
    the shipped gender-and-age network on dlib's features ``stages``, the face set's rows as
    :func:`faceflex.train.face_sets.face_set_dlib_stages` caches them; the face model's where there are none)."""
    from faceflex.inference.classifiers import load_classifiers, logit

    rows = data.rows(part)
    targets = {k: v[rows] for k, v in data.targets.items()}
    male = load_classifiers(str(device)).predict(data.images[rows], np.zeros((len(rows), 48, 48), np.uint8), stages[rows, 0]).male
    truth = targets["attributes"][:, ATTRIBUTES.index("Male")]
    known = np.isfinite(truth)
    logits = logit(male)
    return {**gender_accuracy((male > 0.5) == (truth > 0.5), targets), "ece": round(binary_ece(logits[known], truth[known]), 4)}


DESCRIPTOR_HEAD = "descriptor"  # the face task's training-only head (dlib's 128-d descriptor)


class ClassifierTrainer(Trainer):
    """Trains one task's classifier on its data's training part; ``val`` is measured each epoch.
    Training-only heads (the face task's ``descriptor``) are left out of the exported weights."""

    def __init__(self, spec: TaskSpec, data: LabelledSet, settings: ClassifierSettings, out: Path, device: torch.device):
        torch.manual_seed(settings.seed)
        self.spec, self.data, self.name = spec, data, spec.name
        heads = dict(spec.heads)
        if spec.name == "face" and settings.descriptor_weight:
            if DESCRIPTOR_HEAD not in data.targets:
                raise ValueError("descriptor_weight needs the face set's descriptor targets (task_set(..., descriptors=True))")
            heads[DESCRIPTOR_HEAD] = data.targets[DESCRIPTOR_HEAD].shape[1]
        config = ClassifierConfig(
            spec.in_channels,
            spec.image_size,
            settings.stem,
            tuple(settings.widths),
            heads,
            settings.dropout,
            settings.arch,
            settings.convs,
            settings.flip_average,
        )
        self.layout = torch.channels_last if mixed_precision(device) else torch.contiguous_format
        model = build_classifier(config).to(device).to(memory_format=self.layout)
        decay = [p for p in model.parameters() if p.ndim > 1]
        rest = [p for p in model.parameters() if p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": settings.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=settings.lr
        )
        train_rows = data.rows("train")
        self.class_weights = None
        if spec.name == "expression":
            self.class_weights = class_weights(data.targets["expression"][train_rows], len(EXPRESSIONS), settings.class_weights)
            if self.class_weights is not None:
                self.class_weights = self.class_weights.to(device)
        self.setup(model, optimizer, train_rows, settings, out, device, warmup_steps=max(1, len(train_rows) // settings.batch_size))

    def step_loss(self, rows: np.ndarray, generator: torch.Generator):
        rows = np.sort(rows)
        x = augment(to_tensor(self.data.images[rows], self.device), self.settings, generator).contiguous(memory_format=self.layout)
        targets = {k: torch.from_numpy(v[rows]).to(self.device) for k, v in self.data.targets.items()}
        return task_loss(self.spec, self.net(x), targets, self.settings, self.class_weights), {}

    def evaluate(self) -> dict:
        if not len(self.data.rows("val")):
            return {"val": None}
        return {"val": evaluate_part(self.spec, self.model, self.data, "val", self.device).get(self.spec.select_metric)}

    def shipped_model(self) -> ClassifierNet:
        """The trained network without its training-only heads."""
        extra = set(self.model.config.heads) - set(self.spec.heads)
        if not extra:
            return self.model
        shipped = build_classifier(replace(self.model.config, heads=dict(self.spec.heads))).to(self.device)
        shipped.load_state_dict(
            {k: v for k, v in self.model.state_dict().items() if not any(k.startswith(f"heads.{name}.") for name in extra)}
        )
        return shipped.eval()

    def export_meta(self) -> dict:
        meta = {"task": self.spec.name, "data": self.data.notes}
        if len(self.data.rows("val")):
            meta["temperatures"] = fit_temperatures(self.spec, *part_outputs(self.model, self.data, "val", self.device))
        return meta


def combine_members(
    spec: TaskSpec, members: list[tuple[ClassifierNet, dict]], data: LabelledSet, device: torch.device, flip_average: bool | None = None
) -> tuple:
    """An :class:`~faceflex.models.classifier_nets.Ensemble` of separately trained networks of one
    architecture (``(network, meta)`` pairs, e.g. two schedules or seeds), with temperatures fitted
    on the validation part for the averaged outputs; ``flip_average`` (None: as the members) also
    averages each member over the mirror image. Returns (ensemble, meta for its weight file)."""

    def computes(config: ClassifierConfig) -> ClassifierConfig:  # without what does not act at inference
        return replace(config, dropout=0.0, stem=0 if config.arch == "vgg" else config.stem)

    configs = [computes(network.config) for network, _ in members]
    if len(members) < 2 or any(c != configs[0] for c in configs):
        raise ValueError("an ensemble needs two or more weight files of the same architecture")
    config = replace(members[0][0].config, dropout=0.0, members=len(members))
    if flip_average is not None:
        config = replace(config, flip_average=flip_average)
    ensemble = build_classifier(config).to(device)
    for slot, (network, _) in zip(ensemble.members, members):
        slot.load_state_dict(network.state_dict())
    ensemble.eval()
    meta = {
        "task": spec.name,
        "members": [{key: m.get(key) for key in ("epochs", "settings", "history")} for _, m in members],
        "data": data.notes,
        "temperatures": fit_temperatures(spec, *part_outputs(ensemble, data, "val", device)),
    }
    return ensemble, meta
