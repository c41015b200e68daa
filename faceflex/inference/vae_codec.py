"""The face VAE for inference: load once, encode aligned faces to mean latents, decode latents.

Deterministic: the network is in eval mode and ``encode`` returns the mean of q(z|x), never a
sample, so the same face always gives the same latent and the same decoded image.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from faceflex.device import resolve_device
from faceflex.models.face_vae import FaceVAE, VAEConfig
from faceflex.models.weights import fingerprint, load_network
from faceflex.shipped import require_shipped

SHIPPED_WEIGHTS = "vae.pt"


class VAE:
    """A loaded face VAE. Images are (N, 128, 128, 3) uint8 RGB aligned faces."""

    def __init__(self, model: FaceVAE, device: torch.device, meta: dict | None = None, fingerprint: str | None = None) -> None:
        self.model = model.eval().to(device)
        self.device = device
        self.meta = meta or {}
        self.fingerprint = fingerprint  # of the weight file (None for an in-memory model)

    @property
    def latent_size(self) -> int:
        return self.model.config.latent

    @torch.inference_mode()
    def encode(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Mean latents (N, latent) float32 of aligned faces."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.shape[1:] != (128, 128, 3) or images.dtype != np.uint8:
            raise ValueError(f"encode needs (N, 128, 128, 3) uint8 aligned faces, got {images.shape} {images.dtype}")
        out = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[start : start + batch_size])).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)
            out.append(self.model.encode(x)[0].float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.latent_size), np.float32)

    @torch.inference_mode()
    def decode(self, latents: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Images (N, 128, 128, 3) uint8 for latents (N, latent)."""
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim == 1:
            latents = latents[None]
        if latents.shape[1] != self.latent_size:
            raise ValueError(f"decode needs (N, {self.latent_size}) latents, got {latents.shape}")
        out = []
        for start in range(0, len(latents), batch_size):
            z = torch.from_numpy(latents[start : start + batch_size]).to(self.device)
            y = self.model.decode(z).float().clamp(0, 1)
            out.append((y.permute(0, 2, 3, 1) * 255.0 + 0.5).to(torch.uint8).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 128, 128, 3), np.uint8)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """decode(encode(images))."""
        return self.decode(self.encode(images))


def vae_from_file(path: str | Path, device: str = "auto") -> VAE:
    """Load a VAE weight file (fp16 on disk, float32 in memory)."""
    model, record = load_network(path, lambda config: FaceVAE(VAEConfig.from_dict(config)), "face-VAE weights")
    return VAE(model, resolve_device(device), record.get("meta"), fingerprint(path))


@functools.cache
def _shipped(device: str) -> VAE:
    path = require_shipped(SHIPPED_WEIGHTS, "VAE weights", "faceflex train vae")
    return vae_from_file(path, device)


def load_vae(path: str | Path | None = None, device: str = "auto") -> VAE:
    """The shipped VAE (loaded once per process), or the weight file at ``path``."""
    return _shipped(device) if path is None else vae_from_file(path, device)
