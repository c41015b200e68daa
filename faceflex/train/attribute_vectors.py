"""Computing attribute vectors from labelled, aligned faces and the VAE's mean latents."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from faceflex.inference.attribute_vectors import AttributeVectors, orthogonalize
from faceflex.inference.vae_codec import VAE
from faceflex.train.cache import CachedFaces


def encode_rows(
    vae: VAE, cache: CachedFaces, rows: np.ndarray, batch_size: int = 256, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Mean latents (len(rows), D) of cache faces, in batches."""
    out = np.empty((len(rows), vae.latent_size), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        chunk = np.sort(rows[start : start + batch_size])
        out[start : start + len(chunk)] = vae.encode(np.asarray(cache.faces[chunk]))
        if progress:
            progress(len(chunk))
    return out


def compute_vectors(
    latents: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    versions: int = 25,
    samples_per_version: int = 200,
    seed: int = 0,
) -> AttributeVectors:
    """Per attribute, ``versions`` directions mean(positives) - mean(negatives), each from its own
    disjoint, seeded sample of ``samples_per_version`` faces per side (fewer for rare attributes,
    so that the samples stay disjoint; the count used is recorded).

    ``labels`` is (N, A) with values -1/1 (or 0/1) for the N ``latents``.
    """
    latents = np.asarray(latents, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != (len(latents), len(names)):
        raise ValueError(f"labels {labels.shape} do not match {len(latents)} latents x {len(names)} names")
    vectors = np.zeros((len(names), versions, latents.shape[1]), dtype=np.float32)
    samples = np.zeros(len(names), dtype=np.int64)
    for a in range(len(names)):
        rng = np.random.default_rng([seed, a])
        positives = rng.permutation(np.flatnonzero(labels[:, a] > 0))
        negatives = rng.permutation(np.flatnonzero(labels[:, a] <= 0))
        per = min(samples_per_version, len(positives) // versions, len(negatives) // versions)
        if per < 1:
            raise ValueError(f"{names[a]}: too few faces with and without it for {versions} disjoint versions")
        samples[a] = per
        for k in range(versions):
            pos = latents[positives[k * per : (k + 1) * per]].mean(axis=0)
            neg = latents[negatives[k * per : (k + 1) * per]].mean(axis=0)
            vectors[a, k] = pos - neg
    meta = {"versions": versions, "samples_per_version": samples_per_version, "seed": seed, "faces": int(len(latents))}
    return AttributeVectors(list(names), vectors, samples, meta)


def orthogonal_versions(vectors: AttributeVectors, against: Sequence[str]) -> np.ndarray:
    """Every version of every attribute with the mean directions of ``against`` (other than
    itself) projected out; (A, K, D) float32. ``against`` must be among ``vectors.names``."""
    result = vectors.vectors.copy()
    if not against:
        return result
    means = {n: vectors.vectors[vectors.names.index(n)].mean(axis=0) for n in against}
    for i, name in enumerate(vectors.names):
        others = np.array([v for n, v in means.items() if n != name])
        if len(others):
            result[i] = np.stack([orthogonalize(v, others) for v in result[i]])
    return result
