"""Training one of the attribute painter's targets (the anonymizer's trainer with one region as the hole).

A target is an attribute and a direction: ``add`` (paint glasses over the eyes, a moustache on the
upper lip, lipstick or a smile's teeth on the mouth) or ``remove``. Its painter learns only from
CelebA-HQ training faces (ids 1-28000) that show the outcome: to add glasses, faces that wear them;
to remove them, faces without (for an attribute nearly always of one sex, such as a moustache or
lipstick, faces of that sex). Each face has the attribute's region taken out
(:func:`faceflex.face.sketch.region_hole`) and is painted back from its surroundings and its landmarks
drawn as lines (the anonymizer's losses: L1 in the hole, SSIM and
Laplacian pyramid of the composite, the patch critic). A network that has only ever painted eyes
behind glasses paints glasses on whoever it is given: the outcome is forced by what it learned
from, not asked of it through a code it could ignore (measured: a single painter given the
attribute as a code input ignored it, and one pushed by a classifier fooled it with patterns;
docs/EDIT.md). The identity code stays at the mean (zeros): dlib's descriptor tells whether a face
wears glasses (a linear read-out: 81 % balanced accuracy; a moustache 88 %), and the anonymizer's
code layers learned to paint what it tells, so given a person's own descriptor a target painted
the person as they were (measured: glasses added to 10 % of faces after 15 epochs). The region is
painted from the face around it and its landmarks alone.

The network starts from the anonymizer (``--init data/anonymizer.pt``), whose encoder and bottleneck
stay frozen (weights and batch statistics): only the code layers (FiLM) and the decoder learn, so
every target shares one encoder and the shipped file stores it once
(:func:`faceflex.inference.attribute_painting.pack_targets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.inference.attribute_painting import HOLES, PAINTED, SHARED_PREFIXES, AttributePainter, target_name, target_records
from faceflex.io.images import save_image
from faceflex.train.anonymizer_trainer import AnonymizerSettings, AnonymizerTrainer, painting_batch
from faceflex.train.cache import CachedFaces

ONE_SEX = 0.9  # an attribute this share of whose training faces are of one sex is removed by painting faces of that sex


@dataclass(frozen=True)
class PainterSettings(AnonymizerSettings):
    """The ``train_paint`` section of the config: the anonymizer's settings, and the target."""

    epochs: int = 10
    adversarial_start: int = 0
    attribute: str = "Eyeglasses"  # one of PAINTED
    direction: str = "add"  # add: learn from faces that have it; remove: from faces that lack it
    max_faces: int = 4000  # a seeded sample of at most this many training faces (0: all)
    init_target: str | None = None  # --init a packed painter: the target whose decoder the new one starts from (None: its first)


def target_rows(cache: CachedFaces, rows: np.ndarray, attribute: str, direction: str, max_faces: int, seed: int) -> np.ndarray:
    """The training rows that show ``direction`` of ``attribute`` (CelebA labels): faces with it to
    add it, faces without it to remove it, of one sex when >= ONE_SEX of the faces the target
    changes are (a moustache is taken off men: painted from men without one; No_Beard is added,
    a beard shaved, on men: painted from beardless men); a seeded sample of ``max_faces`` (0: all), sorted."""
    labels = np.asarray(cache.attributes[rows])
    has = labels[:, cache.attribute_names.index(attribute)] > 0
    chosen = has if direction == "add" else ~has
    if attribute != "Male":
        male = labels[:, cache.attribute_names.index("Male")] > 0
        changed = ~chosen
        share = male[changed].mean() if changed.any() else 0.5
        if share >= ONE_SEX or share <= 1 - ONE_SEX:
            chosen &= male == (share >= ONE_SEX)
    picked = rows[chosen]
    if max_faces and len(picked) > max_faces:
        picked = np.random.default_rng(seed).choice(picked, max_faces, replace=False)
    return np.sort(picked)


class AttributePainterTrainer(AnonymizerTrainer):
    """Trains one target of the attribute painter (``settings.attribute``, ``settings.direction``)
    from the anonymizer: the region painted back on faces that show the target's outcome."""

    name = "attribute_painter"  # the exported weights: attribute_painter.pt (one target; pack them to ship)
    settings_class = PainterSettings
    uses_identity = False  # the code stays at the mean identity (no descriptors needed)

    def __init__(self, cache: CachedFaces, cache_dir: Path, config, settings: PainterSettings, out: Path, device, init=None):
        if settings.attribute not in PAINTED:
            raise ValueError(f"the attribute painter paints {', '.join(PAINTED)}, not {settings.attribute!r}")
        if settings.direction not in ("add", "remove"):
            raise ValueError(f"direction must be add or remove, not {settings.direction!r}")
        if settings.utkface:
            raise ValueError("the attribute painter trains on CelebA-HQ's attribute labels; UTKFace has none (leave utkface unset)")
        if settings.refit_points:
            raise ValueError("the attribute painter draws its regions with the cached landmarks (leave refit_points at 0)")
        self.holes = HOLES[settings.attribute]
        super().__init__(cache, cache_dir, config, settings, out, device, init)
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(not name.startswith(SHARED_PREFIXES))

    def warm_start_state(self, init: str, settings: PainterSettings) -> tuple[dict, dict]:
        """The anonymizer's weights, or a painter's: a target's, or, from a packed painter, its shared encoder
        with the decoder of ``settings.init_target`` (so that a new target shares the shipped targets'
        encoder and packs with them)."""
        from faceflex.models.weights import WeightsError

        try:
            records = {target: (state, meta) for target, state, _, meta in target_records(init)}
        except WeightsError:  # no painter: the anonymizer
            return super().warm_start_state(init, settings)
        chosen = settings.init_target or next(iter(records))
        if chosen not in records:
            raise ValueError(f"{init} has no target {chosen!r} (it has {', '.join(records)})")
        return records[chosen]

    def training_rows(self, rows: np.ndarray, settings: PainterSettings) -> np.ndarray:
        """The training faces that show the target's outcome (:func:`target_rows`)."""
        s = settings
        return target_rows(self.cache, rows, s.attribute, s.direction, s.max_faces, s.seed)

    def frozen_modules(self) -> list[torch.nn.Module]:
        return [self.model.down, self.model.bottleneck]

    def export_meta(self) -> dict:
        s = self.settings
        return {**super().export_meta(), "target": target_name(s.attribute, s.direction), "holes": list(self.holes)}

    def batch(self, rows: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray | None]:
        """(inputs, true faces, codes, which faces are mirrored): each face with one of the target's
        holes (drawn per face), and the mean identity code."""
        flips = (torch.rand(len(rows), generator=generator) < 0.5).numpy() if self.settings.flip else None
        holes = [self.holes[i] for i in torch.randint(len(self.holes), (len(rows),), generator=generator).tolist()]
        inputs, truth = painting_batch(self.pool, rows, flips, holes)
        return inputs, truth, torch.zeros(len(rows), self.model.config.code_size), flips

    def painter(self) -> AttributePainter:
        s = self.settings
        return AttributePainter({target_name(s.attribute, s.direction): self.model}, self.prior, self.device)

    def repainted(self, rows: np.ndarray) -> np.ndarray:
        """Held-out faces ``rows`` with the target's region repainted."""
        s = self.settings
        return self.painter().paint(np.asarray(self.cache.faces[rows]), self.cache.landmarks[rows], s.attribute, s.direction)[0]

    def held_out_rows(self) -> np.ndarray:
        """The first 256 held-out faces whose CelebA label lacks the target's outcome (the faces it should change)."""
        s = self.settings
        column = self.cache.attribute_names.index(s.attribute)
        has = np.asarray(self.cache.attributes[self.test_rows[:256], column]) > 0
        return self.test_rows[:256][~has if s.direction == "add" else has]

    def evaluate(self) -> dict:
        """On the first 256 held-out faces that the target should change: the share the shipped
        attribute classifier reads with the outcome after painting, and the share still the same
        person (dlib descriptor distance < 0.6); L1 of the region painted back on faces already showing it."""
        from faceflex.face.crops import attribute_input
        from faceflex.face.identity import SAME_PERSON
        from faceflex.inference.classifiers import load_classifiers, sigmoid
        from faceflex.models.classifier_nets import predict
        from faceflex.models.labels import ATTRIBUTES

        self.model.eval()
        s = self.settings
        rows = self.held_out_rows()
        painted = self.repainted(rows)
        models = load_classifiers("cpu")
        logits = predict(models.models["attributes"], attribute_input(painted), models.device)
        has = sigmoid(logits["attributes"][:, ATTRIBUTES.index(s.attribute)]) >= 0.5
        from faceflex.face.identity import face_descriptors

        landmarks = [self.cache.landmarks[r] for r in rows[:64]]
        descriptors = face_descriptors(list(painted[:64]) + [np.asarray(self.cache.faces[r]) for r in rows[:64]], landmarks * 2)
        distances = np.linalg.norm(descriptors[: len(landmarks)] - descriptors[len(landmarks) :], axis=1)
        shown = np.setdiff1d(self.test_rows[:256], rows)[:64]
        truth = np.asarray(self.cache.faces[shown]).astype(np.float32)
        back, holes = self.painter().paint(truth.astype(np.uint8), self.cache.landmarks[shown], s.attribute, s.direction)
        error = np.abs(back.astype(np.float32) - truth).sum(axis=3) / 3
        return {
            "held_out_success": round(float(has.mean() if s.direction == "add" else 1 - has.mean()), 4),
            "held_out_identity_kept": round(float(np.mean(np.asarray(distances) < SAME_PERSON)), 4),
            "held_out_l1": round(float((error * holes).sum() / holes.sum() / 255), 4),
        }

    @torch.no_grad()
    def save_grid(self, path: Path) -> Path:
        """PNG rows: 8 held-out faces the target should change, and the same faces painted."""
        self.model.eval()
        rows = self.held_out_rows()[:8]
        grid = np.concatenate([np.concatenate(list(strip), axis=1) for strip in (np.asarray(self.cache.faces[rows]), self.repainted(rows))])
        return save_image(grid, path)
