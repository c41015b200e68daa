"""Image quality metrics on (N, 3, H, W) tensors in [0, 1]: PSNR and SSIM, and the colour spaces they use."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (peak 1.0)."""
    mse = (images.float() - references.float()).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(images: torch.Tensor, references: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
    K1 = 0.01, K2 = 0.03), averaged over channels and valid window positions."""
    x, y = images.float(), references.float()
    channels = x.shape[1]
    coords = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window, window).contiguous()
    blur = lambda t: F.conv2d(t, kernel, groups=channels)  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return score.flatten(1).mean(dim=1)


def chroma(images: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) chroma (Cb, Cr of BT.601, centred on 0, in the input's scale) of (N, 3, H, W) RGB
    images: the tensor form of :func:`faceflex.face.texture.chroma`."""
    r, g, b = images.float().unbind(dim=1)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([(b - luma) * 0.564, (r - luma) * 0.713], dim=1)


def high_frequency_energy(images: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared response of a 3x3 Laplacian on the luma of (N, 3, H, W) images in [0, 1], per
    image: how much fine detail (edges, texture) a picture holds. A reconstruction's value over its
    original's is its sharpness relative to the original (1.0: as sharp). With ``weight``
    (N, 1, H, W), only over the pixels where it is >= 0.5 whose 3x3 neighbourhood lies in the image."""
    luma = (images.float() * torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=images.device).view(1, 1, 3, 3)
    response = F.conv2d(luma, kernel).pow(2)
    if weight is None:
        return response.flatten(1).mean(dim=1)
    inside = (weight[..., 1:-1, 1:-1] >= 0.5).float()
    return (response * inside).sum(dim=(1, 2, 3)) / inside.sum(dim=(1, 2, 3)).clamp(min=1)


def laplacian_pyramid_l1(images: torch.Tensor, references: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Per image, the L1 distance between the Laplacian pyramids (band-pass detail at ``levels``
    scales, 2x apart, plus the coarsest residual) of (N, C, H, W) images, summed over each band's
    values: differences in fine detail weigh as much as in colour (an L2 loss lets blur win)."""
    x, y = images.float(), references.float()
    total = torch.zeros(x.shape[0], device=x.device)
    for _ in range(levels):
        x_down, y_down = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        x_band = x - F.interpolate(x_down, scale_factor=2, mode="bilinear", align_corners=False)
        y_band = y - F.interpolate(y_down, scale_factor=2, mode="bilinear", align_corners=False)
        total = total + (x_band - y_band).abs().flatten(1).sum(dim=1)
        x, y = x_down, y_down
    return total + (x - y).abs().flatten(1).sum(dim=1)


def mask_iou(probabilities: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Per-face IoU of (probability >= 0.5) and (alpha >= 0.5)."""
    p, a = probabilities >= 0.5, alpha >= 0.5
    inter = (p & a).sum(dim=(1, 2, 3)).float()
    union = (p | a).sum(dim=(1, 2, 3)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def masked_psnr(images: torch.Tensor, references: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-face PSNR (dB) over the pixels where ``weight`` (N, 1, H, W) >= 0.5."""
    inside = (weight >= 0.5).float()
    se = ((images - references) ** 2 * inside).sum(dim=(1, 2, 3)) / (3 * inside.sum(dim=(1, 2, 3)).clamp(min=1))
    return 10 * torch.log10(1.0 / se.clamp(min=1e-10))
