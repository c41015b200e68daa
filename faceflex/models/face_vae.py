"""A convolutional VAE for aligned 128x128x3 faces (network definition only).

Two latent layouts, one interface (latents are always flat vectors of ``latent`` values):
- ``spatial=False``: the last stage's maps are flattened and mapped by linear layers to a global
  latent vector (the original Face Flex design; every value affects the whole face).
- ``spatial=True``: the latent is a map of ``latent // grid**2`` channels on the last stage's
  grid (``grid = image_size / 2**len(channels)``), flattened channel-major. Far more of the face's
  own structure survives the bottleneck; ``res_blocks`` residual blocks at the grid give the
  decoder room to render it.
"""

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
    spatial: bool = False  # latent as a map on the last stage's grid instead of a global vector
    res_blocks: int = 0  # residual blocks at the grid, at the decoder's start (spatial latents)

    def __post_init__(self) -> None:
        grid = self.grid
        if grid < 1 or grid * 2 ** len(self.channels) != self.image_size:
            raise ValueError(f"{len(self.channels)} stride-2 stages do not divide {self.image_size} px evenly")
        if self.spatial and self.latent % (grid * grid):
            raise ValueError(f"a spatial latent of {self.latent} values does not fill a {grid}x{grid} grid")

    @property
    def grid(self) -> int:
        """Side of the last stage's maps (the latent map's side for a spatial latent)."""
        return self.image_size // 2 ** len(self.channels)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict) -> VAEConfig:
        return cls(
            latent=int(data["latent"]),
            channels=tuple(int(c) for c in data["channels"]),
            image_size=int(data["image_size"]),
            spatial=bool(data.get("spatial", False)),
            res_blocks=int(data.get("res_blocks", 0)),
        )


def _block(cin: int, cout: int, kernel: int, stride: int, extra: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    ]
    if extra:  # a second 3x3 conv where the maps are small and it is cheap
        layers += [nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]
    return layers


class _Residual(nn.Module):
    """x + conv-BN-act-conv-BN(x), then the activation (channels unchanged)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


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
        self.base = config.grid
        layers, cin, size = [], 3, config.image_size
        for c in chans:
            size //= 2
            layers.append(_down(cin, c, size))
            cin = c
        if config.spatial:
            self.latent_channels = config.latent // (self.base * self.base)
            self.encoder = nn.Sequential(*layers)
            self.to_mean = nn.Conv2d(chans[-1], self.latent_channels, 3, padding=1)
            self.to_logvar = nn.Conv2d(chans[-1], self.latent_channels, 3, padding=1)
            self.from_latent = nn.Sequential(nn.Conv2d(self.latent_channels, chans[-1], 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        else:
            self.encoder = nn.Sequential(*layers, nn.Flatten())
            flat = chans[-1] * self.base * self.base
            self.to_mean = nn.Linear(flat, config.latent)
            self.to_logvar = nn.Linear(flat, config.latent)
            self.from_latent = nn.Linear(config.latent, flat)
        ups: list[nn.Module] = [_Residual(chans[-1]) for _ in range(config.res_blocks)]
        rev = list(reversed(chans))
        size = self.base
        for cin, cout in zip(rev, rev[1:] + [rev[-1]]):
            size *= 2
            ups.append(_up(cin, cout, size))
        self.decoder = nn.Sequential(*ups, nn.Conv2d(rev[-1], 3, 3, padding=1), nn.Sigmoid())

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q(z | x) for images (N, 3, H, W) in [0, 1]."""
        features = self.encoder(images * 2.0 - 1.0)
        mean, logvar = self.to_mean(features), self.to_logvar(features)
        return mean.flatten(1), logvar.flatten(1).clamp(-12.0, 8.0)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [0, 1] for latents (N, latent)."""
        if self.config.spatial:
            x = self.from_latent(latents.reshape(-1, self.latent_channels, self.base, self.base))
        else:
            x = self.from_latent(latents).view(-1, self.config.channels[-1], self.base, self.base)
        return self.decoder(x)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruction with a sampled latent (training), plus mean and log-variance."""
        mean, logvar = self.encode(images)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + noise * torch.exp(0.5 * logvar)
        return self.decode(z), mean, logvar
