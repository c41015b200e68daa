"""The classifier networks: mini-Xception (Arriaga et al., arXiv 1710.07557) and a VGG-style
plain-convolution net, each one shared trunk with several heads.

Both take images (N, C, H, W) in [0, 1] and return {head name: (N, outputs)} raw outputs (logits,
or one value for a regression). :func:`build_classifier` makes the one a config names; the config
is stored inside every weight file. With ``flip_average`` an eval-mode network returns the mean of
its outputs on the image and on its mirror image (test-time augmentation, part of the weights).
With ``members`` > 1 the network is an :class:`Ensemble` of that many copies of the architecture
(trained separately, combined by ``faceflex train ensemble``) whose outputs are averaged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from faceflex.choices import CLASSIFIER_ARCHITECTURES


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture hyper-parameters (stored inside every weight file).

    ``heads`` maps a head name to its number of outputs (logits, or 1 for a regression).
    ``stem`` is mini-Xception's first width; ``convs`` the VGG net's 3x3 convolutions per stage.
    """

    in_channels: int = 3
    image_size: int = 64
    stem: int = 8
    widths: tuple[int, ...] = (16, 32, 64, 128)
    heads: dict[str, int] = field(default_factory=lambda: {"out": 2})
    dropout: float = 0.0
    arch: str = "mini_xception"
    convs: int = 2
    flip_average: bool = False
    members: int = 1  # > 1: an ensemble of this many networks of this architecture, outputs averaged

    def __post_init__(self) -> None:
        if self.arch not in CLASSIFIER_ARCHITECTURES:
            raise ValueError(f"unknown classifier architecture {self.arch!r}; choose {', '.join(CLASSIFIER_ARCHITECTURES)}")

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths), "heads": dict(self.heads)}

    @classmethod
    def from_dict(cls, data: dict) -> ClassifierConfig:
        """From :meth:`to_dict` (weights written before ``arch``/``convs``/``flip_average`` read as mini-Xception)."""
        return cls(
            in_channels=int(data["in_channels"]),
            image_size=int(data["image_size"]),
            stem=int(data["stem"]),
            widths=tuple(int(w) for w in data["widths"]),
            heads={str(k): int(v) for k, v in data["heads"].items()},
            dropout=float(data["dropout"]),
            arch=str(data.get("arch", "mini_xception")),
            convs=int(data.get("convs", 2)),
            flip_average=bool(data.get("flip_average", False)),
            members=int(data.get("members", 1)),
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


class ClassifierNet(nn.Module):
    """A trunk (images scaled to [-1, 1] -> features (N, width)) and one linear layer per head."""

    def __init__(self, config: ClassifierConfig, trunk: nn.Sequential, width: int) -> None:
        super().__init__()
        self.config = config
        self.trunk = trunk
        self.heads = nn.ModuleDict({name: nn.Linear(width, n) for name, n in config.heads.items()})

    def _outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(images * 2.0 - 1.0)
        return {name: head(features) for name, head in self.heads.items()}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.config.flip_average or self.training:
            return self._outputs(images)
        n = images.shape[0]  # the image and its mirror in one batch
        both = self._outputs(torch.cat([images, images.flip(3)]))
        return {name: (value[:n] + value[n:]) / 2 for name, value in both.items()}


class MiniXception(ClassifierNet):
    """A two-convolution stem, then per width a module of separable convolutions that halves the side."""

    def __init__(self, config: ClassifierConfig) -> None:
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
        super().__init__(config, nn.Sequential(*layers), cin)


class VGGNet(ClassifierNet):
    """Per width a stage of ``convs`` 3x3 convolutions (+ batch norm, ReLU) and a 2x2 max-pool;
    then global average pooling and a hidden fully connected layer (dropout before and after)."""

    def __init__(self, config: ClassifierConfig) -> None:
        layers: list[nn.Module] = []
        cin = config.in_channels
        for width in config.widths:
            for _ in range(config.convs):
                layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                cin = width
            layers.append(nn.MaxPool2d(2))
        layers += [
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(cin, cin, bias=False),
            nn.BatchNorm1d(cin),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
        ]
        super().__init__(config, nn.Sequential(*layers), cin)


class Ensemble(nn.Module):
    """``config.members`` networks of one architecture; each head's output is the mean of theirs
    (logits averaged before any calibration)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        member = replace(config, members=1)
        self.members = nn.ModuleList(build_classifier(member) for _ in range(config.members))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = [member(images) for member in self.members]
        return {name: torch.stack([o[name] for o in outputs]).mean(0) for name in outputs[0]}


def build_classifier(config: ClassifierConfig) -> ClassifierNet | Ensemble:
    """The (untrained) network ``config`` describes."""
    if config.members > 1:
        return Ensemble(config)
    return VGGNet(config) if config.arch == "vgg" else MiniXception(config)


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [0, 1], channels_last."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model: ClassifierNet, images: np.ndarray, device: torch.device, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Raw head outputs (float32) for (N, H, W, C) uint8 inputs, in eval mode (mirror-averaged if the config says so)."""
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in model.config.heads}
    for start in range(0, len(images), batch_size):
        outputs = model(to_tensor(images[start : start + batch_size], device))
        for name, value in outputs.items():
            chunks[name].append(value.float().cpu().numpy())
    return {name: np.concatenate(parts) if parts else np.zeros((0, model.config.heads[name]), np.float32) for name, parts in chunks.items()}
