"""Training the face VAE: deterministic, resumable, checkpointed every epoch.

Loss per image = sum of squared errors over its 128x128x3 values in [0, 1]
+ beta x KL(q(z|x) || N(0, I)), beta ramped up linearly over ``kl_warmup_epochs``.
CPU: channels_last + bf16 autocast; CUDA: fp16 autocast with a gradient scaler.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceflex.io import save_image, write_atomic
from faceflex.models.vae import FaceVAE, VAEConfig
from faceflex.models.weights import save_weights
from faceflex.train.cache import CachedFaces


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


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, beta: float):
    """(total, reconstruction SSE, KL), each averaged over the batch."""
    sse = (recon.float() - x).pow(2).sum(dim=(1, 2, 3)).mean()
    kl = (-0.5 * (1 + logvar.float() - mean.float().pow(2) - logvar.float().exp()).sum(dim=1)).mean()
    return sse + beta * kl, sse, kl


class Trainer:
    """Owns the model, optimiser and schedule; ``run`` trains epoch by epoch from ``self.epoch``."""

    def __init__(self, cache: CachedFaces, vae_config: VAEConfig, settings: TrainSettings, out: Path, device: torch.device):
        self.cache, self.settings, self.out, self.device = cache, settings, Path(out), device
        torch.manual_seed(settings.seed)
        self.model = FaceVAE(vae_config).to(device).to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.train_rows = cache.split("train")
        self.test_rows = cache.split("test")
        self.steps_per_epoch = len(self.train_rows) // settings.batch_size
        total = max(1, self.steps_per_epoch * settings.epochs)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        self.epoch = 0
        self.history: list[dict] = []

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "settings": vars(self.settings),
            "vae_config": self.model.config.to_dict(),
        }

    def save_checkpoint(self) -> Path:
        path = self.out / "checkpoint.pt"
        return write_atomic(path, lambda handle: torch.save(self.state(), handle))

    def load_checkpoint(self, path: Path) -> dict:
        """Restore everything saved by :meth:`save_checkpoint`; returns the checkpoint's settings."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["vae_config"] != self.model.config.to_dict():
            raise ValueError(f"{path}: checkpoint architecture {state['vae_config']} differs from the config's")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        return dict(state["settings"])

    # -- training ----------------------------------------------------------------------------
    def beta_at(self, step: int) -> float:
        warm = self.settings.kl_warmup_epochs * self.steps_per_epoch
        return self.settings.beta * (min(1.0, step / warm) if warm > 0 else 1.0)

    def train_epoch(self, progress: Callable[[int, dict], None] | None = None) -> dict:
        """One epoch; its data order, flips and latent noise depend only on (seed, epoch)."""
        s = self.settings
        generator = torch.Generator().manual_seed(s.seed * 100_003 + self.epoch)
        order = self.train_rows[torch.randperm(len(self.train_rows), generator=generator).numpy()]
        self.model.train()
        totals = {"loss": 0.0, "sse": 0.0, "kl": 0.0}
        autocast_dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        for i in range(self.steps_per_epoch):
            rows = order[i * s.batch_size : (i + 1) * s.batch_size]
            flips = torch.rand(len(rows), generator=generator) < 0.5 if s.flip else None
            x = batch_tensor(self.cache.faces, rows, flips, self.device)
            noise_gen = generator if self.device.type == "cpu" else None
            step = self.epoch * self.steps_per_epoch + i
            with torch.autocast(self.device.type, dtype=autocast_dtype):
                recon, mean, logvar = self.model(x, noise_gen)
            loss, sse, kl = vae_loss(recon, x, mean, logvar, self.beta_at(step))
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            for key, value in (("loss", loss), ("sse", sse), ("kl", kl)):
                totals[key] += float(value.detach())
            if progress:
                progress(1, {"loss": float(loss.detach()), "sse": float(sse.detach()), "kl": float(kl.detach())})
        self.epoch += 1
        return {key: value / max(1, self.steps_per_epoch) for key, value in totals.items()}

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

    def run(self, on_epoch: Callable[[dict], None] | None = None, progress_factory=None, stop_after: int | None = None) -> None:
        """Train until ``epochs`` (or ``max_hours``, or ``stop_after`` epochs in this call),
        checkpointing and exporting after each epoch."""
        start = time.perf_counter()
        last = self.settings.epochs if stop_after is None else min(self.settings.epochs, self.epoch + stop_after)
        while self.epoch < last:
            epoch_start = time.perf_counter()
            with progress_factory(self.epoch, self.steps_per_epoch) if progress_factory else contextlib.nullcontext() as bar:
                means = self.train_epoch(bar)
            record = {
                "epoch": self.epoch,
                **{k: round(v, 3) for k, v in means.items()},
                "held_out_psnr": round(self.held_out_psnr(), 3),
                "seconds": round(time.perf_counter() - epoch_start, 1),
            }
            self.history.append(record)
            self.save_grid(self.out / f"epoch_{self.epoch:03d}.png")
            self.save_checkpoint()
            self.export(self.out / "vae.pt")
            write_atomic(self.out / "history.json", lambda h: h.write(json.dumps(self.history, indent=1).encode()))
            if on_epoch:
                on_epoch(record)
            hours = (time.perf_counter() - start) / 3600
            if self.settings.max_hours and hours * (1 + 1 / max(1, self.epoch)) > self.settings.max_hours:
                break

    def export(self, path: Path) -> Path:
        """The shippable fp16 weights with their architecture and training record."""
        meta = {"epochs": self.epoch, "history": self.history, "settings": vars(self.settings)}
        return save_weights(path, self.model, self.model.config.to_dict(), meta)

