"""One call per job, for Python users: the same pipeline and steps as the CLI, on one photo in memory.

``photo`` is a path, a :class:`~faceflex.io.images.LoadedImage` or an (H, W, 3) uint8 RGB array.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceflex.face.detect import DetectSettings
from faceflex.io.images import LoadedImage, load_image
from faceflex.pipeline.flow import run_step


def _rgb(photo: str | os.PathLike | LoadedImage | np.ndarray) -> np.ndarray:
    if isinstance(photo, LoadedImage):
        return photo.rgb
    if isinstance(photo, (str, os.PathLike)):
        return load_image(photo).rgb
    array = np.asarray(photo)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"photo must be a path, a LoadedImage or an (H, W, 3) uint8 RGB array, not {array.shape} {array.dtype}")
    return array


def classify_photo(photo, *, device: str = "auto", detect: DetectSettings | None = None, faces: str = "all") -> list[dict]:
    """One classification record per face (as ``faceflex classify`` writes them), largest face first."""
    from faceflex.steps.classify import ClassifyStep

    return run_step(_rgb(photo), ClassifyStep(device=device), detect, faces).records


@dataclass(frozen=True)
class EditedImage:
    """One edited version of the photo (every face changed)."""

    version: int | str  # vector version, or "mean" (the mean of all versions)
    strength: float
    image: np.ndarray  # (H, W, 3) uint8, full resolution
    identity_distance: list[float] | None = None  # per face: dlib descriptor distance from the original (>= 0.6: lost)


def edit_photo(
    photo,
    attribute: str = "Smiling",
    strengths: Sequence[float] = (0.0, 1.0, 2.0, 3.0),
    *,
    versions: Sequence[int] | None = None,
    mode: str = "auto",
    region: str = "auto",
    orthogonal_to: Sequence[str] = (),
    feather: float = 0.04,
    identity: bool = False,
    weights: str | Path | None = None,
    vectors: str | Path | None = None,
    landmarks: str | Path | None = None,
    painter: str | Path | None = None,
    prototypes: str | Path | None = None,
    device: str = "auto",
    detect: DetectSettings | None = None,
    faces: str = "all",
) -> list[EditedImage]:
    """The photo with every face's ``attribute`` moved by each strength (as ``faceflex edit``).

    ``versions`` None uses the mean of all vector versions; strength 0 returns the photo unchanged
    in every mode. ``mode``: residual, replace, warp, hybrid, paint or prototype (see ``faceflex.steps.edit``).
    ``identity`` also measures each face's dlib descriptor distance from the original.
    ``weights``, ``vectors``, ``landmarks``, ``painter``, ``prototypes``: a VAE, its attribute
    vectors, its latent-landmark regressor, the attribute painter and the attribute prototypes
    (None: the shipped ones).
    """
    from faceflex.inference.attribute_painting import load_attribute_painter
    from faceflex.inference.attribute_prototypes import load_prototypes
    from faceflex.inference.attribute_vectors import load_vectors
    from faceflex.inference.latent_landmarks import load_landmark_regressor
    from faceflex.inference.vae_codec import load_vae
    from faceflex.steps.edit import EditSettings, EditStep

    options = EditSettings(
        attribute,
        tuple(float(s) for s in strengths),
        tuple(versions) if versions is not None else None,
        mode,
        region,
        tuple(orthogonal_to),
        feather,
        identity=identity,
    )
    regressor = load_landmark_regressor(landmarks) if landmarks is not None else None
    painting = load_attribute_painter(painter, device) if painter is not None else None
    prototyped = load_prototypes(prototypes) if prototypes is not None else None
    step = EditStep(options, load_vae(weights, device), load_vectors(vectors), regressor, painting, prototyped)
    result = run_step(_rgb(photo), step, detect, faces)
    edited = []
    for variant, image in result.images():
        distances = variant.measure(image)["identity_distance"] if variant.measure else None
        edited.append(EditedImage(variant.info["version"], variant.info["strength"], image, distances))
    return edited


@dataclass(frozen=True)
class ProcessedPhoto:
    """A photo after a command that paints it once (``mask_photo``, ``unmask_photo``, ``anonymize_photo``)."""

    image: np.ndarray  # (H, W, 3) uint8, full resolution
    faces: list[dict]  # one record per face, as the command's manifest writes them


def _painted(photo, step, detect: DetectSettings | None, faces: str) -> ProcessedPhoto:
    result = run_step(_rgb(photo), step, detect, faces)
    images = [image for _, image in result.images()]
    return ProcessedPhoto(images[0] if images else result.photo.copy(), result.records)


def mask_photo(
    photo,
    kind: str = "surgical",
    *,
    color: str | None = None,
    texture: str | None = None,
    seed: int = 0,
    detect: DetectSettings | None = None,
    faces: str = "all",
) -> ProcessedPhoto:
    """The photo with a face mask on every face (as ``faceflex mask``; ``kind`` as ``--type``)."""
    from faceflex.steps.mask import MaskSettings, MaskStep

    return _painted(photo, MaskStep(MaskSettings(kind, color, texture, seed)), detect, faces)


def unmask_photo(
    photo,
    *,
    weights: str | Path | None = None,
    detail_weights: str | Path | None = None,
    device: str = "auto",
    detect: DetectSettings | None = None,
    faces: str = "all",
) -> ProcessedPhoto:
    """The photo with every face mask taken off (as ``faceflex unmask``: dlib's HOG and faceflex's
    masked-face and upper-face HOG detectors merged, unless ``detect`` says otherwise; the lower face
    is synthesised, not recovered). ``detail_weights``: a detail stage over the network."""
    from faceflex.steps.unmask import DETECTION, UnmaskStep

    detect = detect or DETECTION
    paths = [str(p) if p else None for p in (weights, detail_weights)]
    step = UnmaskStep(weights=paths[0], detail_weights=paths[1], device=device)
    return _painted(photo, step, detect, faces)


def anonymize_photo(
    photo,
    method: str = "generate",
    *,
    seed: int = 0,
    normalise_shape: float = 0.0,
    keep_tone: bool = True,
    weights: str | Path | None = None,
    device: str = "auto",
    detect: DetectSettings | None = None,
    faces: str = "all",
) -> ProcessedPhoto:
    """The photo with every face replaced by a new person with the same expression (``generate``),
    or blurred / pixelated (as ``faceflex anonymize``). Each face record gets
    ``identity_distance``: dlib's descriptor distance from the original (>= 0.6: not the same person)."""
    from faceflex.steps.anonymize import AnonymizeStep

    step = AnonymizeStep(
        method, seed, weights=str(weights) if weights else None, normalise_shape=normalise_shape, keep_tone=keep_tone, device=device
    )
    result = run_step(_rgb(photo), step, detect, faces)
    records = result.records
    for variant, image in result.images():
        distances = variant.measure(image)["identity_distance"]
        return ProcessedPhoto(image, [{**record, "identity_distance": d} for record, d in zip(records, distances)])
    return ProcessedPhoto(result.photo.copy(), records)
