"""Attribute vectors: directions in the VAE's latent space, one set of versions per CelebA attribute.

A version is mean(latents of faces with the attribute) - mean(latents of faces without it), each
from its own disjoint sample (``faceflex train vectors``). Shipped as ``data/attribute_vectors.npz``
(plain arrays, read with ``allow_pickle=False``).
"""

from __future__ import annotations

import functools
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceflex.io.files import write_atomic
from faceflex.shipped import shipped

SHIPPED_VECTORS = "attribute_vectors.npz"


class UnknownAttribute(ValueError):
    """An attribute name that is not among the vectors' names."""


class VectorsError(ValueError):
    """A vector file that cannot be used (wrong kind of file, or made for other VAE weights)."""


def resolve_attribute(name: str, names: Sequence[str]) -> str:
    """The canonical spelling in ``names`` of ``name`` (case-insensitive), or :class:`UnknownAttribute`."""
    for known in names:
        if known.lower() == name.strip().lower():
            return known
    raise UnknownAttribute(f"unknown attribute {name!r}; valid attributes: {', '.join(names)}")


def orthogonalize(vector: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``vector`` minus its components in the span of the rows of ``others`` (M, D)."""
    others = np.atleast_2d(np.asarray(others, dtype=np.float64))
    if others.size == 0:
        return np.asarray(vector, dtype=np.float64)
    basis, _ = np.linalg.qr(others.T)  # (D, M) orthonormal columns
    vector = np.asarray(vector, dtype=np.float64)
    return vector - basis @ (basis.T @ vector)


@dataclass(frozen=True)
class AttributeVectors:
    """``vectors[a, k]`` is version ``k`` of attribute ``names[a]``'s direction."""

    names: list[str]
    vectors: np.ndarray  # (A, K, D) float32
    samples: np.ndarray  # (A,) faces per side in each version
    meta: dict

    @property
    def versions(self) -> int:
        return self.vectors.shape[1]

    def resolve(self, name: str) -> str:
        """The attribute's canonical name (case-insensitive match), or :class:`UnknownAttribute`."""
        return resolve_attribute(name, self.names)

    def direction(self, name: str, versions: Sequence[int] | None = None, orthogonal_to: Sequence[str] = ()) -> np.ndarray:
        """Mean of the chosen versions (all by default), optionally with the mean directions of
        ``orthogonal_to`` projected out; float32 (D,)."""
        index = self.names.index(self.resolve(name))
        chosen = list(range(self.versions)) if versions is None else list(versions)
        bad = [v for v in chosen if not 0 <= v < self.versions]
        if not chosen or bad:
            raise ValueError(f"versions must be between 0 and {self.versions - 1}; got {list(versions or [])}")
        vector = self.vectors[index, chosen].astype(np.float64).mean(axis=0)
        others = [self.vectors[self.names.index(self.resolve(o))].astype(np.float64).mean(axis=0) for o in orthogonal_to]
        others = [o for o, n in zip(others, orthogonal_to) if self.resolve(n) != self.names[index]]
        return orthogonalize(vector, np.array(others)).astype(np.float32) if others else vector.astype(np.float32)

    @property
    def vae_fingerprint(self) -> str | None:
        """Fingerprint of the VAE weight file these vectors were computed with (``meta["vae_fingerprint"]``)."""
        return self.meta.get("vae_fingerprint")

    def check_vae(self, vae_fingerprint: str | None, vae_name: str = "the VAE", source: str = "the vectors") -> None:
        """Raise :class:`VectorsError` when these vectors were made for other VAE weights.

        Vectors live in one VAE's latent space: applied to another VAE they move faces in
        meaningless directions. Vectors or weights without a fingerprint cannot be checked.
        """
        if self.vae_fingerprint and vae_fingerprint and self.vae_fingerprint != vae_fingerprint:
            raise VectorsError(
                f"{source} were made for VAE weights {self.vae_fingerprint}, not for {vae_name} ({vae_fingerprint}); "
                "remake them with `faceflex train vectors --weights ...` or pass the matching --weights"
            )

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` (fp16 vectors) atomically."""
        arrays = {
            "names": np.array(self.names),
            "vectors": self.vectors.astype(np.float16),
            "samples": self.samples.astype(np.int64),
            "meta": np.array(json.dumps(self.meta)),
        }
        return write_atomic(Path(path), lambda handle: np.savez(handle, **arrays))


def vectors_from_file(path: str | Path) -> AttributeVectors:
    """Read an attribute-vector file (no pickles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: attribute vectors not found (make them with `faceflex train vectors`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            vectors = AttributeVectors(
                names=[str(n) for n in data["names"]],
                vectors=data["vectors"].astype(np.float32),
                samples=data["samples"],
                meta=json.loads(str(data["meta"])),
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as error:
        raise VectorsError(f"{path}: not an attribute-vector file ({type(error).__name__})") from None
    if vectors.vectors.ndim != 3 or len(vectors.names) != vectors.vectors.shape[0]:
        raise VectorsError(f"{path}: not an attribute-vector file (arrays of the wrong shape)")
    return vectors


@functools.cache
def _shipped() -> AttributeVectors:
    return vectors_from_file(shipped(SHIPPED_VECTORS))


def load_vectors(path: str | Path | None = None) -> AttributeVectors:
    """The shipped attribute vectors (read once), or the file at ``path``."""
    return _shipped() if path is None else vectors_from_file(path)
