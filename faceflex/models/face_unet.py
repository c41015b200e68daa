"""The U-Net that paints faces (network definition only), over an aligned 128x128 face; the
unmasking network and the anonymizing generator are two configurations of it.

Input: (N, in_channels, 128, 128) in [0, 1] (the first three are the RGB face); with
``code_size`` > 0 also a code (N, code_size) that modulates the bottleneck and the two coarsest
decoder stages (FiLM: a per-channel scale and shift, zero-initialised so a warm start from a
network without a code begins where that network was). Output: (mask logits (N, 1, H, W) or None
without ``mask_head``, face (N, 3, H, W) in [0, 1]); with ``detail_output`` the second output is
instead an unbounded detail layer (N, 3, H, W) to be added to the input (its last convolution
zero-initialised: an untrained network adds nothing). The face is only meant to be used where it
is asked for: callers blend it into the input through a mask. The bottleneck at 8 px has dilated
residual blocks, so that a painted region sees the whole face around it (eyes, brows, skin tone,
hair) that it must agree with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FaceUNetConfig:
    """Architecture hyper-parameters (stored inside every weight file)."""

    channels: tuple[int, ...] = (32, 64, 128, 192, 256)  # per stage: 128, 64, 32, 16, 8 px
    bottleneck_blocks: int = 4  # dilated residual blocks at the smallest stage
    image_size: int = 128
    in_channels: int = 3  # RGB, then any guide channels
    mask_head: bool = True  # a segmentation output (the unmasking network's)
    code_size: int = 0  # > 0: a code vector modulates the coarse stages (the anonymizer's identity)
    detail_output: bool = False  # the second output is a detail layer to add (the unmasking detail stage's), not a face

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict) -> FaceUNetConfig:
        return cls(
            tuple(int(c) for c in data["channels"]),
            int(data["bottleneck_blocks"]),
            int(data["image_size"]),
            int(data.get("in_channels", 3)),
            bool(data.get("mask_head", True)),
            int(data.get("code_size", 0)),
            bool(data.get("detail_output", False)),
        )


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


class FaceUNet(nn.Module):
    """U-Net: encoder stages (stride 2 after the first), dilated residual bottleneck, decoder with skips."""

    def __init__(self, config: FaceUNetConfig = FaceUNetConfig()) -> None:
        super().__init__()
        self.config = config
        chans = config.channels
        self.down = nn.ModuleList([nn.Sequential(_conv(config.in_channels, chans[0]), _conv(chans[0], chans[0]))])
        for cin, cout in zip(chans, chans[1:]):
            self.down.append(nn.Sequential(_conv(cin, cout, stride=2), _conv(cout, cout)))
        self.bottleneck = nn.Sequential(*[_DilatedResidual(chans[-1], 2 ** (i % 3)) for i in range(config.bottleneck_blocks)])
        self.up = nn.ModuleList()
        for cin, cskip in zip(reversed(chans[1:]), reversed(chans[:-1])):
            self.up.append(nn.Sequential(_conv(cin + cskip, cskip), _conv(cskip, cskip)))
        self.to_mask = nn.Conv2d(chans[0], 1, 3, padding=1) if config.mask_head else None
        self.to_face = nn.Conv2d(chans[0], 3, 3, padding=1)
        if config.detail_output:
            nn.init.zeros_(self.to_face.weight)
            nn.init.zeros_(self.to_face.bias)
        if config.code_size:  # bottleneck input, then the outputs of the first two decoder stages
            self.film = nn.ModuleList(nn.Linear(config.code_size, 2 * c) for c in (chans[-1], chans[-2], chans[-3]))
            for layer in self.film:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def _modulate(self, x: torch.Tensor, code: torch.Tensor | None, index: int) -> torch.Tensor:
        if code is None or not self.config.code_size or index >= len(self.film):
            return x
        scale, shift = self.film[index](code).to(x.dtype)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift

    def forward(self, images: torch.Tensor, code: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        x = images * 2.0 - 1.0
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        x = self.bottleneck(self._modulate(skips.pop(), code, 0))
        for i, stage in enumerate(self.up):
            skip = skips.pop()
            x = stage(torch.cat([nn.functional.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
            x = self._modulate(x, code, i + 1)
        face = self.to_face(x)
        return (self.to_mask(x) if self.to_mask is not None else None), (face if self.config.detail_output else torch.sigmoid(face))


def face_unet_from_config(config: dict) -> FaceUNet:
    """An untrained :class:`FaceUNet` of the architecture a weight file records (its ``config``)."""
    return FaceUNet(FaceUNetConfig.from_dict(config))
