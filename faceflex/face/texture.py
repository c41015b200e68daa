"""A face's fine detail split into frequency bands, and scaled band by band (skin texture, wrinkles, stubble).

Conventions: images are (H, W) float32 luminance or (H, W, 3) RGB in 0-255 units; band ``k`` is the
difference of Gaussian blurs of widths ``sigmas[k - 1]`` and ``sigmas[k]`` (``sigmas[-1]`` = 0: the
image itself), so the bands, finest first, sum to the image minus its blur at ``sigmas[-1]``.
Widths are in pixels of the frame they are used in; at ``scale`` photo pixels per aligned pixel the
aligned frame's widths are multiplied by ``scale``. Blurs are normalised at the border (each output
is a weighted mean of the pixels inside the frame), so a band shows no edge at the frame's border.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from faceflex.metrics import chroma as chroma_of

BAND_SIGMAS = (0.7, 1.4, 2.8, 5.6)  # aligned 128-px pixels: pores and fine lines ... wrinkles and folds
MAX_LOG_GAIN = 1.5  # a band is scaled by at most exp(1.5), about 4.5x, either way (its energy about 20x)
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 luminance of an (H, W, 3) RGB image (a weighted sum, not a matrix product:
    OpenBLAS would spread it over threads whose spinning slows the single-threaded work after it)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb[..., 0] * LUMA[0] + rgb[..., 1] * LUMA[1] + rgb[..., 2] * LUMA[2]


def chroma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 chroma (Cb, Cr of BT.601, centred on 0, in the 0-255 scale of the input) of an
    (H, W, 3) RGB image; with :func:`luminance` it gives the image back."""
    rgb = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))
    return chroma_of(rgb.permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()


def _blur(image: torch.Tensor, sigma: float, factor: int, vertical: bool = True, horizontal: bool = True) -> torch.Tensor:
    """(1, 1, H, W) zero-padded Gaussian blur along the chosen axes, computed on a grid ``factor``
    times coarser (block means, the frame padded with zeros to whole blocks) and interpolated back."""
    height, width = image.shape[-2:]
    steps = (factor if vertical else 1, factor if horizontal else 1)
    if factor > 1:
        image = F.avg_pool2d(F.pad(image, (0, -width % steps[1], 0, -height % steps[0])), steps)
    width_here = sigma / factor
    radius = int(np.ceil(3.0 * width_here))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / width_here) ** 2)
    kernel /= kernel.sum()
    if horizontal:
        image = F.conv2d(image, kernel.view(1, 1, 1, -1), padding=(0, radius))
    if vertical:
        image = F.conv2d(image, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    if factor > 1:
        image = F.interpolate(image, scale_factor=steps, mode="bilinear", align_corners=False)[..., :height, :width]
    return image


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (H, W) ``values`` whose weights are renormalised at the border (float32).

    Blurs of 6 px and wider are computed on a grid ``sigma // 3`` times coarser (block means) and
    interpolated back bilinearly: at that width the result is smooth on the coarse grid's scale.
    The weight inside the frame is separable, so it is blurred as a column and a row.
    """
    values = np.asarray(values, dtype=np.float32)
    if sigma <= 0:
        return values
    height, width = values.shape
    factor = max(1, int(sigma // 3))
    blurred = _blur(torch.from_numpy(values)[None, None], sigma, factor)[0, 0]
    column = _blur(torch.ones(1, 1, height, 1), sigma, factor, horizontal=False)[0, 0]
    row = _blur(torch.ones(1, 1, 1, width), sigma, factor, vertical=False)[0, 0]
    return (blurred / (column * row).clamp_min(1e-6)).numpy()


def detail_bands(luma: np.ndarray, sigmas: tuple[float, ...] = BAND_SIGMAS) -> np.ndarray:
    """(len(sigmas), H, W) float32 difference-of-Gaussian bands of (H, W) ``luma``, finest first."""
    levels = [np.asarray(luma, dtype=np.float32)] + [smooth(luma, s) for s in sigmas]
    return np.stack([levels[k] - levels[k + 1] for k in range(len(sigmas))])


def rescaled_detail(bands: np.ndarray, log_gains: np.ndarray) -> np.ndarray:
    """The change (H, W) float32 that multiplies each of ``bands`` (B, H, W; :func:`detail_bands`)
    by ``exp(log_gains)`` (B, H, W, per pixel; clipped to +-:data:`MAX_LOG_GAIN`). 0 gains: no change."""
    gains = np.expm1(np.clip(np.asarray(log_gains, dtype=np.float32), -MAX_LOG_GAIN, MAX_LOG_GAIN))
    return np.einsum("khw,khw->hw", bands, gains).astype(np.float32)


@functools.cache
def _blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """(size, size) float32: row i holds the Gaussian weights (width ``sigma``, cut at 3 sigma) of
    pixel i's neighbours inside the frame, summing to 1 (the blur renormalised at the border)."""
    offsets = torch.arange(size, dtype=torch.float64)
    distance = offsets[:, None] - offsets[None, :]
    weights = torch.exp(-0.5 * (distance / sigma) ** 2) * (distance.abs() <= np.ceil(3.0 * sigma))
    return (weights / weights.sum(dim=1, keepdim=True)).float()


def high_pass(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images`` (..., H, W) minus their Gaussian blur of width ``sigma`` pixels (weights
    renormalised at the border, so the frame's edge adds no detail; computed as two matrix
    products): the detail finer than about ``2 sigma`` px; what it leaves out holds every colour
    and shading."""
    rows = _blur_matrix(images.shape[-2], float(sigma)).to(images.device, images.dtype)
    columns = _blur_matrix(images.shape[-1], float(sigma)).to(images.device, images.dtype)
    return images - rows @ images @ columns.T
