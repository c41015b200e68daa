"""Training the unmasking network (on the shared :class:`~faceflex.train.trainer.Trainer`).

Data: the CelebA-HQ training split of the aligned face cache [+ with ``utkface`` set, UTKFace's
training part re-aligned to the same frame (ages 1-110 and five race groups: CelebA-HQ has few
older faces, so the first networks painted a smooth young chin under every mask)]; every face gets a fresh synthetic
mask each epoch (:func:`faceflex.face.mask_overlay.synthetic_mask`, seeded by (seed, epoch, row)),
whose alpha is the exact segmentation label, except a ``bare_share`` of them, left bare (alpha 0,
nothing to paint): without them the network learns that every lower face is a mask; an
``ear_loops`` share of the masks have ear loops (their arcs beside the cheeks are painted away
too). The held-out split is measured with fixed masks (seeded by the row alone, no ear loops),
the same ones ``faceflex evaluate unmask`` uses.

Loss per batch = mask_weight x (BCE + Dice) of the mask logits against the alpha
+ l1_weight x L1 of the painted face inside the paint region (mean over its pixels; with
``l1_lowpass`` k > 1, of k x k block means instead, so that detail the face could have but placed a
pixel or two off is not punished: the critic, not the L1, is then what asks for detail)
+ ssim_weight x (1 - SSIM) + laplacian_weight x Laplacian-pyramid L1 of the composite
(the input with the painted face blended in through the paint region of the true mask)
[+ the patch critic's adaptively weighted hinge + feature-matching term on the composite, from
``adversarial_start`` on, as for the VAE].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceflex.face.align import align_face
from faceflex.face.mask_overlay import load_mask_templates, synthetic_mask
from faceflex.face.texture import high_pass
from faceflex.inference.unmasking import DETAIL_SIGMA, composite, paint_region, with_detail
from faceflex.io.images import save_image
from faceflex.metrics import chroma, laplacian_pyramid_l1, ssim
from faceflex.models.face_unet import FaceUNet, FaceUNetConfig, face_unet_from_config
from faceflex.train.adversarial import AdversarialTerm
from faceflex.train.cache import CachedFaces
from faceflex.train.identity_loss import IdentityLoss, chip_grid_of
from faceflex.train.trainer import Trainer


@dataclass(frozen=True)
class PaintingLosses:
    """The loss settings every painting trainer (unmasking, anonymizing, attribute painting) shares:
    the weights of :func:`composite_loss`'s terms and of the L1 inside the paint region."""

    l1_weight: float = 1.0
    l1_lowpass: int = 1
    rim_weight: float = 0.0  # L1 over the paint region's inner rim, pixel for pixel
    rim_width: int = 6
    chroma_weight: float = 0.0  # L1 of the painting's coarse chroma
    chroma_block: int = 8
    ssim_weight: float = 0.5
    laplacian_weight: float = 0.02
    adversarial_weight: float = 0.0
    adversarial_start: int = 0
    critic_lr: float = 2e-4
    identity_weight: float = 0.0  # dlib's face recognition network on the composite (faceflex.train.identity_loss)
    perceptual_weight: float = 0.0


@dataclass(frozen=True)
class UnmaskSettings(PaintingLosses):
    """The ``train_unmask`` section of the config."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    flip: bool = True
    max_hours: float = 0.0
    mask_weight: float = 1.0
    bare_share: float = 0.2
    ear_loops: float = 0.0
    utkface: str | None = None  # the shared data's utkface/ folder: its training part joins the training faces
    upper_frame: float = 0.0  # share of faces re-aligned on the brows, nose bridge and eyes alone, as unmask aligns photos
    seed: int = 0


@dataclass(frozen=True)
class FacePool:
    """Aligned 128-px faces (N, 128, 128, 3) uint8 and their 68 landmarks (N, 68, 2) in that frame:
    what training batches are drawn from (a :class:`CachedFaces` is one)."""

    faces: np.ndarray
    landmarks: np.ndarray


def training_pool(cache: CachedFaces, utkface: str | Path | None = None, utk_cache: str | Path = "cache") -> tuple[FacePool, np.ndarray]:
    """(pool, its training rows): the cache's faces, whose held-out rows keep their numbers, and with
    ``utkface`` also UTKFace's training part (the faces dlib found; aligned once into ``utk_cache``)."""
    rows = cache.split("train")
    if not utkface:
        return cache, rows
    from faceflex.train.face_sets import TRAIN, utk_faces, utk_split

    faces, landmarks, _ = utk_faces(utkface, utk_cache)
    usable = np.flatnonzero((utk_split(len(faces)) == TRAIN) & np.isfinite(landmarks).all(axis=(1, 2)))
    pool = FacePool(np.concatenate([np.asarray(cache.faces), faces[usable]]), np.concatenate([cache.landmarks, landmarks[usable]]))
    return pool, np.concatenate([rows, len(cache.faces) + np.arange(len(usable))])


def framed(face: np.ndarray, landmarks: np.ndarray, frame: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """A cached 128-px face and its landmarks in the training ``frame``: "all" as cached (aligned on
    all 68 points), "upper" re-aligned on the points ``faceflex unmask`` aligns photos on (brows,
    nose bridge, eyes): its scale differs from the cached one by 7 % or more on one face in ten."""
    if frame == "all":
        return np.asarray(face), np.asarray(landmarks)
    if frame != "upper":
        raise ValueError(f"frame must be 'all' or 'upper', not {frame!r}")
    from faceflex.steps.unmask import RELIABLE_UNDER_MASK

    aligned = align_face(np.asarray(face), np.asarray(landmarks), points=RELIABLE_UNDER_MASK)
    return aligned.image, aligned.landmarks.astype(np.float32)


def masked_batch(
    cache: CachedFaces | FacePool,
    rows: np.ndarray,
    seeds: list[list[int]],
    flips: np.ndarray | None = None,
    bare: np.ndarray | None = None,
    ear_loops: float = 0.0,
    frame: str | Sequence[str] = "all",
):
    """(masked faces, alphas, true faces) as float tensors (N, C, 128, 128) in [0, 1] for cache
    rows in ``frame`` (:func:`framed`; one for all or one per row), each masked by :func:`synthetic_mask` with its own seed
    (``ear_loops``: the chance of ear loops); ``flips`` mirrors chosen faces, ``bare`` leaves
    chosen faces without a mask (alpha 0)."""
    templates = load_mask_templates()
    masked, alphas, truth = [], [], []
    for i, (row, seed) in enumerate(zip(rows, seeds)):
        face, landmarks = framed(cache.faces[row], cache.landmarks[row], frame if isinstance(frame, str) else frame[i])
        if bare is not None and bare[i]:
            image, alpha = face, np.zeros(face.shape[:2], np.float32)
        else:
            image, alpha = synthetic_mask(face, landmarks, np.random.default_rng(seed), templates, ear_loops)
        masked.append(image)
        alphas.append(alpha)
        truth.append(face)
    masked_t = torch.from_numpy(np.stack(masked)).permute(0, 3, 1, 2).float().div_(255.0)
    truth_t = torch.from_numpy(np.stack(truth)).permute(0, 3, 1, 2).float().div_(255.0)
    alpha_t = torch.from_numpy(np.stack(alphas))[:, None]
    if flips is not None and flips.any():
        chosen = torch.from_numpy(flips)
        for t in (masked_t, truth_t, alpha_t):
            t[chosen] = t[chosen].flip(-1)
    return masked_t, alpha_t, truth_t


def region_l1(painted: torch.Tensor, truth: torch.Tensor, region: torch.Tensor, block: int = 1) -> torch.Tensor:
    """Mean L1 between ``painted`` and ``truth`` (N, C, H, W) over the paint ``region`` (N, 1, H, W);
    with ``block`` > 1, between their means over block x block cells (weighted by the region)."""
    difference, weight = region * (painted - truth), region
    if block > 1:
        difference, weight = F.avg_pool2d(difference, block), F.avg_pool2d(weight, block)
    return difference.abs().sum() / (painted.shape[1] * weight.sum()).clamp(min=1e-6)


def inner_rim(region: torch.Tensor, width: int) -> torch.Tensor:
    """The band of a paint ``region`` (N, 1, H, W), values 0-1, within ``width`` pixels of its edge,
    inside it: the region minus its erosion by a (2 width + 1)-px square (pixels beyond the image
    border count as outside)."""
    outside = F.pad(1 - region, (width,) * 4, value=1.0)
    eroded = 1 - F.max_pool2d(outside, 2 * width + 1, stride=1)
    return (region - eroded).clamp(min=0)


def composite_loss(
    trainer: Trainer,
    loss: torch.Tensor,
    logged: dict,
    images: torch.Tensor,
    painted: torch.Tensor,
    region: torch.Tensor,
    truth,
    chips: tuple[torch.Tensor, torch.Tensor] | None = None,
    likeness: torch.Tensor | None = None,
) -> torch.Tensor:
    """``loss`` plus the terms a painting trainer (unmasking, anonymizing, attribute painting) puts on
    the composite (the ``images`` with ``painted`` blended in through ``region``): rim_weight x the L1
    of ``painted`` over the region's inner rim, ``rim_width`` px wide, pixel for pixel (the painting's
    edge held to the face where it meets what is kept) + chroma_weight x the L1 of the painting's
    chroma (Cb, Cr) over the region, in means over ``chroma_block``-px cells (the coarse colour held to
    the face's: a critic and a block-mean L1 of RGB let green or teal patches through where the
    brightness is right) + ssim_weight x (1 - SSIM) + laplacian_weight x
    Laplacian-pyramid L1 (in fp32), from ``adversarial_start`` on the patch critic's term, and with
    ``chips`` ((grid, weight per face): where dlib's chip of each face lies,
    :func:`~faceflex.train.identity_loss.chip_grid_of`, and how much it counts) and the trainer's
    ``identity_loss``, identity_weight x the identity loss + perceptual_weight x the perceptual loss;
    the values are added to ``logged``. ``likeness`` (N,): how much each painting should be the true
    face (default 1; 0 for a face painted as someone else): it weights the SSIM and pyramid terms,
    while the rim, chroma and critic terms hold every painting."""
    s = trainer.settings
    likeness = torch.ones(len(painted), device=painted.device) if likeness is None else likeness.float()

    def per_face_mean(values: torch.Tensor) -> torch.Tensor:
        return (values * likeness).sum() / likeness.sum().clamp(min=1e-6)

    if s.rim_weight:
        rim = region_l1(painted, truth, inner_rim(region, s.rim_width))
        loss, logged["rim"] = loss + s.rim_weight * rim, rim
    if s.chroma_weight:
        tint = region_l1(chroma(painted), chroma(truth), region, s.chroma_block)
        loss, logged["chroma"] = loss + s.chroma_weight * tint, tint
    with torch.autocast(trainer.device.type, enabled=False):
        result = composite(images, painted, region)
        if s.ssim_weight:
            structure = per_face_mean(1 - ssim(result, truth))
            loss, logged["1-ssim"] = loss + s.ssim_weight * structure, structure
        if s.laplacian_weight:
            detail = per_face_mean(laplacian_pyramid_l1(result, truth))
            loss, logged["lap"] = loss + s.laplacian_weight * detail, detail
    if trainer.identity_loss is not None and chips is not None:
        identity, perceptual = trainer.identity_loss(result, truth, *chips)
        loss = loss + s.identity_weight * identity + s.perceptual_weight * perceptual
        logged.update(identity=identity, perceptual=perceptual)
    if trainer.adversarial and trainer.epoch >= s.adversarial_start:
        loss = loss + trainer.adversarial(result, truth, loss, trainer.model.to_face.weight, logged)
    return loss


def mask_loss(logits: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice of mask logits against the alpha (both (N, 1, H, W))."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), alpha)
    p = torch.sigmoid(logits.float())
    dice = 1 - (2 * (p * alpha).sum(dim=(1, 2, 3)) + 1) / (p.sum(dim=(1, 2, 3)) + alpha.sum(dim=(1, 2, 3)) + 1)
    return bce + dice.mean()


def held_out_log(unmasker, cache: CachedFaces, rows: np.ndarray, wanted: Sequence[str]) -> dict:
    """The ``wanted`` summary figures (:func:`faceflex.evaluation.unmasking.summary`) of ``unmasker``
    on held-out ``rows`` in both frames, keyed ``held_out_<figure>`` and ``held_out_upper_<figure>``:
    what the unmasking trainers record after each epoch."""
    from faceflex.evaluation.unmasking import held_out_figures, summary

    logged = {}
    for frame, prefix in (("all", "held_out_"), ("upper", "held_out_upper_")):
        figures = summary(held_out_figures(unmasker, cache, rows, frame=frame))
        logged.update({f"{prefix}{k}": v for k, v in figures.items() if k in wanted})
    return logged


class UnmaskTrainer(Trainer):
    """Trains the unmasking network on synthetic masks over the cache's training split."""

    name = "unmask"

    def __init__(
        self,
        cache: CachedFaces,
        config: FaceUNetConfig,
        settings: UnmaskSettings,
        out: Path,
        device: torch.device,
        init: str | None = None,
        utk_cache: str | Path = "cache",
    ):
        torch.manual_seed(settings.seed)
        self.cache = cache
        self.pool, train_rows = training_pool(cache, settings.utkface, utk_cache)
        model = FaceUNet(config)
        if init:
            from faceflex.models.weights import load_weights

            record = load_weights(init)
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()})
        model = model.to(device).to(memory_format=torch.channels_last)
        self.test_rows = cache.split("test")
        self.setup(model, torch.optim.Adam(model.parameters(), lr=settings.lr), train_rows, settings, out, device, warmup_steps=200)
        self.adversarial = AdversarialTerm(settings.adversarial_weight, settings.critic_lr, device) if settings.adversarial_weight else None
        self.identity_loss = IdentityLoss(device) if settings.identity_weight or settings.perceptual_weight else None

    def step_loss(self, rows: np.ndarray, generator: torch.Generator):
        s = self.settings
        flips = (torch.rand(len(rows), generator=generator) < 0.5).numpy() if s.flip else None
        bare = (torch.rand(len(rows), generator=generator) < s.bare_share).numpy() if s.bare_share else None
        upper = (torch.rand(len(rows), generator=generator) < s.upper_frame).tolist() if s.upper_frame else [False] * len(rows)
        seeds = [[s.seed, self.epoch, int(r)] for r in rows]
        batch = masked_batch(self.pool, rows, seeds, flips, bare, s.ear_loops, ["upper" if u else "all" for u in upper])
        masked, alpha, truth = (t.to(self.device).contiguous(memory_format=torch.channels_last) for t in batch)
        logits, painted = self.net(masked)
        region = paint_region(alpha)
        painted = painted.float()
        l1 = region_l1(painted, truth, region, s.l1_lowpass)
        segmentation = mask_loss(logits, alpha)
        loss = s.mask_weight * segmentation + s.l1_weight * l1
        logged = {"seg": segmentation, "l1": l1}
        chips = None
        if self.identity_loss is not None:  # read as dlib reads faces, in each face's training frame
            frames = [framed(self.pool.faces[r], self.pool.landmarks[r], "upper" if u else "all")[1] for r, u in zip(rows, upper)]
            counted = torch.ones(len(rows)) if bare is None else torch.from_numpy(~bare).float()
            chips = (chip_grid_of(np.stack(frames), truth.shape[-2:], flips), counted)
        return composite_loss(self, loss, logged, masked, painted, region, truth, chips), logged

    def evaluate(self) -> dict:
        from faceflex.inference.unmasking import Unmasker

        wanted = ("psnr_db", "psnr_inside_mask_db", "ssim", "mask_iou", "masks_found", "bare_faces_flagged")
        return held_out_log(Unmasker(self.model, self.device), self.cache, self.test_rows[:256], wanted)

    def after_epoch(self) -> None:
        self.save_grid(self.out / f"epoch_{self.epoch:03d}.png")

    @torch.no_grad()
    def save_grid(self, path: Path) -> Path:
        """PNG rows: 8 held-out faces masked, unmasked, the true faces, the predicted masks."""
        self.model.eval()
        rows = self.test_rows[:8]
        frame = "upper" if self.settings.upper_frame >= 0.5 else "all"
        masked, _, truth = masked_batch(self.cache, rows, [[int(r)] for r in rows], frame=frame)
        logits, painted = self.model(masked.to(self.device).contiguous(memory_format=torch.channels_last))
        probabilities = torch.sigmoid(logits.float()).cpu()
        result = composite(masked, painted.float().cpu(), paint_region(probabilities))
        strips = [torch.cat(list(t.clamp(0, 1)), dim=2) for t in (masked, result, truth, probabilities.expand(-1, 3, -1, -1))]
        grid = (torch.cat(strips, dim=1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        return save_image(grid, path)


@dataclass(frozen=True)
class UnmaskDetailSettings:
    """The ``train_unmask_detail`` section of the config."""

    base: str = "data/unmask.pt"  # the first stage (frozen): its unmasked faces are what the detail stage refines
    epochs: int = 4
    batch_size: int = 32
    lr: float = 5e-4
    flip: bool = True
    max_hours: float = 0.0
    ear_loops: float = 0.5
    upper_frame: float = 0.5
    utkface: str | None = None
    detail_l1_weight: float = 0.5  # L1 of the high-pass difference to the true face inside the paint region
    energy_weight: float = 0.25  # L1 of the detail's local RMS against the true face's
    adversarial_weight: float = 1.0  # the patch critic's term, weighted adaptively
    critic_lr: float = 2e-4
    seed: int = 0


def detail_energy_l1(detail: torch.Tensor, true_detail: torch.Tensor, region: torch.Tensor, window: int = 7) -> torch.Tensor:
    """How far the amount of fine ``detail`` (a high-pass image, (N, C, H, W)) is from the true
    face's, as local RMS (over a sliding ``window`` x ``window`` px window, so there are no
    cells whose grid could be imprinted) averaged over the paint ``region`` (N, 1, H, W): asks for
    as much detail as the true face has there, wherever exactly it lies."""
    pad = window // 2
    energy = [F.avg_pool2d(t.pow(2).sum(dim=1, keepdim=True), window, 1, pad, count_include_pad=False) for t in (detail, true_detail)]
    rms = [(e + 1e-6).sqrt() for e in energy]
    return (region * (rms[0] - rms[1]).abs()).sum() / region.sum().clamp(min=1e-6)


class UnmaskDetailTrainer(Trainer):
    """Trains the detail stage (:func:`faceflex.inference.unmasking.with_detail`) on the frozen first
    stage's unmasked faces (synthetic masks over the training faces, as :class:`UnmaskTrainer`):
    detail_l1_weight x the L1 of the high-pass difference to the true face + energy_weight x
    :func:`detail_energy_l1` + the patch critic's adaptively weighted term on the refined face."""

    name = "unmask_detail"

    def __init__(
        self,
        cache: CachedFaces,
        config: FaceUNetConfig,
        settings: UnmaskDetailSettings,
        out: Path,
        device: torch.device,
        init: str | None = None,
        utk_cache: str | Path = "cache",
    ):
        from faceflex.models.weights import fingerprint, load_network

        base, _ = load_network(settings.base, face_unet_from_config, "unmasking weights")  # (cached: before the seed)
        self.base = base.eval().requires_grad_(False).to(device).to(memory_format=torch.channels_last)
        self.base_fingerprint = fingerprint(settings.base)
        torch.manual_seed(settings.seed)
        self.cache = cache
        self.pool, train_rows = training_pool(cache, settings.utkface, utk_cache)
        model = FaceUNet(config)
        if init:
            model.load_state_dict(load_network(init, face_unet_from_config, "unmasking detail weights")[0].state_dict())
        model = model.to(device).to(memory_format=torch.channels_last)
        self.test_rows = cache.split("test")
        self.setup(model, torch.optim.Adam(model.parameters(), lr=settings.lr), train_rows, settings, out, device, warmup_steps=200)
        self.adversarial = AdversarialTerm(settings.adversarial_weight, settings.critic_lr, device) if settings.adversarial_weight else None

    def export_meta(self) -> dict:
        return {"base": Path(self.settings.base).name, "base_fingerprint": self.base_fingerprint}

    def step_loss(self, rows: np.ndarray, generator: torch.Generator):
        s = self.settings
        flips = (torch.rand(len(rows), generator=generator) < 0.5).numpy() if s.flip else None
        upper = (torch.rand(len(rows), generator=generator) < s.upper_frame).tolist() if s.upper_frame else [False] * len(rows)
        seeds = [[s.seed, self.epoch, int(r)] for r in rows]
        batch = masked_batch(self.pool, rows, seeds, flips, None, s.ear_loops, ["upper" if u else "all" for u in upper])
        masked, _, truth = (t.to(self.device).contiguous(memory_format=torch.channels_last) for t in batch)
        with torch.no_grad():
            logits, painted = self.base(masked)
            region = paint_region(torch.sigmoid(logits.float()))
            unmasked = composite(masked, painted.float(), region)
        refined = with_detail(self.net, unmasked, region)
        with torch.autocast(self.device.type, enabled=False):
            detail, true_detail = high_pass(refined, DETAIL_SIGMA), high_pass(truth, DETAIL_SIGMA)
            detail_l1 = region_l1(detail, true_detail, region)
            energy = detail_energy_l1(detail, true_detail, region)
        loss = s.detail_l1_weight * detail_l1 + s.energy_weight * energy
        logged = {"detail_l1": detail_l1, "energy": energy}
        if self.adversarial:
            loss = loss + self.adversarial(refined, truth, loss, self.model.to_face.weight, logged, region)
        return loss, logged

    def unmasker(self):
        from faceflex.inference.unmasking import Unmasker

        return Unmasker(self.base, self.device, detail=self.model)

    def evaluate(self) -> dict:
        wanted = ("psnr_db", "psnr_inside_mask_db", "ssim", "sharpness_inside_mask")
        return held_out_log(self.unmasker(), self.cache, self.test_rows[:256], wanted)

    def after_epoch(self) -> None:
        self.save_grid(self.out / f"epoch_{self.epoch:03d}.png")

    @torch.no_grad()
    def save_grid(self, path: Path) -> Path:
        """PNG rows: 8 held-out faces masked, unmasked by the first stage alone, with the detail stage, the true faces."""
        self.model.eval()
        rows = self.test_rows[:8]
        masked, _, truth = masked_batch(self.cache, rows, [[int(r)] for r in rows], frame="upper")
        masked_u8 = (masked.permute(0, 2, 3, 1) * 255 + 0.5).to(torch.uint8).numpy()
        from faceflex.inference.unmasking import Unmasker

        first = Unmasker(self.base, self.device)(masked_u8)[0]
        refined = self.unmasker()(masked_u8)[0]
        true_u8 = (truth.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        strips = [np.concatenate(list(t), axis=1) for t in (masked_u8, first, refined, true_u8)]
        return save_image(np.concatenate(strips, axis=0), path)
