"""Attribute prototypes: how the average face with an attribute differs from the average face without it.

A prototype transform (after Rowland & Perrett 1995 and Tiddeman, Burt & Perrett 2001) changes a
photo by the difference between two group averages of aligned faces, in three parts:

- **shape**: the mean landmarks with the attribute minus those without it (the face is warped by it);
- **colour**: the mean shape-normalised face with it minus the one without it (every face first
  warped to the mean landmarks, so the averages are sharp where faces agree), added as a change;
- **texture**: per detail band (``faceflex.face.texture``), the log of the ratio of the two groups'
  mean band energies: the photo's own detail is scaled by it (wrinkles deepened for older, skin
  smoothed for younger, stubble for male), at the photo's own resolution.

The groups are weighted so that the attributes that go with this one in CelebA-HQ (:data:`BALANCED`)
are equally common in both (overlap weights over their combinations), so that for example "Young"
does not also change gender or add a smile. Made from the CelebA-HQ training split by ``faceflex
train prototypes``; shipped as ``data/attribute_prototypes.npz`` (fp16 maps, read with
``allow_pickle=False``). Maps are in the *mean-shape* 128-px frame (landmarks at ``mean_landmarks``).
"""

from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceflex.choices import PROTOTYPES_BALANCED
from faceflex.face.texture import BAND_SIGMAS
from faceflex.face.warp import anchor_ring, warp_points
from faceflex.inference.attribute_vectors import resolve_attribute
from faceflex.io.files import write_atomic
from faceflex.shipped import shipped

SHIPPED_PROTOTYPES = "attribute_prototypes.npz"
BALANCED = PROTOTYPES_BALANCED  # the default; a file records its own in meta["balanced"]
# one unit of edit strength is half the difference between the groups: strength 2 is the whole difference
UNIT = 0.5


@dataclass(frozen=True)
class Recipe:
    """How an attribute's edit is made from the prototypes: the share of its own shape difference
    the face is warped by, and other attributes' changes added at multiples of the strength (to
    cancel what the judge reads as a side effect). Chosen on validation faces (docs/EDIT.md)."""

    shape: float = 1.0
    counter: tuple[tuple[str, float], ...] = ()


# Male: its average change also ages a face. Three quarters of its shape and half a unit of Young per
# unit of Male: at 3, identity kept for 70 -> 92 % of the women masculinised, Young's leakage
# 26 -> 9.5 % (validation ids 27001-28000, 100 faces a side; docs/EDIT.md)
RECIPES = {"Male": Recipe(shape=0.75, counter=(("Young", 0.5),))}


class PrototypesError(ValueError):
    """A prototypes file that cannot be used."""


@dataclass(frozen=True)
class PrototypeChange:
    """One face's prototype change at one strength, in that face's aligned 128-px frame."""

    move: np.ndarray  # (68, 2) landmark displacement
    colour: np.ndarray  # (128, 128, 3) float32 change in 0-255 units (at the moved landmarks)
    log_gains: np.ndarray  # (len(BAND_SIGMAS), 128, 128) float32 (at the moved landmarks; clipped where applied)


@dataclass(frozen=True)
class AttributePrototypes:
    """Per attribute ``names[a]``: ``shape[a]`` (68, 2), ``colour[a]`` (128, 128, 3) and
    ``detail[a]`` (bands, 128, 128) = with minus without, in the mean-shape frame."""

    names: list[str]
    mean_landmarks: np.ndarray  # (68, 2) float64, the aligned frame
    shape: np.ndarray  # (A, 68, 2) float32
    colour: np.ndarray  # (A, 128, 128, 3) float16
    detail: np.ndarray  # (A, B, 128, 128) float16, log energy ratios
    faces: np.ndarray  # (A, 2) effective faces per group (without, with) after the weighting
    meta: dict

    def resolve(self, name: str) -> str:
        return resolve_attribute(name, self.names)

    def change(self, attribute: str, landmarks: np.ndarray, strength: float, moved: np.ndarray | None = None) -> PrototypeChange:
        """The change that takes a face with aligned ``landmarks`` ``strength`` units toward the
        attribute (negative: away from it); see :data:`UNIT`; made as the attribute's :data:`RECIPES`
        says. The colour and detail maps are placed on the landmarks moved by the shape change, or on
        ``moved`` when the face is warped otherwise."""
        name = self.resolve(attribute)
        recipe = RECIPES.get(name, Recipe())
        own = self.names.index(name)
        parts = [(own, 1.0), *((self.names.index(self.resolve(n)), k) for n, k in recipe.counter)]
        amount = float(strength) * UNIT
        shape = recipe.shape * self.shape[own].astype(np.float64) + sum(k * self.shape[i].astype(np.float64) for i, k in parts[1:])
        move = amount * shape
        target = np.asarray(landmarks, dtype=np.float64) + move if moved is None else np.asarray(moved, dtype=np.float64)
        colour = sum(k * self.colour[i].astype(np.float32) for i, k in parts)
        detail = sum(k * self.detail[i].astype(np.float32) for i, k in parts)
        maps = np.concatenate([colour, np.moveaxis(detail, 0, -1)], axis=-1)
        # the mean-frame maps moved onto this face (content at the mean landmarks lands on the face's moved ones)
        placed = warp_points(maps, self.mean_landmarks, target, anchor_ring(target, scale=1.35), (0, 0, 128, 128))
        return PrototypeChange(move, amount * placed[..., :3], amount * np.moveaxis(placed[..., 3:], -1, 0))

    def save(self, path: str | Path) -> Path:
        arrays = {
            "names": np.array(self.names),
            "mean_landmarks": self.mean_landmarks.astype(np.float64),
            "shape": self.shape.astype(np.float32),
            "colour": self.colour.astype(np.float16),
            "detail": self.detail.astype(np.float16),
            "faces": self.faces.astype(np.float32),
            "meta": np.array(json.dumps(self.meta)),
        }
        return write_atomic(Path(path), lambda handle: np.savez_compressed(handle, **arrays))


def prototypes_from_file(path: str | Path) -> AttributePrototypes:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: attribute prototypes not found (make them with `faceflex train prototypes`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            prototypes = AttributePrototypes(
                [str(n) for n in data["names"]],
                data["mean_landmarks"],
                data["shape"],
                data["colour"],
                data["detail"],
                data["faces"],
                json.loads(str(data["meta"])),
            )
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise PrototypesError(f"{path}: not an attribute-prototypes file ({type(error).__name__})") from None
    count = len(prototypes.names)
    expected = {"shape": (count, 68, 2), "colour": (count, 128, 128, 3), "detail": (count, len(BAND_SIGMAS), 128, 128)}
    for key, shape in expected.items():
        if getattr(prototypes, key).shape != shape:
            raise PrototypesError(f"{path}: {key} has shape {getattr(prototypes, key).shape}, not {shape}")
    return prototypes


@functools.cache
def _shipped() -> AttributePrototypes:
    return prototypes_from_file(shipped(SHIPPED_PROTOTYPES))


def load_prototypes(path: str | Path | None = None) -> AttributePrototypes:
    """The shipped prototypes (read once), or the file at ``path``."""
    return _shipped() if path is None else prototypes_from_file(path)
