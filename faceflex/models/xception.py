"""Mini-Xception (Arriaga et al., arXiv 1710.07557) with one shared trunk and several heads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class XceptionConfig:
    """Architecture hyper-parameters (stored inside every weight file).

    ``heads`` maps a head name to its number of outputs (logits, or 1 for a regression).
    """

    in_channels: int = 3
    image_size: int = 64
    stem: int = 8
    widths: tuple[int, ...] = (16, 32, 64, 128)
    heads: dict[str, int] = field(default_factory=lambda: {"out": 2})
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths), "heads": dict(self.heads)}

    @classmethod
    def from_dict(cls, data: dict) -> XceptionConfig:
        return cls(
            in_channels=int(data["in_channels"]),
            image_size=int(data["image_size"]),
            stem=int(data["stem"]),
            widths=tuple(int(w) for w in data["widths"]),
            heads={str(k): int(v) for k, v in data["heads"].items()},
            dropout=float(data["dropout"]),
        )


def _separable(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)
    )


class _Module(nn.Module):
    """Two separable convolutions and a max-pool, plus a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
        self.main = nn.Sequential(
            _separable(cin, cout), nn.ReLU(inplace=True), _separable(cout, cout), nn.MaxPool2d(3, stride=2, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class MiniXception(nn.Module):
    """Images (N, C, H, W) in [0, 1] -> {head name: (N, outputs)} raw outputs."""

    def __init__(self, config: XceptionConfig) -> None:
        super().__init__()
        self.config = config
        s = config.stem
        layers: list[nn.Module] = [
            nn.Conv2d(config.in_channels, s, 3, bias=False),
            nn.BatchNorm2d(s),
            nn.ReLU(inplace=True),
            nn.Conv2d(s, s, 3, bias=False),
            nn.BatchNorm2d(s),
            nn.ReLU(inplace=True),
        ]
        cin = s
        for width in config.widths:
            layers.append(_Module(cin, width))
            cin = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(config.dropout)]
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({name: nn.Linear(cin, n) for name, n in config.heads.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(images * 2.0 - 1.0)
        return {name: head(features) for name, head in self.heads.items()}


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [0, 1], channels_last."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model: MiniXception, images: np.ndarray, device: torch.device, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Raw head outputs (float32) for (N, H, W, C) uint8 inputs, in eval mode."""
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in model.config.heads}
    for start in range(0, len(images), batch_size):
        outputs = model(to_tensor(images[start : start + batch_size], device))
        for name, value in outputs.items():
            chunks[name].append(value.float().cpu().numpy())
    return {name: np.concatenate(parts) if parts else np.zeros((0, model.config.heads[name]), np.float32) for name, parts in chunks.items()}
