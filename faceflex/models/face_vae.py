"""A convolutional VAE for aligned 128x128x3 faces (network definition only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class VAEConfig:
    """Architecture hyper-parameters (stored inside every weight file)."""

    latent: int = 500
    channels: tuple[int, ...] = (32, 64, 128, 256, 384)  # per stride-2 stage, 128 px -> 4 px
    image_size: int = 128

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict) -> VAEConfig:
        return cls(latent=int(data["latent"]), channels=tuple(int(c) for c in data["channels"]), image_size=int(data["image_size"]))


def _block(cin: int, cout: int, kernel: int, stride: int, extra: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    ]
    if extra:  # a second 3x3 conv where the maps are small and it is cheap
        layers += [nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]
    return layers


def _down(cin: int, cout: int, out_size: int) -> nn.Sequential:
    return nn.Sequential(*_block(cin, cout, 4, 2, out_size <= 16))


def _up(cin: int, cout: int, out_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), *_block(cin, cout, 3, 1, out_size <= 16))


class FaceVAE(nn.Module):
    """Encoder -> (mean, log-variance) of a Gaussian latent -> decoder; images in [0, 1]."""

    def __init__(self, config: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        self.config = config
        chans = config.channels
        self.base = config.image_size // 2 ** len(chans)
        layers, cin, size = [], 3, config.image_size
        for c in chans:
            size //= 2
            layers.append(_down(cin, c, size))
            cin = c
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = chans[-1] * self.base * self.base
        self.to_mean = nn.Linear(flat, config.latent)
        self.to_logvar = nn.Linear(flat, config.latent)
        self.from_latent = nn.Linear(config.latent, flat)
        ups = []
        rev = list(reversed(chans))
        size = self.base
        for cin, cout in zip(rev, rev[1:] + [rev[-1]]):
            size *= 2
            ups.append(_up(cin, cout, size))
        self.decoder = nn.Sequential(*ups, nn.Conv2d(rev[-1], 3, 3, padding=1), nn.Sigmoid())

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q(z | x) for images (N, 3, H, W) in [0, 1]."""
        features = self.encoder(images * 2.0 - 1.0)
        return self.to_mean(features), self.to_logvar(features).clamp(-12.0, 8.0)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [0, 1] for latents (N, latent)."""
        chans = self.config.channels[-1]
        x = self.from_latent(latents).view(-1, chans, self.base, self.base)
        return self.decoder(x)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruction with a sampled latent (training), plus mean and log-variance."""
        mean, logvar = self.encode(images)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + noise * torch.exp(0.5 * logvar)
        return self.decode(z), mean, logvar
