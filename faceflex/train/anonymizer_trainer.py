"""Training the anonymizer (on the shared :class:`~faceflex.train.trainer.Trainer`).

Data: the CelebA-HQ training split of the aligned face cache [+ with ``utkface`` set, UTKFace's
training part: ages 1-110 and five race groups], each face with its 68 landmarks and dlib's face
descriptor (computed once per face and cached beside the face cache). The network gets
the anonymizer's input (:func:`~faceflex.face.sketch.anonymizer_input`: the face's surroundings with the face region taken
out, the hole, the landmarks drawn) and the face's own descriptor as its identity code
(standardised; replaced by the mean code for a ``code_dropout`` share, so the mean code paints a
plausible average face), and must paint the face back. At use the code is a random draw, so the
face painted is someone else with the same landmarks: the same expression and pose.

Loss per batch = l1_weight x L1 inside the hole (with ``l1_lowpass`` k > 1, of k x k block means)
[+ rim_weight x L1 over the hole's inner rim, ``rim_width`` px wide, pixel for pixel]
[+ chroma_weight x L1 of the painting's chroma in ``chroma_block``-px cell means over the hole]
+ ssim_weight x (1 - SSIM) + laplacian_weight x Laplacian-pyramid L1 of the composite (the input
with the painted face blended in through the hole) [+ the patch critic's adaptively weighted hinge
+ feature-matching term on the composite from ``adversarial_start`` on, as for the VAE and the
unmasking network] [+ identity_weight x the identity loss and perceptual_weight x the perceptual
loss of dlib's face recognition network on the composite (:mod:`faceflex.train.identity_loss`),
for the faces painted from their own code]. With ``drawn_codes`` > 0 that share of each batch is
painted from identities drawn from the prior, as at use, and held only by the rim, chroma and critic
terms (the L1, SSIM, pyramid and dlib terms count the faces painted from their own code).
[+ mouth_weight x L1 over the mouth region (:func:`mouth_regions`), pixel for pixel, for the faces
painted from their own code: the expression's most telling part held at full resolution where the
block-mean L1 leaves fine detail to the critic.] A warm
start (``--init``) can take an unmasking network's weights: the layers that match are copied (the
first convolution's RGB part included) and the new ones start so that the network begins as that
one was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.face.masks import region_mask
from faceflex.face.sketch import SKETCH_CHANNELS, painter_input, region_hole
from faceflex.inference.anonymizing import Anonymizer, CodeRating
from faceflex.inference.face_painting import IdentityPrior
from faceflex.io.images import save_image
from faceflex.models.face_unet import FaceUNet, FaceUNetConfig
from faceflex.train.adversarial import AdversarialTerm
from faceflex.train.cache import CachedFaces
from faceflex.train.identity_loss import IdentityLoss, chip_grid_of
from faceflex.train.trainer import Trainer
from faceflex.train.unmask_trainer import FacePool, PaintingLosses, composite_loss, region_l1

IN_CHANNELS = 3 + 1 + SKETCH_CHANNELS  # RGB with the hole, the hole, the landmark drawing
CODE_SIZE = 128  # dlib's descriptor
RATING_FACES, RATING_CODES = 16, 512  # the exported code rating is fitted on this many training faces x drawn codes (CodeRating.fit)


@dataclass(frozen=True)
class AnonymizerSettings(PaintingLosses):
    """The ``train_anonymize`` section of the config."""

    epochs: int = 8
    batch_size: int = 32
    lr: float = 5e-4
    flip: bool = True
    max_hours: float = 0.0
    adversarial_weight: float = 0.5
    adversarial_start: int = 1
    code_dropout: float = 0.1
    chip_jitter: float = 0.0  # > 0: dlib's chip moved at random for those terms (faceflex.train.identity_loss.jittered)
    drawn_codes: float = 0.0  # share of each batch painted from identities drawn from the prior (AnonymizerTrainer.with_drawn_codes)
    mouth_weight: float = 0.0  # L1 over the mouth region (lips and smile folds), pixel for pixel, faces painted from their own code
    refit_points: float = 0.0  # share of faces holed and drawn with dlib's points found on the 128-px crop itself (AnonymizerTrainer.batch)
    utkface: str | None = None
    seed: int = 0


def training_faces(
    cache: CachedFaces, cache_dir: Path, utkface: str | None, identity: bool = True
) -> tuple[FacePool, np.ndarray, np.ndarray]:
    """(pool of faces and landmarks, their descriptors (N, 128; NaN without ``identity``), the
    training rows): the cache's faces (held-out rows keep their numbers) [+ UTKFace's training part,
    the faces dlib found]."""
    from faceflex.train.face_sets import TRAIN, cached_face_descriptors, utk_faces, utk_split

    rows = cache.split("train")
    if not identity:
        return FacePool(cache.faces, cache.landmarks), np.full((len(cache.faces), CODE_SIZE), np.nan, np.float32), rows
    descriptors = cached_face_descriptors(cache.faces, cache.landmarks, cache_dir.parent / "celeba_hq_descriptors.npz")
    if not utkface:
        return FacePool(cache.faces, cache.landmarks), descriptors, rows
    faces, landmarks, _ = utk_faces(utkface, cache_dir.parent)
    utk_descriptors = cached_face_descriptors(faces, landmarks, cache_dir.parent / "utkface_descriptors.npz")
    usable = np.flatnonzero((utk_split(len(faces)) == TRAIN) & np.isfinite(landmarks).all(axis=(1, 2)))
    pool = FacePool(np.concatenate([np.asarray(cache.faces), faces[usable]]), np.concatenate([cache.landmarks, landmarks[usable]]))
    return pool, np.concatenate([descriptors, utk_descriptors[usable]]), np.concatenate([rows, len(cache.faces) + np.arange(len(usable))])


def _widens(key: str, target: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether ``value`` fills the first columns of ``target``: the first convolution or a code layer (FiLM), wider now."""
    first_or_code = key == "down.0.0.0.weight" or key.startswith("film.")
    return first_or_code and target.shape[0] == value.shape[0] and value.shape[1] < target.shape[1]


def warm_start(model: FaceUNet, state: dict) -> int:
    """Copy the tensors of ``state`` (another FaceUNet's) that fit ``model``; a first convolution with
    fewer input channels, or a code layer (FiLM) with a shorter code, fills the first ones and leaves
    the others at zero. Returns how many were copied."""
    own, copied = model.state_dict(), 0
    for key, value in state.items():
        value = value.float() if value.is_floating_point() else value
        if key not in own:
            continue
        target = own[key]
        if target.shape == value.shape:
            target.copy_(value)
        elif _widens(key, target, value):
            target.zero_()  # more input channels, or a longer code: the new ones start at zero
            target[:, : value.shape[1]] = value
        else:
            continue
        copied += 1
    return copied


def painting_batch(
    pool: FacePool,
    rows: np.ndarray,
    flips: np.ndarray | None = None,
    regions: list[str] | None = None,
    drawn_with: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (N, IN_CHANNELS, 128, 128), true faces (N, 3, 128, 128)) in [0, 1] for pool rows, the
    chosen ones mirrored (face and landmarks); the hole of row i is the region ``regions[i]``
    (default: the whole face, the anonymizer's). ``drawn_with`` (N, 68, 2): the landmarks face i is
    holed and drawn with instead of the pool's (NaN rows: the pool's)."""
    inputs, truth = [], []
    for i, row in enumerate(rows):
        face, landmarks = np.asarray(pool.faces[row]), np.asarray(pool.landmarks[row], np.float64)
        if drawn_with is not None and np.isfinite(drawn_with[i]).all():
            landmarks = np.asarray(drawn_with[i], np.float64)
        if flips is not None and flips[i]:
            face, landmarks = face[:, ::-1], np.column_stack([face.shape[1] - landmarks[:, 0], landmarks[:, 1]])
        face = np.ascontiguousarray(face)
        inputs.append(painter_input(face, region_hole(landmarks, "face" if regions is None else regions[i]), landmarks))
        truth.append(face.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(truth).astype(np.float32) / 255.0)


def mouth_regions(pool: FacePool, rows: np.ndarray, flips: np.ndarray | None = None) -> torch.Tensor:
    """(N, 1, 128, 128) float32 soft masks in [0, 1] of each face's mouth region (the lips and the
    smile folds beside them: :func:`~faceflex.face.masks.region_mask`), mirrored as :func:`painting_batch` mirrors."""
    masks = []
    for i, row in enumerate(rows):
        landmarks = np.asarray(pool.landmarks[row], np.float64)
        if flips is not None and flips[i]:
            landmarks = np.column_stack([pool.faces.shape[2] - landmarks[:, 0], landmarks[:, 1]])
        masks.append(region_mask(landmarks, "mouth"))
    return torch.from_numpy(np.stack(masks)[:, None].astype(np.float32))


class AnonymizerTrainer(Trainer):
    """Trains the anonymizer to paint each training face back from its surroundings, landmarks and descriptor."""

    name = "anonymizer"
    settings_class = AnonymizerSettings
    uses_identity = True  # trained on each face's own dlib descriptor (computed once and cached)

    def __init__(
        self,
        cache: CachedFaces,
        cache_dir: Path,
        config: FaceUNetConfig,
        settings: AnonymizerSettings,
        out: Path,
        device,
        init: str | None = None,
    ):
        torch.manual_seed(settings.seed)
        self.cache = cache
        self.pool, descriptors, train_rows = training_faces(cache, Path(cache_dir), settings.utkface, self.uses_identity)
        train_rows = train_rows[np.isfinite(self.pool.landmarks[train_rows]).all(axis=(1, 2))]
        model = FaceUNet(config)
        self.init_note, meta = None, {}
        if init:
            state, meta = self.warm_start_state(init, settings)
            copied = warm_start(model, state)
            self.init_note = f"warm start from {init}: {copied} of {len(model.state_dict())} tensors copied"
        if "identity_prior" in meta:  # a face painter's: its code layers were trained on these codes
            self.prior = IdentityPrior.from_dict(meta["identity_prior"])
        elif self.uses_identity:
            self.prior = IdentityPrior.fit(descriptors[train_rows])
        else:
            raise ValueError(f"{self.name} starts from an anonymizer (--init data/anonymizer.pt): its encoder and identity prior")
        self.descriptors = descriptors
        self.codes = self.prior.code(descriptors)
        self.refit_landmarks = None
        if settings.refit_points:
            from faceflex.train.face_sets import cached_refit_landmarks

            name = "anonymizer_pool_refit_landmarks.npz" if settings.utkface else "celeba_hq_refit_landmarks.npz"
            self.refit_landmarks = cached_refit_landmarks(self.pool.faces, self.pool.landmarks, Path(cache_dir).parent / name)
        train_rows = self.training_rows(train_rows, settings)
        model = model.to(device).to(memory_format=torch.channels_last)
        self.test_rows = cache.split("test")
        self.setup(model, torch.optim.Adam(model.parameters(), lr=settings.lr), train_rows, settings, out, device, warmup_steps=200)
        self.adversarial = AdversarialTerm(settings.adversarial_weight, settings.critic_lr, device) if settings.adversarial_weight else None
        self.identity_loss = IdentityLoss(device) if settings.identity_weight or settings.perceptual_weight else None

    def warm_start_state(self, init: str, settings: AnonymizerSettings) -> tuple[dict, dict]:
        """(state dict, meta) of the weight file ``init`` to start from."""
        from faceflex.models.weights import load_weights

        record = load_weights(init)
        return record["state_dict"], record.get("meta", {})

    def training_rows(self, rows: np.ndarray, settings: AnonymizerSettings) -> np.ndarray:
        """The rows trained on, from the training faces with landmarks (all of them here)."""
        return rows

    def checkpoint_extra(self) -> dict:
        return {"identity_prior": self.prior.to_dict()}  # a resumed run codes its faces as the run did, --init or not

    def export_meta(self) -> dict:
        """The prior `faceflex anonymize` draws codes from and, for the anonymizer, the rating it
        orders them by (:class:`CodeRating`, fitted now on :data:`RATING_FACES` training faces spread
        over the pool; a few minutes on a CPU)."""
        meta = self.checkpoint_extra()
        if self.uses_identity:
            rows = self.train_rows[np.linspace(0, len(self.train_rows) - 1, min(RATING_FACES, len(self.train_rows))).astype(int)]
            codes = self.prior.sample(np.random.default_rng(self.settings.seed), RATING_CODES)
            self.model.eval()
            landmarks = np.asarray(self.pool.landmarks[rows], np.float64)
            meta["code_rating"] = CodeRating.fit(self.anonymizer(), np.asarray(self.pool.faces[rows]), landmarks, codes).to_dict()
        return meta

    def restore_extra(self, state: dict) -> None:
        if "identity_prior" in state:
            self.prior = IdentityPrior.from_dict(state["identity_prior"])
            self.codes = self.prior.code(self.descriptors)

    def batch(self, rows: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray | None]:
        """(inputs, true faces, codes, which faces are mirrored) of a training batch: each face with
        its whole face region as the hole and its own identity code (the mean code for a
        ``code_dropout`` share). A ``refit_points`` share is holed and drawn with dlib's points found
        on the 128-px crop itself, as the held-out evaluation finds them and as small faces in photos
        give them (a tenth of them are off where the larger photo's are right: docs/ANONYMIZE.md);
        the losses still place the face by the cached points."""
        s = self.settings
        flips = (torch.rand(len(rows), generator=generator) < 0.5).numpy() if s.flip else None
        drawn_with = None
        if s.refit_points:  # the random stream of runs without them is left as it was
            refit = (torch.rand(len(rows), generator=generator) < s.refit_points).numpy()
            drawn_with = np.where(refit[:, None, None], self.refit_landmarks[rows], np.nan)
        inputs, truth = painting_batch(self.pool, rows, flips, drawn_with=drawn_with)
        codes = torch.from_numpy(self.codes[rows])
        if s.code_dropout:
            codes = codes * (torch.rand(len(rows), 1, generator=generator) >= s.code_dropout)
        return inputs, truth, codes, flips

    def with_drawn_codes(self, codes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, likeness (N,) float32): a ``drawn_codes`` share of a batch's codes replaced by codes
        drawn from the identity prior (as ``faceflex anonymize`` draws them), with likeness 0: those
        paintings are not the true face, so :func:`composite_loss` holds them only to what does not
        depend on who it is (the hole's rim, the coarse chroma, the critic). Without them the drawn
        codes are never trained on, and some paint green or yellow casts (docs/ANONYMIZE.md)."""
        if not self.settings.drawn_codes:  # the random stream of runs without them is left as it was
            return codes, torch.ones(len(codes))
        drawn = torch.rand(len(codes), generator=generator) < self.settings.drawn_codes
        if drawn.any():
            rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
            codes = codes.clone()
            codes[drawn] = torch.from_numpy(self.prior.sample(rng, int(drawn.sum())))
        return codes, (~drawn).float()

    def step_loss(self, rows: np.ndarray, generator: torch.Generator):
        s = self.settings
        inputs, truth, codes, flips = self.batch(rows, generator)
        codes, likeness = self.with_drawn_codes(codes, generator)
        inputs, truth = (t.to(self.device).contiguous(memory_format=torch.channels_last) for t in (inputs, truth))
        _, painted = self.net(inputs, codes.to(self.device))
        painted = painted.float()
        hole = inputs[:, 3:4]
        own = likeness.to(self.device)  # 1 for a face painted from its own code (chips below keep the CPU copy)
        l1 = region_l1(painted, truth, hole * own[:, None, None, None], s.l1_lowpass)
        logged, loss = {"l1": l1}, s.l1_weight * l1
        if s.mouth_weight:
            mouth = mouth_regions(self.pool, rows, flips).to(self.device) * own[:, None, None, None]
            logged["mouth"] = region_l1(painted, truth, mouth)
            loss = loss + s.mouth_weight * logged["mouth"]
        chips = None
        if self.identity_loss is not None:  # read as dlib reads faces; faces painted from the mean code are not anyone
            landmarks = np.asarray(self.pool.landmarks[rows], np.float64)
            rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator))) if s.chip_jitter else None
            chips = (chip_grid_of(landmarks, truth.shape[-2:], flips, rng, s.chip_jitter), (codes != 0).any(dim=1).float() * likeness)
        return composite_loss(self, loss, logged, inputs[:, :3], painted, hole, truth, chips, own), logged

    def anonymizer(self) -> Anonymizer:
        return Anonymizer(self.model, self.prior, self.device)

    def evaluate(self) -> dict:
        """The held-out figures of the network's own paintings (keep_tone off: their colour is what it learnt)."""
        from faceflex.evaluation.anonymizing import held_out_figures, summary

        figures = summary(held_out_figures(self.anonymizer(), self.cache, self.test_rows[:128], methods=("generate",), keep_tone=False))
        return {f"held_out_{k}": v for k, v in figures["generate"].items()}

    def after_epoch(self) -> None:
        self.save_grid(self.out / f"epoch_{self.epoch:03d}.png")

    @torch.no_grad()
    def save_grid(self, path: Path) -> Path:
        """PNG rows: 8 held-out faces with the hole, painted with their own descriptor, with two random
        identities (seeds 1 and 2), and the true faces; the network's own colour (keep_tone off)."""
        self.model.eval()
        rows = self.test_rows[:8]
        faces, landmarks = np.asarray(self.cache.faces[rows]), self.cache.landmarks[rows]
        anonymizer = self.anonymizer()
        own, holes = anonymizer.paint(faces, landmarks, self.codes[rows], keep_tone=False)
        strips = [np.where(holes[..., None] > 0, 128, faces).astype(np.uint8), own]
        for seed in (1, 2):
            strips.append(anonymizer.paint(faces, landmarks, self.prior.sample(np.random.default_rng(seed), len(rows)), keep_tone=False)[0])
        strips.append(faces)
        grid = np.concatenate([np.concatenate(list(strip), axis=1) for strip in strips], axis=0)
        return save_image(grid, path)
