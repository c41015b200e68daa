"""Training the face VAE (on the shared :class:`~faceflex.train.trainer.Trainer`): deterministic, resumable.

Loss per image = sum of squared errors over its 128x128x3 values in [0, 1]
+ beta x KL(q(z|x) || N(0, I)), beta ramped up linearly over ``kl_warmup_epochs``
[+ ssim_weight x (1 - SSIM) + laplacian_weight x Laplacian-pyramid L1, for sharpness]
[+ an adversarial term from ``adversarial_start`` on: a patch critic's hinge loss plus feature
matching (L1 between the critic's feature maps of the reconstruction and of the original), weighted
adaptively as in VQGAN: ``adversarial_weight`` x |grad of the rest| / |grad of the adversarial
term| at the decoder's last layer, so it neither swamps nor vanishes beside the squared error].
``init`` starts from a weight file; ``decoder_only`` freezes the encoder (and so the latent space:
the attribute vectors and the landmark regressor stay valid).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.io.images import save_image
from faceflex.metrics import laplacian_pyramid_l1, ssim
from faceflex.models.face_vae import FaceVAE, VAEConfig
from faceflex.models.weights import load_weights
from faceflex.train.adversarial import AdversarialTerm
from faceflex.train.cache import CachedFaces
from faceflex.train.trainer import Trainer


@dataclass(frozen=True)
class TrainSettings:
    """The ``train_vae`` section of the config."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    beta: float = 0.02
    kl_warmup_epochs: float = 1.0
    flip: bool = True
    max_hours: float = 0.0
    init: str | None = None  # warm start from a VAE weight file
    decoder_only: bool = False  # encoder frozen: latents (and attribute vectors) stay valid
    ssim_weight: float = 0.0  # + weight x (1 - SSIM) per image
    laplacian_weight: float = 0.0  # + weight x Laplacian-pyramid L1 per image
    adversarial_weight: float = 0.0  # adaptive weight of the critic's term (0: no critic)
    adversarial_start: int = 0  # first epoch (0-based) with the critic's term
    critic_lr: float = 2e-4
    seed: int = 0


def batch_tensor(faces: np.ndarray, rows: np.ndarray, flips: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Float images (N, 3, 128, 128) in [0, 1] for cache rows (sorted reads from the memory map)."""
    order = np.argsort(rows)
    data = np.empty((len(rows), 128, 128, 3), dtype=np.uint8)
    data[order] = faces[rows[order]]
    x = torch.from_numpy(data).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if flips is not None and flips.any():
        x[flips] = x[flips].flip(-1)
    return x.contiguous(memory_format=torch.channels_last)


def warm_start(model: FaceVAE, path: str, vae_config: VAEConfig, decoder_only: bool) -> str:
    """Load ``path``'s weights into ``model``; what was loaded, in words.

    Same architecture: every tensor. A different one (e.g. a spatial latent warm-started from the
    shipped global-latent VAE): the tensors whose names and shapes match, the rest stay as
    initialised. Training the decoder alone needs the same architecture (the latent must be the same).
    """
    record = load_weights(path)
    state = {k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()}
    if VAEConfig.from_dict(record["config"]) == vae_config:
        model.load_state_dict(state)
        return f"warm start: all {len(state)} tensors from {path}"
    if decoder_only:
        raise ValueError(f"{path}: its architecture {record['config']} differs from the config's {vae_config.to_dict()}")
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    return f"warm start: {len(matching)} of {len(own)} tensors (names and shapes that match) from {path}"


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, beta: float):
    """(total, reconstruction SSE, KL), each averaged over the batch."""
    sse = (recon.float() - x).pow(2).sum(dim=(1, 2, 3)).mean()
    kl = (-0.5 * (1 + logvar.float() - mean.float().pow(2) - logvar.float().exp()).sum(dim=1)).mean()
    return sse + beta * kl, sse, kl


class VAETrainer(Trainer):
    """Trains the face VAE on the cache's training split; the held-out split is only measured."""

    name = "vae"

    def __init__(self, cache: CachedFaces, vae_config: VAEConfig, settings: TrainSettings, out: Path, device: torch.device):
        torch.manual_seed(settings.seed)
        self.cache = cache
        model = FaceVAE(vae_config)
        self.init_note = ""
        if settings.init:
            self.init_note = warm_start(model, settings.init, vae_config, settings.decoder_only)
        model = model.to(device).to(memory_format=torch.channels_last)
        trained = model.parameters()
        if settings.decoder_only:
            for part in (model.encoder, model.to_mean, model.to_logvar):
                part.requires_grad_(False)
            trained = [p for p in model.parameters() if p.requires_grad]
        self.test_rows = cache.split("test")
        self.setup(model, torch.optim.Adam(trained, lr=settings.lr), cache.split("train"), settings, out, device)
        self.adversarial = AdversarialTerm(settings.adversarial_weight, settings.critic_lr, device) if settings.adversarial_weight else None

    def beta_at(self, step: int) -> float:
        warm = self.settings.kl_warmup_epochs * self.steps_per_epoch
        return self.settings.beta * (min(1.0, step / warm) if warm > 0 else 1.0)

    def step_loss(self, rows: np.ndarray, generator: torch.Generator):
        flips = torch.rand(len(rows), generator=generator) < 0.5 if self.settings.flip else None
        x = batch_tensor(self.cache.faces, rows, flips, self.device)
        if self.settings.decoder_only:
            self.model.encoder.eval()  # frozen: its batch-norm statistics stay those of the shipped model
        recon, mean, logvar = self.net(x, generator if self.device.type == "cpu" else None)
        step = self.scheduler.last_epoch  # optimiser steps taken so far
        loss, sse, kl = vae_loss(recon, x, mean, logvar, self.beta_at(step))
        logged = {"sse": sse, "kl": kl}
        with torch.autocast(self.device.type, enabled=False):  # SSIM's variances cancel badly in bf16
            if self.settings.ssim_weight:
                structure = (1 - ssim(recon.float(), x)).mean()
                loss, logged["1-ssim"] = loss + self.settings.ssim_weight * structure, structure
            if self.settings.laplacian_weight:
                detail = laplacian_pyramid_l1(recon.float(), x).mean()
                loss, logged["lap"] = loss + self.settings.laplacian_weight * detail, detail
        if self.adversarial and self.epoch >= self.settings.adversarial_start:
            loss = loss + self.adversarial(recon, x, loss, self.model.decoder[-2].weight, logged)
        return loss, logged

    def evaluate(self) -> dict:
        return {"held_out_psnr": round(self.held_out_psnr(), 3)}

    def after_epoch(self) -> None:
        self.save_grid(self.out / f"epoch_{self.epoch:03d}.png")

    @torch.no_grad()
    def held_out_psnr(self, count: int = 512) -> float:
        """Mean PSNR of mean-latent reconstructions of the first ``count`` held-out faces."""
        from faceflex.metrics import psnr

        self.model.eval()
        values = []
        for start in range(0, min(count, len(self.test_rows)), 128):
            x = batch_tensor(self.cache.faces, self.test_rows[start : start + 128], None, self.device)
            recon = self.model.decode(self.model.encode(x)[0])
            values.append(psnr(recon.float().clamp(0, 1), x))
        return float(torch.cat(values).mean())

    @torch.no_grad()
    def save_grid(self, path: Path) -> Path:
        """PNG: 8 held-out faces, their reconstructions, and 8 random samples (fixed noise)."""
        self.model.eval()
        x = batch_tensor(self.cache.faces, self.test_rows[:8], None, self.device)
        recon = self.model.decode(self.model.encode(x)[0]).float()
        z = torch.randn(8, self.model.config.latent, generator=torch.Generator().manual_seed(1234)).to(self.device)
        samples = self.model.decode(z).float()
        rows = [torch.cat(list(t.clamp(0, 1)), dim=2) for t in (x, recon, samples)]
        grid = (torch.cat(rows, dim=1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        return save_image(grid, path)
