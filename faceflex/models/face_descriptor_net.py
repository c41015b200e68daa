"""dlib's face recognition network (``dlib_face_recognition_resnet_model_v1.dat``) in torch.

The same ResNet and the same weights as ``dlib.face_recognition_model_v1``, read from dlib's own
file, so the 128-d descriptor is dlib's (within 1e-6: float32 rounding, tested against dlib), but
computed by torch's convolutions: several times faster than dlib's BLAS-less build on the CPU,
and batched. The input is dlib's 150 x 150 face chip (``dlib.get_face_chip(image, shape, 150,
0.25)``), RGB, values 0-255.

The network (dlib's ``anet_type``): a 7x7 stride-2 convolution to 32 channels, 3x3 stride-2 max
pool, residual stages of 3 x 32, 4 x 64, 3 x 128, 3 x 256 and 1 x 256 channels (the first block
of every stage after the first halves the size: stride-2 convolution, its shortcut a 2x2 average
pool, zero-filled where the two differ in size or channels, as dlib's ``add_prev`` does), global
average, a 256 -> 128 linear map without bias. dlib pads a convolution by half its size at
stride 1 and not at all at stride 2. Its per-channel affine layers (batch norm frozen) are folded
into the convolutions when the file is read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceflex.models.labels import AGE_MAX

CHIP_SIZE = 150  # px: dlib's face chip
CHIP_PADDING = 0.25  # dlib's default chip padding (share of the face's size added around it)
INPUT_MEAN = (122.782, 117.001, 104.298)  # dlib's input_rgb_image: (RGB - mean) / 256
INPUT_SCALE = 256.0
DESCRIPTOR_SIZE = 128
# (input channels, output channels, whether the block halves the size) of every residual block, bottom to top
BLOCKS = (
    [(32, 32, False)] * 3
    + [(32, 64, True)]
    + [(64, 64, False)] * 3
    + [(64, 128, True)]
    + [(128, 128, False)] * 2
    + [(128, 256, True)]
    + [(256, 256, False)] * 2
    + [(256, 256, True)]
)


def _conv(cin: int, cout: int, size: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, size, stride=stride, padding=size // 2 if stride == 1 else 0)


class ResidualBlock(nn.Module):
    """conv -> relu -> conv, plus the (pooled, zero-filled) input, -> relu."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.first = _conv(cin, cout, 3, 2 if down else 1)
        self.second = _conv(cout, cout, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.second(F.relu(self.first(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_zero_filled(y, shortcut))


def _add_zero_filled(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` for (N, C, H, W) tensors of different C, H, W: each zero-filled (after its last
    channel, row and column) to the larger size, as dlib's ``add_prev`` layer adds."""
    size = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:])]

    def filled(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, size[2] - w, 0, size[1] - h, 0, size[0] - c)) if [c, h, w] != size else t

    return filled(a) + filled(b)


class FaceDescriptorNet(nn.Module):
    """dlib's face recognition ResNet: (N, 3, 150, 150) RGB chips, 0-255 -> (N, 128) descriptors."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv(3, 32, 7, 2)
        self.blocks = nn.Sequential(*(ResidualBlock(cin, cout, down) for cin, cout, down in BLOCKS))
        self.project = nn.Linear(256, DESCRIPTOR_SIZE, bias=False)
        self.register_buffer("mean", torch.tensor(INPUT_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return self.features(chips)[1]

    def features(self, chips: torch.Tensor, taps: tuple[int, ...] = ()) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(the activations after the residual blocks numbered ``taps``, the descriptors): what a
        training loss compares between a painted face and the true one."""
        x = F.max_pool2d(F.relu(self.stem((chips - self.mean) / INPUT_SCALE)), 3, 2)
        tapped = []
        for k, block in enumerate(self.blocks):
            x = block(x)
            if k in taps:
                tapped.append(x)
        return tapped, self.project(x.mean(dim=(2, 3)))


def _packed_int(value: int) -> bytes:
    """dlib's serialisation of a non-negative integer: a byte holding the count of bytes that
    follow, then the value's bytes, least significant first."""
    digits = []
    while True:
        digits.append(value & 0xFF)
        value >>= 8
        if value == 0:
            return bytes([len(digits), *digits])


def read_dlib_tensor(raw: bytes, shape: tuple[int, int, int, int], start: int) -> tuple[np.ndarray, int]:
    """The first float tensor of dlib's serialised ``shape`` (num_samples, k, nr, nc) in ``raw`` at or
    after byte ``start``: (its values, float32, the byte after them). dlib writes a tensor as its
    version (2), the four sizes (:func:`_packed_int`), then the values as little-endian float32."""
    header = _packed_int(2) + b"".join(_packed_int(n) for n in shape)
    at = raw.find(header, start)
    if at < 0:
        raise ValueError(f"no dlib tensor of shape {shape} after byte {start}: not dlib's face recognition model v1")
    begin = at + len(header)
    count = int(np.prod(shape))
    return np.frombuffer(raw, "<f4", count, begin).copy(), begin + 4 * count


def load_face_descriptor_net(path: str | Path) -> FaceDescriptorNet:
    """:class:`FaceDescriptorNet` with the weights of dlib's ``dlib_face_recognition_resnet_model_v1.dat``
    (eval mode, channels_last: about a quarter faster on the CPU). dlib stores the layers bottom to
    top, each convolution's parameters as one tensor (filters (out, in, h, w) then biases), each
    affine layer's as gamma then beta, the last layer's as a (256, 128) matrix; the affine layers
    are folded into the convolutions before them."""
    raw = Path(path).read_bytes()
    with torch.device("meta"):  # no random initialisation: every value is set below
        net = FaceDescriptorNet()
    net = net.to_empty(device="cpu")
    net.mean.copy_(torch.tensor(INPUT_MEAN).view(1, 3, 1, 1))
    convs = [net.stem] + [conv for block in net.blocks for conv in (block.first, block.second)]
    position = 0
    with torch.no_grad():
        for conv in convs:
            cout, cin, kh, kw = conv.weight.shape
            params, position = read_dlib_tensor(raw, (cin * cout * kh * kw + cout, 1, 1, 1), position)
            affine, position = read_dlib_tensor(raw, (2 * cout, 1, 1, 1), position)
            gamma, beta = torch.from_numpy(affine[:cout]), torch.from_numpy(affine[cout:])
            conv.weight.copy_(torch.from_numpy(params[: cin * cout * kh * kw]).view(cout, cin, kh, kw) * gamma.view(-1, 1, 1, 1))
            conv.bias.copy_(torch.from_numpy(params[cin * cout * kh * kw :]) * gamma + beta)
        matrix, _ = read_dlib_tensor(raw, (256, DESCRIPTOR_SIZE, 1, 1), position)
        net.project.weight.copy_(torch.from_numpy(matrix).view(256, DESCRIPTOR_SIZE).T)
    return net.eval().to(memory_format=torch.channels_last)


def stage_shape(block: int) -> tuple[int, int, int]:
    """(channels, height, width) of the output of residual block ``block`` (numbered from 0, as
    :data:`BLOCKS`) on a 150-px chip: the stem and pool leave 35 x 35; each halving block (a 3x3
    stride-2 convolution, unpadded) maps n to (n - 3) // 2 + 1."""
    size = 35
    for _, _, down in BLOCKS[: block + 1]:
        size = (size - 3) // 2 + 1 if down else size
    return BLOCKS[block][1], size, size


@dataclass(frozen=True)
class GenderAgeConfig:
    """Architecture of :class:`GenderAgeNet` (stored inside its weight file)."""

    from_block: int = 7  # the first of dlib's residual blocks it holds (a copy, fine-tuned); it reads block from_block - 1
    age_max: int = AGE_MAX  # the age head: a distribution over whole years 0..age_max

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GenderAgeConfig:
        return cls(from_block=int(data["from_block"]), age_max=int(data["age_max"]))

    @property
    def tap(self) -> int:
        """The residual block of dlib's network whose output the network reads."""
        return self.from_block - 1


class GenderAgeNet(nn.Module):
    """Gender and age read from dlib's face-recognition features: a copy of the top of
    :class:`FaceDescriptorNet` (its residual blocks from ``from_block`` on, fine-tuned on labelled
    faces; dlib's own blocks stay untouched), global average, and two linear heads.

    Input: the output of dlib's block ``config.tap`` (:meth:`FaceDescriptorNet.features`;
    :func:`stage_shape`: (N, 64, 17, 17) for block 6). Output: ``{"male": (N,) logits of
    P(male), "age": (N, age_max + 1) logits over whole years}``."""

    def __init__(self, config: GenderAgeConfig = GenderAgeConfig()) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.Sequential(*(ResidualBlock(cin, cout, down) for cin, cout, down in BLOCKS[config.from_block :]))
        width = BLOCKS[-1][1]
        self.male = nn.Linear(width, 1)
        self.age = nn.Linear(width, config.age_max + 1)

    @classmethod
    def from_descriptor_net(cls, net: FaceDescriptorNet, config: GenderAgeConfig = GenderAgeConfig()) -> GenderAgeNet:
        """A new network whose blocks start as dlib's (``net``'s) and whose heads are freshly initialised."""
        model = cls(config)
        for mine, dlibs in zip(model.blocks, net.blocks[config.from_block :]):
            mine.load_state_dict(dlibs.state_dict())
        return model

    def forward(self, stage: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.blocks(stage).mean(dim=(2, 3))
        return {"male": self.male(pooled)[:, 0], "age": self.age(pooled)}
