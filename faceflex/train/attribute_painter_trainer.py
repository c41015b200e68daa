"""Training the attribute painter (the anonymizer's trainer with one region as the hole).

Each CelebA-HQ training face (ids 1-28000) has one region taken out, drawn at random per face from
:data:`~faceflex.inference.attribute_painting.PAINT_REGIONS` (eyes, mouth, upper lip), and is
painted from its surroundings, its landmarks drawn as lines and a code: its own dlib descriptor
(standardised; replaced by the mean code for a ``code_dropout`` share) followed by its CelebA labels
of the classifier's attributes (-1 / +1).

Painted back with its own code, a face is compared with itself (the anonymizer's losses: L1 in the
hole, SSIM and Laplacian pyramid of the composite, the patch critic). But the descriptor and the
surroundings already tell whether a face wore glasses, so a network trained on that alone ignores
the attribute part of the code (measured: after one such epoch, glasses asked for appeared on 0 %
of held-out faces). So for an ``edit_share`` of the faces the region's attribute (eyes: Eyeglasses,
upper lip: Mustache, mouth: Wearing_Lipstick; Smiling is drawn by the landmarks) is flipped in the
code: there is no true picture of that face, so the reconstruction terms leave its hole alone and a
frozen attribute classifier (the ``judge``) must read the flipped value on the composite (binary
cross-entropy, ``attribute_weight``), while the critic keeps it looking like a real face.
A warm start (``--init data/anonymizer.pt``) copies the anonymizer and starts the attribute part of
the code at zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceflex.inference.attribute_painting import PAINT_REGIONS, PAINTED, AttributePainter
from faceflex.inference.unmasking import composite
from faceflex.io.images import save_image
from faceflex.models.labels import ATTRIBUTES
from faceflex.train.adversarial import AdversarialTerm
from faceflex.train.anonymizer_trainer import CODE_SIZE as IDENTITY_SIZE
from faceflex.train.anonymizer_trainer import AnonymizerSettings, AnonymizerTrainer, painting_batch
from faceflex.train.cache import CachedFaces
from faceflex.train.unmask_trainer import composite_loss, region_l1

CODE_SIZE = IDENTITY_SIZE + len(ATTRIBUTES)  # the descriptor, then the attributes
FLIPPED = {"eyes": "Eyeglasses", "upper-lip": "Mustache", "mouth": "Wearing_Lipstick"}  # the attribute flipped per region


@dataclass(frozen=True)
class PainterSettings(AnonymizerSettings):
    """The ``train_paint`` section of the config: the anonymizer's settings, and the edits."""

    epochs: int = 4
    adversarial_start: int = 0
    edit_share: float = 0.5  # faces whose region's attribute is flipped in the code
    attribute_weight: float = 0.3  # the judge's binary cross-entropy on those
    judge: str | None = None  # attribute classifier weights (None: the shipped one)
    judge_coarse: int = 1  # > 1: the judge reads the composite at 1/k of its input size (upsampled), blind to fine patterns
    conditional_critic: bool = False  # the critic judges real-for-these-attributes (projection), shown the true labels of real faces


class AttributePainterTrainer(AnonymizerTrainer):
    """Trains the attribute painter to paint a region of each training face back from its surroundings,
    landmarks, descriptor and attribute labels (``settings``: the anonymizer's; UTKFace has no such labels)."""

    name = "attribute_painter"  # the exported weights: attribute_painter.pt

    settings_class = PainterSettings

    def __init__(self, cache: CachedFaces, cache_dir: Path, config, settings: PainterSettings, out: Path, device, init=None):
        if settings.utkface:
            raise ValueError("the attribute painter trains on CelebA-HQ's attribute labels; UTKFace has none (leave utkface unset)")
        if config.code_size != CODE_SIZE:
            raise ValueError(f"the attribute painter's code has {CODE_SIZE} values (descriptor + {len(ATTRIBUTES)} attributes)")
        super().__init__(cache, cache_dir, config, settings, out, device, init)
        columns = [cache.attribute_names.index(name) for name in ATTRIBUTES]
        self.labels = np.asarray(cache.attributes[:, columns], np.float32).clip(-1, 1)
        self.labels[self.labels == 0] = -1.0  # a cache with 0/1 labels
        self.codes = np.concatenate([self.codes, self.labels], axis=1)
        from faceflex.inference.classifiers import load_task_model

        self.judge = None
        if settings.attribute_weight:
            self.judge = load_task_model("attributes", settings.judge, device)[0].eval().requires_grad_(False)
        if settings.conditional_critic and settings.adversarial_weight:
            self.adversarial = AdversarialTerm(settings.adversarial_weight, settings.critic_lr, device, condition_size=len(ATTRIBUTES))

    def export_meta(self) -> dict:
        return {**super().export_meta(), "attributes": list(ATTRIBUTES), "regions": list(PAINT_REGIONS)}

    def batch(self, rows: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
        """(inputs, true faces, codes, edited): each face with a random region as the hole and its own
        code (the identity part replaced by the mean for a ``code_dropout`` share; the attributes
        always given), and for an ``edit_share`` of the faces the region's attribute flipped in the
        code; ``edited`` (N,) is the flipped attribute's index in ATTRIBUTES, or -1."""
        s = self.settings
        flips = (torch.rand(len(rows), generator=generator) < 0.5).numpy() if s.flip else None
        regions = [PAINT_REGIONS[i] for i in torch.randint(len(PAINT_REGIONS), (len(rows),), generator=generator).tolist()]
        inputs, truth = painting_batch(self.pool, rows, flips, regions)
        codes = torch.from_numpy(self.codes[rows])
        if s.code_dropout:
            keep = (torch.rand(len(rows), 1, generator=generator) >= s.code_dropout).float()
            codes = torch.cat([codes[:, :IDENTITY_SIZE] * keep, codes[:, IDENTITY_SIZE:]], dim=1)
        chosen = (torch.rand(len(rows), generator=generator) < s.edit_share).numpy()
        edited = np.array([ATTRIBUTES.index(FLIPPED[r]) if c else -1 for r, c in zip(regions, chosen)])
        for i in np.flatnonzero(edited >= 0):
            codes[i, IDENTITY_SIZE + edited[i]] *= -1
        return inputs, truth, codes, edited

    def step_loss(self, rows: np.ndarray, generator: torch.Generator):
        s = self.settings
        inputs, truth, codes, edited = self.batch(rows, generator)
        inputs, truth = (t.to(self.device).contiguous(memory_format=torch.channels_last) for t in (inputs, truth))
        _, painted = self.net(inputs, codes.to(self.device))
        painted = painted.float()
        hole = inputs[:, 3:4]
        logged: dict = {}
        loss = torch.zeros((), device=self.device)
        which = torch.from_numpy(edited >= 0).to(self.device)
        real = truth
        if which.any():  # no true picture: the reconstruction terms see the painted hole itself
            result = composite(inputs[:, :3], painted, hole)
            truth = torch.where(which[:, None, None, None], composite(truth, result.detach(), hole), truth)
        if which.any() and self.judge is not None:  # the judge reads the flipped attribute
            size = self.judge.config.image_size
            seen = F.avg_pool2d(result[which], result.shape[-1] // size)
            if s.judge_coarse > 1:  # fine patterns that fool a classifier are averaged away; glasses frames and moustaches are not
                seen = F.interpolate(F.avg_pool2d(seen, s.judge_coarse), size=size, mode="bilinear", align_corners=False)
            logits = self.judge(seen)["attributes"].float()
            faces, columns = torch.from_numpy(np.flatnonzero(edited >= 0)), torch.from_numpy(edited[edited >= 0])
            wanted = (codes[faces, IDENTITY_SIZE + columns] > 0).float().to(self.device)
            judged = F.binary_cross_entropy_with_logits(logits.gather(1, columns[:, None].to(self.device))[:, 0], wanted)
            loss, logged["judge"] = loss + s.attribute_weight * judged, judged
        l1 = region_l1(painted, truth, hole, s.l1_lowpass)
        logged["l1"] = l1
        conditions = None
        if s.conditional_critic:  # fakes with the attributes their code asked for, reals with their true labels
            conditions = (codes[:, IDENTITY_SIZE:].to(self.device), torch.from_numpy(self.labels[rows]).to(self.device))
        return composite_loss(self, loss + s.l1_weight * l1, logged, inputs[:, :3], painted, hole, truth, real, conditions), logged

    def painter(self) -> AttributePainter:
        return AttributePainter(self.model, self.prior, self.device, {"attributes": list(ATTRIBUTES)})

    def edited(self, rows: np.ndarray, attribute: str, value: float) -> np.ndarray:
        """Held-out faces ``rows`` with ``attribute``'s region repainted and its code set to ``value``."""
        codes = self.codes[rows].copy()
        codes[:, IDENTITY_SIZE + ATTRIBUTES.index(attribute)] = value
        faces = np.asarray(self.cache.faces[rows])
        return self.painter().paint(faces, self.cache.landmarks[rows], PAINTED[attribute], codes)[0]

    def evaluate(self) -> dict:
        """On the first 256 held-out faces: L1 of each region painted back with the face's own code,
        and per painted attribute the share of faces without it (CelebA label) that the shipped
        attribute classifier reads as having it after the painter adds it (and the reverse)."""
        from faceflex.face.crops import attribute_input
        from faceflex.inference.classifiers import load_classifiers, sigmoid
        from faceflex.models.classifier_nets import predict

        self.model.eval()
        rows = self.test_rows[:256]
        faces = np.asarray(self.cache.faces[rows]).astype(np.float32)
        figures: dict = {}
        painter = self.painter()
        for region in PAINT_REGIONS:
            painted, holes = painter.paint(np.asarray(self.cache.faces[rows]), self.cache.landmarks[rows], region, self.codes[rows])
            error = np.abs(painted.astype(np.float32) - faces).sum(axis=3) / 3
            figures[f"held_out_l1_{region}"] = round(float((error * holes).sum() / holes.sum() / 255), 4)
        models = load_classifiers("cpu")
        for attribute in PAINTED:
            column = ATTRIBUTES.index(attribute)
            for value, name in ((1.0, "added"), (-1.0, "removed")):
                chosen = rows[self.labels[rows, column] == -value]
                if len(chosen) < 5:
                    continue
                logits = predict(models.models["attributes"], attribute_input(self.edited(chosen, attribute, value)), models.device)
                has = sigmoid(logits["attributes"][:, column]) >= 0.5
                figures[f"held_out_{attribute}_{name}"] = round(float(has.mean() if value > 0 else 1 - has.mean()), 4)
        return figures

    @torch.no_grad()
    def save_grid(self, path: Path) -> Path:
        """PNG rows: 8 held-out faces; their eyes painted back with their own code; with glasses, a
        moustache, a smile and lipstick asked for (each in its region, landmarks as they are)."""
        self.model.eval()
        rows = self.test_rows[:8]
        faces = np.asarray(self.cache.faces[rows])
        own = self.painter().paint(faces, self.cache.landmarks[rows], "eyes", self.codes[rows])[0]
        strips = [faces, own] + [self.edited(rows, attribute, 1.0) for attribute in PAINTED]
        grid = np.concatenate([np.concatenate(list(strip), axis=1) for strip in strips], axis=0)
        return save_image(grid, path)
