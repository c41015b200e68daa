"""The unmasking network (network definition only): a U-Net over an aligned 128x128 face that both
finds a face mask (a segmentation logit per pixel) and paints the face under it (RGB).

Input: (N, 3, 128, 128) in [0, 1]. Output: (mask logits (N, 1, H, W), face (N, 3, H, W) in [0, 1]).
The face is only meant to be used where the mask is: callers blend ``face`` into the input through
the (predicted) mask. The bottleneck at 8 px has dilated residual blocks, so that the painted
lower face sees the whole upper face (eyes, brows, skin tone, hair) it must agree with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UnmaskConfig:
    """Architecture hyper-parameters (stored inside every weight file)."""

    channels: tuple[int, ...] = (32, 64, 128, 192, 256)  # per stage: 128, 64, 32, 16, 8 px
    bottleneck_blocks: int = 4  # dilated residual blocks at the smallest stage
    image_size: int = 128

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict) -> UnmaskConfig:
        return cls(tuple(int(c) for c in data["channels"]), int(data["bottleneck_blocks"]), int(data["image_size"]))


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class _DilatedResidual(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, dilation=dilation), nn.Conv2d(channels, channels, 3, padding=1, bias=False))
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.norm(self.body(x)))


class UnmaskNet(nn.Module):
    """U-Net: encoder stages (stride 2 after the first), dilated residual bottleneck, decoder with skips."""

    def __init__(self, config: UnmaskConfig = UnmaskConfig()) -> None:
        super().__init__()
        self.config = config
        chans = config.channels
        self.down = nn.ModuleList([nn.Sequential(_conv(3, chans[0]), _conv(chans[0], chans[0]))])
        for cin, cout in zip(chans, chans[1:]):
            self.down.append(nn.Sequential(_conv(cin, cout, stride=2), _conv(cout, cout)))
        self.bottleneck = nn.Sequential(*[_DilatedResidual(chans[-1], 2 ** (i % 3)) for i in range(config.bottleneck_blocks)])
        self.up = nn.ModuleList()
        for cin, cskip in zip(reversed(chans[1:]), reversed(chans[:-1])):
            self.up.append(nn.Sequential(_conv(cin + cskip, cskip), _conv(cskip, cskip)))
        self.to_mask = nn.Conv2d(chans[0], 1, 3, padding=1)
        self.to_face = nn.Conv2d(chans[0], 3, 3, padding=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images * 2.0 - 1.0
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        x = self.bottleneck(skips.pop())
        for stage in self.up:
            skip = skips.pop()
            x = stage(torch.cat([nn.functional.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        return self.to_mask(x), torch.sigmoid(self.to_face(x))
