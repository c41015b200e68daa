"""Reconstruction quality and speed of the face VAE on the held-out CelebA-HQ faces."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from faceflex.face.identity import SAME_PERSON, descriptor_distance, face_descriptor, face_descriptors
from faceflex.inference.vae_codec import VAE
from faceflex.io.images import save_image
from faceflex.metrics import high_frequency_energy, psnr, ssim
from faceflex.train.cache import CachedFaces

IDENTITY_FACES = 300  # faces whose identity is checked (dlib's descriptor costs ~15 ms a face)


def evaluate_reconstruction(
    vae: VAE, cache: CachedFaces, limit: int | None = None, grid_path: Path | None = None, identity_faces: int = IDENTITY_FACES
) -> dict:
    """On the held-out faces: mean PSNR / SSIM; sharpness (high-frequency energy of the
    reconstructions over the originals'); identity kept (dlib descriptor distance between face and
    reconstruction < 0.6, on the first ``identity_faces``); the same for the demo face; a grid;
    encode+decode timings."""
    rows = cache.split("test")[:limit]
    psnrs, ssims, energy, energy_originals, distances = [], [], [], [], []
    for start in range(0, len(rows), 128):
        chunk = rows[start : start + 128]
        faces = np.asarray(cache.faces[chunk])
        recon = vae.reconstruct(faces)
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(recon).permute(0, 3, 1, 2).float() / 255
        psnrs.append(psnr(y, x))
        ssims.append(ssim(y, x))
        energy.append(high_frequency_energy(y))
        energy_originals.append(high_frequency_energy(x))
        measured = [i for i in range(len(chunk)) if start + i < identity_faces]
        if measured:
            landmarks = [cache.landmarks[chunk[i]] for i in measured]
            descriptors = face_descriptors([faces[i] for i in measured] + [recon[i] for i in measured], landmarks * 2)
            distances.extend(np.linalg.norm(descriptors[: len(measured)] - descriptors[len(measured) :], axis=1).tolist())
    psnr_all, ssim_all = torch.cat(psnrs), torch.cat(ssims)
    distances = np.array(distances)
    report = {
        "held_out_faces": len(rows),
        "psnr_mean_db": round(float(psnr_all.mean()), 3),
        "psnr_median_db": round(float(psnr_all.median()), 3),
        "ssim_mean": round(float(ssim_all.mean()), 4),
        "sharpness_vs_originals": round(float(torch.cat(energy).mean() / torch.cat(energy_originals).mean()), 4),
        "identity_faces": len(distances),
        "identity_kept": round(float((distances < SAME_PERSON).mean()), 4) if len(distances) else None,
        "identity_distance_median": round(float(np.median(distances)), 4) if len(distances) else None,
        "demo_face": demo_face(vae),
        **timing(vae, np.asarray(cache.faces[rows[:32]])),
    }
    if grid_path is not None:
        faces = np.asarray(cache.faces[rows[:16]])
        recon = vae.reconstruct(faces)
        grid = np.concatenate([np.concatenate(list(faces), axis=1), np.concatenate(list(recon), axis=1)], axis=0)
        report["grid"] = str(save_image(grid, grid_path))
    return report


def demo_face(vae: VAE) -> dict:
    """PSNR and identity distance of the embedded demo photo's aligned face and its reconstruction."""
    from faceflex.face.align import align_face
    from faceflex.face.detect import detect_faces
    from faceflex.io.images import load_image
    from faceflex.io.inputs import demo_image_path

    rgb = load_image(demo_image_path()).rgb
    aligned = align_face(rgb, detect_faces(rgb)[0].landmarks)
    recon = vae.reconstruct(aligned.image)[0]
    x = torch.from_numpy(np.array(aligned.image)).permute(2, 0, 1)[None].float() / 255
    y = torch.from_numpy(np.array(recon)).permute(2, 0, 1)[None].float() / 255
    original = face_descriptor(aligned.image, aligned.landmarks)
    distance = descriptor_distance(original, face_descriptor(recon, aligned.landmarks))
    return {
        "psnr_db": round(float(psnr(y, x)[0]), 3),
        "identity_distance": round(distance, 4),
        "identity_kept": bool(distance < SAME_PERSON),
    }


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
