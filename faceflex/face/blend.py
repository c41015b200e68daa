"""Paste an aligned 128x128 result back into the full-resolution photo through a soft mask."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from faceflex.face.align import compose_affine, invert_affine, transform_points, transform_scale, warp_image, warp_maps
from faceflex.face.texture import BAND_SIGMAS, chroma, detail_bands, high_pass, luminance, rescaled_detail, smooth

T = TypeVar("T")


class PasteCache:
    """What pasting computes that several outputs of one photo share, kept between them.

    A step that scales one change by each output's strength (``Layer.amount``) hands every output
    the same arrays: they are warped into the photo once. What is read from the photo itself (its
    detail bands) is kept only while the image pasted on is ``photo``, the input photo
    the cache was made for (an image made by earlier layers is new in each output). Keys are the ids
    of the objects a value was made from, and the cache holds those objects, so an id cannot be
    reused while its value is kept. At most ``max_bytes`` of values and of the objects held for
    them (numpy arrays counted), the least recently used dropped first; an entry larger is not kept.
    """

    def __init__(self, photo: np.ndarray, max_bytes: int = 256 << 20) -> None:
        self.photo = photo
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[tuple, object, int]] = OrderedDict()
        self._bytes = 0

    def get(self, sources: tuple, extra: tuple, make: Callable[[], T]) -> T:
        """The value ``make()`` made from ``sources`` (objects, matched by identity) and ``extra`` (values)."""
        key = (*map(id, sources), *extra)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key][1]  # type: ignore[return-value]
        value = make()
        size = _nbytes(value) + _nbytes(sources)
        if size <= self.max_bytes:
            self._entries[key] = (sources, value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
        return value


def _nbytes(value: object) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 0


def _cached(cache: PasteCache | None, sources: tuple, extra: tuple, make: Callable[[], T]) -> T:
    return make() if cache is None else cache.get(sources, extra, make)


def _read_from(cache: PasteCache | None, photo: np.ndarray) -> PasteCache | None:
    """The cache for what is read from ``photo``: only the input photo's is kept."""
    return cache if cache is not None and photo is cache.photo else None


def paste_region(matrix: np.ndarray, mask: np.ndarray, photo_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1, exclusive end) in the photo of the mask's support, or None.

    ``matrix`` maps photo -> aligned; ``photo_size`` is (width, height). Clipped to the photo.
    """
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        return None
    corners = np.array(
        [[xs.min() - 1, ys.min() - 1], [xs.max() + 1, ys.min() - 1], [xs.min() - 1, ys.max() + 1], [xs.max() + 1, ys.max() + 1]],
        dtype=np.float64,
    )
    photo = transform_points(corners, invert_affine(matrix))
    width, height = photo_size
    x0, y0 = np.floor(photo.min(axis=0)).astype(int)
    x1, y1 = np.ceil(photo.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def paste_back(photo: np.ndarray, aligned: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend ``aligned`` (S x S x 3 uint8) into a copy of ``photo`` where ``mask`` (S x S) is positive.

    ``matrix`` is the photo -> aligned transform the face was aligned with. Only the face's region
    of interest is warped; pixels where the warped mask is 0 are returned unchanged, bit for bit.
    """
    result = photo.copy()
    region = paste_region(matrix, mask, (photo.shape[1], photo.shape[0]))
    if region is None:
        return result
    x0, y0, x1, y1 = region
    # aligned -> region-of-interest coordinates
    to_roi = compose_affine(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), invert_affine(matrix))
    size = (x1 - x0, y1 - y0)
    mask8 = np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)
    rgba = np.dstack([aligned, mask8])  # one warp carries the face and its mask
    face = Image.fromarray(warp_image(rgba, to_roi, size), "RGBA")
    roi = Image.fromarray(np.ascontiguousarray(result[y0:y1, x0:x1]), "RGB")
    roi.paste(face, (0, 0), face)  # alpha blend at C speed; where alpha is 0 the photo is kept
    result[y0:y1, x0:x1] = np.asarray(roi)
    return result


def _low_pass(values: np.ndarray, factor: int) -> np.ndarray:
    """``values`` (h, w) float32 averaged over ``factor``-pixel blocks and resized back (bilinear)."""
    h, w = values.shape
    small = Image.fromarray(values, "F").resize((max(1, w // factor), max(1, h // factor)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BILINEAR), np.float32)


def paste_back_with_grain(photo: np.ndarray, aligned: np.ndarray, matrix: np.ndarray, mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """:func:`paste_back`, then, where the aligned face was enlarged (more than 1.5 photo pixels per
    aligned pixel), grain as fine as the photo's: seeded noise with the detail a painted 128-px
    region lacks (finer than one aligned pixel), scaled per channel to the photo's own fine detail
    just around the region, added through the mask. A painted patch then has the photo's texture
    instead of looking smooth; outside the mask nothing changes. Deterministic for a given ``seed``."""
    result = paste_back(photo, aligned, matrix, mask)
    scale = 1.0 / transform_scale(matrix)  # photo pixels per aligned pixel
    region = paste_region(matrix, mask, (photo.shape[1], photo.shape[0]))
    if scale < 1.5 or region is None:
        return result
    x0, y0, x1, y1 = region
    margin = int(round(4 * scale))  # the photo just around the region shows how fine its grain is
    x0, y0, x1, y1 = max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, photo.shape[1]), min(y1 + margin, photo.shape[0])
    to_roi = compose_affine(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), invert_affine(matrix))
    alpha = warp_image(np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8), to_roi, (x1 - x0, y1 - y0)).astype(np.float32) / 255
    factor = max(2, int(round(scale)))
    around = alpha == 0
    if around.sum() < 64:
        return result
    roi = photo[y0:y1, x0:x1].astype(np.float32)
    detail = np.stack([roi[..., c] - _low_pass(np.ascontiguousarray(roi[..., c]), factor) for c in range(3)], axis=-1)
    strength = detail[around].std(axis=0)
    noise = np.random.default_rng(seed).standard_normal(alpha.shape).astype(np.float32)
    noise -= _low_pass(noise, factor)
    noise /= max(float(noise.std()), 1e-6)
    grainy = result[y0:y1, x0:x1].astype(np.float32) + alpha[..., None] * noise[..., None] * strength
    result[y0:y1, x0:x1] = np.where(alpha[..., None] > 0, np.clip(np.rint(grainy), 0, 255), result[y0:y1, x0:x1]).astype(np.uint8)
    return result


def paste_over(photo: np.ndarray, patch: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    """A copy of ``photo`` (RGB) with the RGBA ``patch`` (h, w, 4 uint8, straight alpha) composited
    with its top-left pixel at ``origin`` (x0, y0); the patch must lie inside the photo. Where the
    alpha is 0 the photo is unchanged, bit for bit."""
    x0, y0 = origin
    h, w = patch.shape[:2]
    if x0 < 0 or y0 < 0 or x0 + w > photo.shape[1] or y0 + h > photo.shape[0]:
        raise ValueError(f"a {w}x{h} patch at {origin} does not fit a {photo.shape[1]}x{photo.shape[0]} photo")
    result = photo.copy()
    roi = Image.fromarray(np.ascontiguousarray(result[y0 : y0 + h, x0 : x0 + w]), "RGB")
    over = Image.fromarray(np.ascontiguousarray(patch), "RGBA")
    roi.paste(over, (0, 0), over)
    result[y0 : y0 + h, x0 : x0 + w] = np.asarray(roi)
    return result


def _maps_in_photo(maps: np.ndarray, matrix: np.ndarray, mask: np.ndarray, photo_size: tuple[int, int], unweighted: int = 0):
    """Aligned-frame ``maps`` (K, S, S) weighted by ``mask`` (S, S) (all but the last ``unweighted``)
    and warped into the photo's box around the mask: (box (x0, y0, x1, y1), (K, y1 - y0, x1 - x0)
    float32), or None for an empty mask."""
    region = paste_region(matrix, mask, photo_size)
    if region is None:
        return None
    x0, y0, x1, y1 = region
    to_roi = compose_affine(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), invert_affine(matrix))
    maps = np.asarray(maps, dtype=np.float32)
    weighted = maps * np.asarray(mask, dtype=np.float32)[None]
    if unweighted:
        weighted[-unweighted:] = maps[-unweighted:]
    return region, warp_maps(weighted, to_roi, (x1 - x0, y1 - y0))


def paste_delta(
    photo: np.ndarray,
    delta: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray,
    amount: float = 1.0,
    cache: PasteCache | None = None,
    shading: np.ndarray | None = None,
) -> np.ndarray:
    """Add an aligned-frame change ``amount`` x ``delta`` (S x S x 3 float, in 0-255 units), weighted by ``mask``, to a copy of ``photo``.

    The photo's own pixels carry everything the change leaves alone (texture, lighting, identity);
    where the weighted change is 0 the photo is returned unchanged, bit for bit. ``shading`` (S, S)
    in [0, 1]: where it is 1 the change, made for skin, is scaled at each photo pixel by its
    luminance over the skin's (the median luminance where the mask is at least 0.5), at most 1, as a
    ratio image would apply it, so that darker things there (a fringe, a hat) change in proportion
    and not by the skin's amount; where it is 0 the change is whole. ``cache``: the change placed in
    the photo is kept for other outputs with the same ``delta``, ``mask`` and ``shading`` arrays.
    """
    result = photo.copy()
    if amount == 0 or not np.any(delta):
        return result
    size = (photo.shape[1], photo.shape[0])
    key = (*np.ravel(matrix), *size)
    channels = np.moveaxis(np.asarray(delta, np.float32), -1, 0)
    if shading is not None:  # carried into the photo beside the change
        channels = np.concatenate([channels, np.asarray(shading, np.float32)[None]])
    extra = int(shading is not None)

    def place():  # the change channel-last, and the shading weight, in the photo's box around the mask
        found = _maps_in_photo(channels, matrix, mask, size, unweighted=extra)
        return None if found is None else (found[0], np.ascontiguousarray(np.moveaxis(found[1][:3], 0, -1)), found[1][3] if extra else None)

    placed = _cached(cache, (delta, mask, shading), ("delta", *key), place)
    if placed is None:
        return result
    (x0, y0, x1, y1), change, shade = placed
    roi = result[y0:y1, x0:x1].astype(np.float32)
    if shade is not None:
        core = _cached(cache, (mask,), ("core", *key), lambda: _core(matrix, mask, (x0, y0, x1, y1)))
        roi += change * ((1.0 - shade + shade * _shading(roi, core)) * np.float32(amount))[..., None]
    else:
        roi += change * np.float32(amount)
    result[y0:y1, x0:x1] = np.clip(np.rint(roi, out=roi), 0, 255, out=roi)  # whole numbers in 0-255: cast exactly
    return result


def _core(matrix: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) bool over the photo's ``box``: where the aligned ``mask`` (S, S) is at least 0.5."""
    x0, y0, x1, y1 = box
    to_roi = compose_affine(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), invert_affine(matrix))
    return warp_image((np.asarray(mask) >= 0.5).astype(np.uint8) * 255, to_roi, (x1 - x0, y1 - y0)) >= 128


def _shading(roi: np.ndarray, core: np.ndarray) -> np.ndarray:
    """(h, w) float32 weight over ``roi``: luminance over the median luminance where ``core`` (h, w
    bool, :func:`_core`) is True, at most 1."""
    luma = luminance(roi)
    reference = float(np.median(luma[core])) if core.any() else float(np.median(luma))
    return np.clip(luma / max(reference, 1.0), 0.0, 1.0)


def paste_detail(
    photo: np.ndarray, log_gains: np.ndarray, matrix: np.ndarray, mask: np.ndarray, amount: float = 1.0, cache: PasteCache | None = None
) -> np.ndarray:
    """A copy of ``photo`` whose own fine detail is scaled band by band: ``amount`` x ``log_gains``
    (B, S, S) in the aligned frame give, per detail band of :data:`faceflex.face.texture.BAND_SIGMAS`
    (aligned pixels; in the photo that many times its pixels per aligned pixel), the log of the factor
    its luminance detail is multiplied by (clipped to :data:`~faceflex.face.texture.MAX_LOG_GAIN`),
    faded by ``mask`` (S, S). The change is added to all three channels (detail without colour). Where
    the mask is 0 the photo is unchanged, bit for bit. ``cache``: the gains placed in the photo and
    the photo's detail bands there are kept for other outputs of the same arrays.
    """
    result = photo.copy()
    if amount == 0 or not np.any(log_gains):
        return result
    size = (photo.shape[1], photo.shape[0])
    placed = _cached(cache, (log_gains, mask), ("gains", *np.ravel(matrix), *size), lambda: _maps_in_photo(log_gains, matrix, mask, size))
    if placed is None:
        return result
    (x0, y0, x1, y1), gains = placed
    roi = result[y0:y1, x0:x1].astype(np.float32)
    scale = 1.0 / transform_scale(matrix)
    widths = tuple(s * scale for s in BAND_SIGMAS)
    bands = _cached(_read_from(cache, photo), (photo,), ("bands", x0, y0, x1, y1, scale), lambda: detail_bands(luminance(roi), widths))
    roi += rescaled_detail(bands, gains * np.float32(amount))[..., None]
    result[y0:y1, x0:x1] = np.clip(np.rint(roi, out=roi), 0, 255, out=roi)  # whole numbers in 0-255: cast exactly
    return result


def warp_weight(points: np.ndarray, box: tuple[int, int, int, int], inner: float = 1.1, outer: float = 1.3) -> np.ndarray:
    """Soft elliptical weight over ``box`` (x0, y0, x1, y1): 1 within ``inner`` x the points' half-extent
    of their centre, falling smoothly to exactly 0 at ``outer`` x (float32, (y1 - y0, x1 - x0))."""
    x0, y0, x1, y1 = box
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    radii = np.maximum((points.max(axis=0) - points.min(axis=0)) / 2, 1.0)
    xs, ys = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1))
    rho = np.sqrt(((xs - centre[0]) / radii[0]) ** 2 + ((ys - centre[1]) / radii[1]) ** 2)
    t = np.clip((outer - rho) / (outer - inner), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no visible edge


def paste_warp(photo: np.ndarray, sources: np.ndarray, targets: np.ndarray, cache: PasteCache | None = None) -> np.ndarray:
    """A copy of ``photo`` with its own pixels moved so that the points at ``sources`` (N, 2, photo
    pixels) appear at ``targets``: a thin-plate spline anchored on a ring around the points, its
    moves faded out by :func:`warp_weight` (no cross-fade of two images: no ghosted edges), so
    pixels beyond 1.3 x the points' extent stay bit for bit.
    ``cache``: the fade is kept for other outputs with the same ``sources``."""
    from faceflex.face.warp import anchor_ring, warp_points

    sources, targets = np.asarray(sources, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    result = photo.copy()
    if np.allclose(sources, targets):
        return result
    anchors = anchor_ring(sources, scale=1.35)
    height, width = photo.shape[:2]
    x0, y0 = np.floor(anchors.min(axis=0)).astype(int)
    x1, y1 = np.ceil(anchors.max(axis=0)).astype(int) + 1
    box = (max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height))
    if box[0] >= box[2] or box[1] >= box[3]:
        return result
    weight, moved = _cached(cache, (), ("warp weight", sources.tobytes(), *box), lambda: _fade(sources, box))
    warped = warp_points(photo, sources, targets, anchors, box, fade=weight)
    np.clip(np.rint(warped, out=warped), 0, 255, out=warped)  # whole numbers in 0-255: cast exactly
    np.copyto(result[box[1] : box[3], box[0] : box[2]], warped, casting="unsafe", where=moved)
    return result


def _fade(sources: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`warp_weight` over ``box`` and where it is positive ((h, w, 1) bool)."""
    weight = warp_weight(sources, box)
    return weight, (weight > 0)[..., None]


def harmonic_fill(values: np.ndarray, fixed: np.ndarray, iterations: int = 60) -> np.ndarray:
    """The smooth (harmonic: Laplacian 0) field that equals ``values`` where ``fixed`` is True.

    ``values`` (H, W, C) float32, ``fixed`` (H, W) bool, H and W divisible by 2 down to 16 px (the
    aligned 128-px frame). Solved coarse to fine: a half-size solution starts each level, then
    ``iterations`` Jacobi sweeps (4-neighbour average, edges replicated).
    """
    height, width = fixed.shape
    values = np.asarray(values, dtype=np.float32)
    if min(height, width) > 16 and height % 2 == 0 and width % 2 == 0:
        weights = fixed.reshape(height // 2, 2, width // 2, 2).sum(axis=(1, 3))
        sums = np.where(fixed[..., None], values, 0).reshape(height // 2, 2, width // 2, 2, -1).sum(axis=(1, 3))
        coarse = harmonic_fill(sums / np.maximum(weights, 1)[..., None], weights > 0, iterations)
        guess = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    else:
        guess = np.broadcast_to(values[fixed].mean(axis=0) if fixed.any() else 0.0, values.shape)
    field = np.where(fixed[..., None], values, guess)
    padded = np.empty((height + 2, width + 2, field.shape[2]), dtype=field.dtype)  # edges replicated, corners unused
    for _ in range(iterations):
        padded[1:-1, 1:-1] = field
        padded[0, 1:-1], padded[-1, 1:-1], padded[1:-1, 0], padded[1:-1, -1] = field[0], field[-1], field[:, 0], field[:, -1]
        mean = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
        field = np.where(fixed[..., None], values, mean)
    return field


def _recoloured(painted: np.ndarray, change: np.ndarray, region: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """``painted`` (S, S, 3 uint8) with, inside ``region`` (S, S bool), ``change`` (S, S, 2: Cb, Cr
    of BT.601, 0-255 scale) added to its chroma and its luminance times ``gain``; outside the region
    unchanged."""
    y = luminance(painted)
    y = np.where(region, y * gain, y)
    own = chroma(painted)
    cb, cr = np.where(region[..., None], own + change, own).transpose(2, 0, 1)
    red, blue = y + cr / 0.713, y + cb / 0.564
    green = (y - 0.299 * red - 0.114 * blue) / 0.587
    return np.clip(np.rint(np.dstack([red, green, blue])), 0, 255).astype(np.uint8)


def matched_chroma(painted: np.ndarray, photo: np.ndarray, region: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """``painted`` (S, S, 3 uint8) whose colour, inside ``region`` (S, S bool), takes the tone of
    ``photo`` around the region: in YCbCr (BT.601), the painting's luminance and the fine part of its
    chroma are kept, and the coarse part of its chroma (Gaussian ``sigma`` px) is replaced by the
    membrane (harmonic fill) of the photo's chroma from outside the region. A painting tinted by what
    it saw (skin painted yellow beside lenses tinted yellow) comes out in the person's skin tone;
    outside the region it is unchanged. S must halve down to 16 px (the 128-px aligned frame)."""
    if not region.any():
        return painted
    own = chroma(painted)
    coarse = np.dstack([smooth(own[..., k], sigma) for k in range(2)])
    return _recoloured(painted, harmonic_fill(chroma(photo), ~region) - coarse, region)


def kept_tone(
    painted: np.ndarray, original: np.ndarray, region: np.ndarray, skin: np.ndarray | None = None, sigma: float = 4.0
) -> np.ndarray:
    """``painted`` (S, S, 3 uint8) in the skin tone of ``original`` (S, S, 3 uint8, the same frame):
    inside ``region`` (S, S bool) the painting's chroma coarser than a Gaussian of ``sigma`` px
    becomes the original's (skin colour, blush, the hair's colour), and with ``skin`` (S, S bool) its
    luminance is scaled (one gain, 0.5-2) so that its mean over the skin is the original's (how
    light the skin is); the painting's shading (shape) and finer chroma (lips, eyes, strands) stay
    its own; outside the region unchanged. Only colour blurred over ``sigma`` px and the skin's
    mean lightness pass from the original."""
    if not region.any():
        return painted
    gain = 1.0
    if skin is not None and (skin & region).any():
        gain = float(np.clip(luminance(original)[skin].mean() / max(float(luminance(painted)[skin].mean()), 1.0), 0.5, 2.0))
    difference = torch.from_numpy(np.ascontiguousarray((chroma(original) - chroma(painted)).transpose(2, 0, 1)))
    coarse = (difference - high_pass(difference, sigma)).numpy().transpose(1, 2, 0)  # the blur of the chroma difference
    return _recoloured(painted, coarse, region, gain)


def seamless_change(delta: np.ndarray, mask: np.ndarray, core: float = 0.5) -> np.ndarray:
    """``delta`` (S, S, 3) minus the smooth field that matches it where the mask fades out, so that
    the change reaches the mask's edge without a tone step (halo), local detail kept.

    The membrane of seamless cloning, with its boundary inside the feather: ``h`` is harmonic where
    ``mask >= core`` and equals ``delta`` where the mask is below it (the feathered rim, on the
    face itself, so unrelated changes outside the face never enter). Returned: ``delta - h``,
    0 on the rim. A change uniform over the face (a tint) vanishes; its local variations stay.
    """
    inner = mask >= core
    if not inner.any():
        return np.zeros_like(delta, dtype=np.float32)
    smooth = harmonic_fill(delta, ~inner)
    return np.where(inner[..., None], delta - smooth, 0.0).astype(np.float32)
