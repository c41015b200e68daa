"""How well masks come off: held-out CelebA-HQ faces with fixed synthetic masks, and real photos.

Held-out faces (ids 28001-30000): each gets the synthetic mask seeded by its cache row alone
(:func:`faceflex.train.unmask_trainer.masked_batch`), so every run and every model sees the same
masks. Per face: PSNR and SSIM of the unmasked face against the true one over the whole 128-px
face, PSNR inside the true mask only, the mask IoU (prediction >= 0.5 against alpha >= 0.5),
the mask's coverage, whether the mask was found (presence >= 0.5, as ``faceflex unmask`` decides),
identity kept (dlib descriptor distance < 0.6 between unmasked and true face, on the first
``identity_faces``), and the painted face's sharpness: its high-frequency energy inside the mask
(2 px in from its edge) over the true face's there (1.0: as detailed). The same faces bare (no
mask): whether a mask is wrongly found, and how much the face is changed (mean absolute
difference, 0-255). Real photos: each ``*.masked.jpg`` of a folder goes through ``faceflex
unmask``'s own step; found = a face with a mask found; timed per photo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from faceflex.face.identity import SAME_PERSON, face_descriptors
from faceflex.inference.unmasking import Unmasker, mask_presence
from faceflex.io.images import load_image, save_image
from faceflex.metrics import high_frequency_energy, mask_iou, masked_psnr, psnr, ssim
from faceflex.train.cache import CachedFaces

IDENTITY_FACES = 300


def held_out_figures(
    unmasker: Unmasker,
    cache: CachedFaces,
    rows: np.ndarray,
    identity_faces: int = 0,
    progress: Callable[[int], None] | None = None,
    frame: str = "all",
) -> dict[str, np.ndarray]:
    """Per-face figures (arrays) on cache ``rows`` with their fixed masks (see the module docstring),
    the faces in ``frame`` (:func:`faceflex.train.unmask_trainer.framed`)."""
    from faceflex.train.unmask_trainer import framed, masked_batch

    names = ("psnr", "psnr_inside", "ssim", "iou", "coverage", "found", "bare_flagged", "bare_change", "detail", "true_detail")
    names += ("identity_distance",)
    figures: dict[str, list] = {name: [] for name in names}
    for start in range(0, len(rows), 64):
        block = rows[start : start + 64]
        masked, alpha, truth = masked_batch(cache, block, [[int(r)] for r in block], frame=frame)
        masked_u8 = (masked.permute(0, 2, 3, 1) * 255 + 0.5).to(torch.uint8).numpy()
        unmasked, probabilities = unmasker(masked_u8)
        result = torch.from_numpy(unmasked).permute(0, 3, 1, 2).float() / 255
        figures["psnr"].append(psnr(result, truth).numpy())
        figures["psnr_inside"].append(masked_psnr(result, truth, alpha).numpy())
        figures["ssim"].append(ssim(result, truth).numpy())
        figures["iou"].append(mask_iou(torch.from_numpy(probabilities)[:, None], alpha).numpy())
        figures["coverage"].append(alpha.mean(dim=(1, 2, 3)).numpy())
        core = -torch.nn.functional.max_pool2d(-alpha, 5, stride=1, padding=2)  # 2 px inside the mask's edge
        figures["detail"].append(high_frequency_energy(result, core).numpy())
        figures["true_detail"].append(high_frequency_energy(truth, core).numpy())
        figures["found"].append(mask_presence(probabilities)[1] >= 0.5)
        bare = (truth.permute(0, 2, 3, 1) * 255 + 0.5).to(torch.uint8).numpy()
        bare_out, bare_probabilities = unmasker(bare)
        figures["bare_flagged"].append(mask_presence(bare_probabilities)[1] >= 0.5)
        figures["bare_change"].append(np.abs(bare_out.astype(np.float32) - bare).mean(axis=(1, 2, 3)))
        measured = [i for i in range(len(block)) if start + i < identity_faces]
        if measured:
            originals, landmarks = zip(*(framed(cache.faces[block[i]], cache.landmarks[block[i]], frame) for i in measured))
            descriptors = face_descriptors([*originals, *(unmasked[i] for i in measured)], list(landmarks) * 2)
            figures["identity_distance"].append(np.linalg.norm(descriptors[: len(measured)] - descriptors[len(measured) :], axis=1))
        if progress:
            progress(len(block))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in figures.items()}


def summary(figures: dict[str, np.ndarray]) -> dict:
    """Means of the per-face figures, and the identity-kept fraction."""
    distances = figures["identity_distance"]
    return {
        "faces": len(figures["psnr"]),
        "psnr_db": round(float(figures["psnr"].mean()), 3),
        "psnr_inside_mask_db": round(float(figures["psnr_inside"].mean()), 3),
        "ssim": round(float(figures["ssim"].mean()), 4),
        "mask_iou": round(float(figures["iou"].mean()), 4),
        "sharpness_inside_mask": round(float(figures["detail"].mean() / max(figures["true_detail"].mean(), 1e-12)), 4),
        "mask_coverage": round(float(figures["coverage"].mean()), 4),
        "masks_found": round(float(figures["found"].mean()), 4),
        "bare_faces_flagged": round(float(figures["bare_flagged"].mean()), 4),
        "bare_face_change": round(float(figures["bare_change"].mean()), 3),
        "identity_faces": len(distances),
        "identity_kept": round(float((distances < SAME_PERSON).mean()), 4) if len(distances) else None,
    }


def real_photos(unmasker: Unmasker, folder: Path, sheet_path: Path | None = None) -> dict:
    """The step on each ``*.masked.jpg`` in ``folder`` (detection as ``faceflex unmask``'s): found, coverage, seconds;
    with ``sheet_path``, a before / after / unmasked-original sheet (rows of 256-px tiles)."""
    from faceflex.pipeline.flow import run_step
    from faceflex.steps.unmask import DETECTION, UnmaskStep

    step = UnmaskStep(unmasker=unmasker)
    photos, tiles = [], []
    for path in sorted(folder.glob("*.masked.jpg")):
        rgb = load_image(path).rgb
        start = time.perf_counter()
        result = run_step(rgb, step, DETECTION)
        ((_, image),) = list(result.images())
        seconds = time.perf_counter() - start
        found = [r for r in result.records if r["mask_found"]]
        photos.append({"photo": path.name, "faces": len(result.records), "masks_found": len(found), "seconds": round(seconds, 3)})
        original = folder / path.name.replace(".masked.", ".unmasked.")
        row = [rgb, image] + ([load_image(original).rgb] if original.is_file() else [])
        tiles.append([_tile(p) for p in row] + [np.zeros((256, 256, 3), np.uint8)] * (3 - len(row)))
    if sheet_path is not None and tiles:
        save_image(np.concatenate([np.concatenate(r, axis=1) for r in tiles], axis=0), sheet_path)
    return {
        "photos": len(photos),
        "found": sum(p["masks_found"] > 0 for p in photos),
        "seconds_per_photo": round(float(np.mean([p["seconds"] for p in photos])), 3) if photos else None,
        "per_photo": photos,
    }


def _tile(rgb: np.ndarray, side: int = 256) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(rgb[..., :3])
    image.thumbnail((side, side))
    canvas = Image.new("RGB", (side, side))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return np.asarray(canvas)
