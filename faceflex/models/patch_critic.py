"""A patch critic for adversarial training of the face VAE's decoder (network definition only).

It scores overlapping patches of a 128x128 face (a 16x16 map of logits, each seeing about 46 px)
as real or reconstructed, and exposes its intermediate feature maps for a feature-matching loss.
Spectral normalisation on every convolution keeps it Lipschitz (stable hinge training). Only used
in training: nothing of it is shipped.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchCritic(nn.Module):
    """Images (N, 3, 128, 128) in [0, 1] -> (patch logits (N, 1, 16, 16), [feature maps])."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        stages, cin = [], 3
        for c in channels:  # stride-2 4x4 convolutions: 128 -> 64 -> 32 -> 16 px
            stages.append(nn.Sequential(spectral_norm(nn.Conv2d(cin, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True)))
            cin = c
        self.stages = nn.ModuleList(stages)
        self.head = spectral_norm(nn.Conv2d(cin, 1, 3, padding=1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, features = images * 2.0 - 1.0, []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return self.head(x), features
