"""The unmasking network for inference: find the face mask on aligned faces and paint what it hides.

Deterministic (eval mode, no sampling). Only pixels inside the *paint region* change: the
predicted mask (probability >= 0.5) grown by ``GROW`` px and feathered by one, so the mask's
antialiased rim, which mixes mask and skin colours, is repainted too.

A second, optional network, the *detail stage*, then redraws the fine detail the first one paints
too softly (lip lines, nostrils, skin grain): inside the paint region the detail finer than
``DETAIL_SIGMA`` is replaced by the part of its output that fine, so it cannot change colour or
shading (:func:`with_detail`).

Whether a face wears a mask comes from the same segmentation (:func:`mask_presence`), for
``faceflex unmask`` and for ``faceflex classify``'s ``occlusion.mask`` alike.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceflex.device import cpu_has_bf16, resolve_device
from faceflex.face.align import template_landmarks
from faceflex.face.masks import region_mask
from faceflex.face.texture import high_pass
from faceflex.models.face_unet import FaceUNet, face_unet_from_config
from faceflex.models.weights import fingerprint, load_network
from faceflex.shipped import require_shipped

SHIPPED_WEIGHTS = "unmask.pt"
GROW = 2  # px (128-px frame) the paint region reaches beyond the mask
DETAIL_SIGMA = 2.0  # px (128-px frame): the detail stage redraws only detail finer than about twice this
MIN_COVERAGE = 0.10  # the smallest share of the face a worn mask covers (presence is judged on that share)


def paint_region(mask: torch.Tensor, grow: int = GROW) -> torch.Tensor:
    """Where a mask (N, 1, H, W) in [0, 1] is repainted: its >= 0.5 part, :func:`grown_softened`."""
    return grown_softened((mask >= 0.5).float(), grow)


def grown_softened(weight: torch.Tensor, grow: int) -> torch.Tensor:
    """``weight`` (N, 1, H, W) in [0, 1] grown by ``grow`` px (a square max filter) and softened by a
    3x3 box blur (at the border, the mean of the pixels inside); values in [0, 1]."""
    grown = F.max_pool2d(weight, 2 * grow + 1, stride=1, padding=grow) if grow else weight
    return F.avg_pool2d(grown, 3, stride=1, padding=1, count_include_pad=False)


def composite(images: torch.Tensor, painted: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """``images`` with ``painted`` blended in through ``region`` (all (N, C, H, W) in [0, 1])."""
    return images + region * (painted - images)


def with_detail(detail_net: FaceUNet, unmasked: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The detail stage on ``unmasked`` faces (N, 3, H, W) in [0, 1] (the first stage's composite)
    and their paint ``region`` (N, 1, H, W): inside the region, the face's detail finer than
    :data:`DETAIL_SIGMA` (the first stage's, with whatever mask texture it let through) is taken
    out, and the high-pass part of the detail layer ``detail_net`` draws from that smoothed face
    and the region is put in its place; values in [0, 1]."""
    smoothed = unmasked - region * high_pass(unmasked, DETAIL_SIGMA)
    _, detail = detail_net(torch.cat([smoothed, region.to(smoothed.dtype)], dim=1))
    return (smoothed + region * high_pass(detail.float(), DETAIL_SIGMA)).clamp(0, 1)


@functools.cache
def face_region() -> np.ndarray:
    """The template face's region (128x128, hard 0/1: jaw, brows and the space between) over which
    mask coverage is measured."""
    return (region_mask(template_landmarks(), "face", feather=0.0) > 0.5).astype(np.float32)


def mask_presence(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per aligned face, from mask probabilities (N, 128, 128) in [0, 1]: (coverage: the share of
    the face region with probability >= 0.5; probability that a mask is worn: the mean probability
    over the most mask-like ``MIN_COVERAGE`` of the face region). Both (N,) float32 in [0, 1]."""
    inside = np.asarray(probabilities, np.float32)[:, face_region() > 0]
    coverage = (inside >= 0.5).mean(axis=1)
    top = max(1, int(round(MIN_COVERAGE * inside.shape[1])))
    probability = np.sort(inside, axis=1)[:, -top:].mean(axis=1)
    return coverage.astype(np.float32), probability.astype(np.float32)


class Unmasker:
    """A loaded unmasking network. Faces are (N, 128, 128, 3) uint8 RGB aligned faces."""

    def __init__(
        self,
        model: FaceUNet,
        device: torch.device,
        meta: dict | None = None,
        fingerprint: str | None = None,
        detail: FaceUNet | None = None,
    ) -> None:
        self.model = model.eval().to(device)
        self.detail = detail.eval().to(device) if detail is not None else None  # the detail stage (with_detail)
        self.device = device
        self.meta = meta or {}
        self.fingerprint = fingerprint

    def _batches(self, faces: np.ndarray, batch_size: int, bf16: bool = False):
        """Per batch: (start, input (n, 3, 128, 128) in [0, 1], mask probabilities (n, 1, 128, 128), painted
        faces); ``bf16``: under bfloat16 autocast (CPU)."""
        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[1:] != (128, 128, 3) or faces.dtype != np.uint8:
            raise ValueError(f"the unmasker needs (N, 128, 128, 3) uint8 aligned faces, got {faces.shape} {faces.dtype}")
        for start in range(0, len(faces), batch_size):
            x = torch.from_numpy(np.array(faces[start : start + batch_size])).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits, painted = self.model(x.contiguous(memory_format=torch.channels_last))
            yield start, x, torch.sigmoid(logits.float()), painted.float()

    @torch.inference_mode()
    def __call__(self, faces: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """(unmasked faces (N, 128, 128, 3) uint8, mask probabilities (N, 128, 128) float32).

        Pixels outside the paint region come back unchanged, bit for bit."""
        out, probabilities = np.array(faces), np.zeros(np.shape(faces)[:3], np.float32)
        for start, x, mask, painted in self._batches(faces, batch_size):
            region = paint_region(mask)
            result = composite(x, painted, region)
            if self.detail is not None:
                result = with_detail(self.detail, result, region)
            result = (result.permute(0, 2, 3, 1) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
            inside = region[:, 0].cpu().numpy() > 0
            block = out[start : start + len(x)]
            block[inside] = result[inside]
            probabilities[start : start + len(x)] = mask[:, 0].cpu().numpy()
        return out, probabilities

    @torch.inference_mode()
    def mask_probabilities(self, faces: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """The mask probabilities (N, 128, 128) float32 alone (as :meth:`__call__`'s, without compositing;
        on a CPU with native bfloat16 computed in it: about twice as fast, and over the 2,000 held-out
        faces the same masks found and no bare face flagged, docs/CLASSIFY.md)."""
        probabilities = np.zeros(np.shape(faces)[:3], np.float32)
        bf16 = self.device.type == "cpu" and cpu_has_bf16()
        for start, x, mask, _ in self._batches(faces, batch_size, bf16):
            probabilities[start : start + len(x)] = mask[:, 0].cpu().numpy()
        return probabilities


def unmasker_from_file(path: str | Path, device: str = "auto", detail: str | Path | None = None) -> Unmasker:
    """Load unmasking weights (fp16 on disk, float32 in memory) [and a detail stage's]."""
    model, record = load_network(path, face_unet_from_config, "unmasking weights")
    detail_net = load_network(detail, face_unet_from_config, "unmasking detail weights")[0] if detail else None
    prints = fingerprint(path) + (f"+{fingerprint(detail)}" if detail else "")
    return Unmasker(model, resolve_device(device), record.get("meta"), prints, detail_net)


@functools.cache
def _shipped(device: str) -> Unmasker:
    path = require_shipped(SHIPPED_WEIGHTS, "unmasking weights", "faceflex train unmask")
    return unmasker_from_file(path, device)


def load_unmasker(path: str | Path | None = None, device: str = "auto", detail: str | Path | None = None) -> Unmasker:
    """The shipped unmasker (loaded once per process), or the weight file at ``path`` (default: the
    shipped one) with the detail stage at ``detail`` (default: none)."""
    if path is None and detail is None:
        return _shipped(device)
    base = path if path is not None else require_shipped(SHIPPED_WEIGHTS, "unmasking weights", "faceflex train unmask")
    return unmasker_from_file(base, device, detail)
