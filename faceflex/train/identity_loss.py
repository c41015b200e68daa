"""A loss that reads painted faces as dlib's face recognition network does: whose face, and its detail.

Painting networks trained with pixel losses (L1, SSIM) and a small patch critic paint soft faces:
the average of the faces that fit the surroundings. dlib's face descriptor network
(:mod:`faceflex.models.face_descriptor_net`, trained by dlib's author to tell millions of people
apart, frozen here) gives two terms that pixel losses lack, the identity loss and the perceptual
loss of face-swapping and super-resolution work:

- **identity**: 1 - cosine similarity between the descriptors of the painted face and the true
  face, so the network paints *someone* (the person its identity code describes), not an average;
- **perceptual**: the mean absolute difference of the network's activations after two early
  residual blocks (38 and 19 px, 32 and 64 channels), each over its mean magnitude on the true
  faces, so edges, eyes and mouth corners are where the true face has them, sharply.

Faces are read the way dlib reads them: its 150-px chip, cut differentiably from the 128-px aligned
image by each face's chip map (:func:`faceflex.face.identity.chip_matrix`, fitted on its landmarks).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from faceflex.models.face_descriptor_net import CHIP_SIZE

TAPS = (2, 6)  # after the first stage (38 px, 32 channels) and the second (19 px, 64 channels)


def chip_grid(matrices: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(N, 150, 150, 2) ``grid_sample`` grid (align_corners=True) that reads dlib's chip from images
    of ``size`` (height, width) by the chip -> image maps ``matrices`` (N, 2, 3)."""
    q = np.stack(np.meshgrid(np.arange(CHIP_SIZE), np.arange(CHIP_SIZE)), axis=-1).reshape(-1, 2).astype(np.float64)
    points = np.einsum("nij,pj->npi", np.asarray(matrices)[:, :, :2], q) + np.asarray(matrices)[:, None, :, 2]
    height, width = size
    normalised = np.stack([points[..., 0] / (width - 1), points[..., 1] / (height - 1)], axis=-1) * 2 - 1
    return torch.from_numpy(normalised.reshape(len(matrices), CHIP_SIZE, CHIP_SIZE, 2).astype(np.float32))


def jittered(matrices: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Chip -> image maps (N, 2, 3) each composed with a random similarity of the chip about its
    centre: a shift of up to ``amount`` of the chip's size, a scale within 1 +- ``amount``, a turn of up
    to ``amount`` radians. A painting network then finds no fixed chip border to paint against (with
    a fixed chip, a strong identity loss drew a band along the chip's top edge across the forehead)."""
    count = len(matrices)
    centre = np.full(2, (CHIP_SIZE - 1) / 2)
    scale = 1 + rng.uniform(-amount, amount, count)
    angle = rng.uniform(-amount, amount, count)
    shift = rng.uniform(-amount, amount, (count, 2)) * CHIP_SIZE
    turn = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], 1) * scale[:, None, None]
    linear = np.einsum("nij,njk->nik", matrices[:, :, :2], turn)  # chip q -> turn (q - c) + c + shift -> image
    offset = np.einsum("nij,nj->ni", matrices[:, :, :2], centre + shift - np.einsum("nij,j->ni", turn, centre)) + matrices[:, :, 2]
    return np.concatenate([linear, offset[:, :, None]], axis=2)


def chip_grid_of(
    landmarks: np.ndarray,
    size: tuple[int, int],
    flips: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    jitter: float = 0.0,
) -> torch.Tensor:
    """:func:`chip_grid` of faces with 68 ``landmarks`` (N, 68, 2) in images of ``size`` (height,
    width), the chosen ones (``flips``) shown mirrored: their chip is read mirrored back, so a painted
    and a true face are read alike either way; with ``jitter`` > 0, each chip moved at random
    (:func:`jittered`, drawn from ``rng``)."""
    from faceflex.face.identity import chip_matrix

    matrices = np.stack([chip_matrix(np.asarray(points, np.float64)) for points in landmarks])
    if flips is not None:
        mirror = np.array([[-1.0, 0.0], [0.0, 1.0]])
        matrices[flips, :, :2] = np.einsum("ij,njk->nik", mirror, matrices[flips, :, :2])
        matrices[flips, :, 2] = matrices[flips, :, 2] @ mirror.T + [size[1] - 1.0, 0.0]
    if jitter:
        matrices = jittered(matrices, rng, jitter)
    return chip_grid(matrices, size)


class IdentityLoss(torch.nn.Module):
    """(identity, perceptual) losses of painted faces against true ones; the network is frozen."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__()
        from faceflex.face.dlib_models import FACE_DESCRIPTOR, model_path
        from faceflex.models.face_descriptor_net import load_face_descriptor_net

        # its own copy: the one `face_descriptors` shares may have been made under inference mode
        self.net = load_face_descriptor_net(model_path(FACE_DESCRIPTOR)).to(device)
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)

    def forward(
        self, painted: torch.Tensor, truth: torch.Tensor, grid: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``painted`` and ``truth`` (N, 3, H, W) in [0, 1]; ``grid`` from :func:`chip_grid`;
        ``weights`` (N,) how much each face counts (0: not at all). Returns the weighted means."""
        grid = grid.to(painted.device)
        chips = F.grid_sample(torch.cat([painted, truth]).float() * 255.0, torch.cat([grid, grid]), align_corners=True)
        chips = chips.contiguous(memory_format=torch.channels_last)
        count = len(painted)
        with torch.no_grad():
            true_taps, true_descriptors = self.net.features(chips[count:], TAPS)
        taps, descriptors = self.net.features(chips[:count], TAPS)
        weights = weights.float().to(painted.device)
        total = weights.sum().clamp_min(1e-6)
        identity = 1 - F.cosine_similarity(descriptors.float(), true_descriptors.float(), dim=1)
        perceptual = sum(
            (a.float() - b.float()).abs().mean(dim=(1, 2, 3)) / b.float().abs().mean().clamp_min(1e-6) for a, b in zip(taps, true_taps)
        ) / len(TAPS)
        return (identity * weights).sum() / total, (perceptual * weights).sum() / total
