"""Reconstruction quality and speed of the face VAE on the held-out CelebA-HQ faces."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from faceflex.inference.vae_codec import VAE
from faceflex.io.images import save_image
from faceflex.metrics import psnr, ssim
from faceflex.train.cache import CachedFaces


def evaluate_reconstruction(vae: VAE, cache: CachedFaces, limit: int | None = None, grid_path: Path | None = None) -> dict:
    """Mean PSNR / SSIM over the held-out faces, a side-by-side grid, and encode+decode timings."""
    rows = cache.split("test")[:limit]
    psnrs, ssims = [], []
    for start in range(0, len(rows), 128):
        faces = np.asarray(cache.faces[rows[start : start + 128]])
        recon = vae.reconstruct(faces)
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(recon).permute(0, 3, 1, 2).float() / 255
        psnrs.append(psnr(y, x))
        ssims.append(ssim(y, x))
    psnr_all, ssim_all = torch.cat(psnrs), torch.cat(ssims)
    report = {
        "held_out_faces": len(rows),
        "psnr_mean_db": round(float(psnr_all.mean()), 3),
        "psnr_median_db": round(float(psnr_all.median()), 3),
        "ssim_mean": round(float(ssim_all.mean()), 4),
        **timing(vae, np.asarray(cache.faces[rows[:32]])),
    }
    if grid_path is not None:
        faces = np.asarray(cache.faces[rows[:16]])
        recon = vae.reconstruct(faces)
        grid = np.concatenate([np.concatenate(list(faces), axis=1), np.concatenate(list(recon), axis=1)], axis=0)
        report["grid"] = str(save_image(grid, grid_path))
    return report


def timing(vae: VAE, faces: np.ndarray, repeats: int = 5) -> dict:
    """Median encode+decode milliseconds per face at batch 1 and batch 32."""
    result = {}
    for batch in (1, 32):
        chunk = faces[:batch]
        vae.reconstruct(chunk)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            vae.reconstruct(chunk)
            times.append(time.perf_counter() - start)
        result[f"ms_per_face_batch{batch}"] = round(float(np.median(times)) * 1000 / len(chunk), 2)
    return result
