"""Labelled face sets for the classifiers, prepared with faceflex's own crops, with fixed splits.

- attributes: CelebA-HQ from the aligned cache (``faceflex train prepare``); test = ids 28001-30000
  (the VAE's held-out set), validation = ids 27001-28000, train = the rest.
- expression: FER2013 48x48 grey; a seeded 80/10/10 train/val/test split (seed 2013).
- age: UTKFace, re-aligned with faceflex's alignment (dlib landmarks; the few faces dlib misses get
  the median UTKFace framing); a seeded 80/10/10 split (seed 1).
- face: the union of both (one network for the 10 attributes, gender and age): CelebA-HQ rows
  carry the attributes (age unknown), UTKFace rows carry Male (from their gender) and age (the other
  attributes unknown, NaN); each source keeps its own fixed split. Optionally every row also carries
  dlib's 128-d face descriptor of its aligned face (cached), a training target that teaches the
  small network the features dlib's recognition network uses (gender across ages among them).
- CK+ (expression, cross-dataset): evaluation only.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from faceflex.face.align import align_face, warp_image
from faceflex.face.crops import attribute_input
from faceflex.io.files import write_atomic
from faceflex.models.labels import ATTRIBUTES, EXPRESSIONS
from faceflex.train.cache import TEST_IDS_FROM, open_cache

TRAIN, VAL, TEST = 0, 1, 2
PARTS = {"train": TRAIN, "val": VAL, "test": TEST}
VAL_IDS_FROM = 27001
FER_SPLIT_SEED = 2013
UTK_SPLIT_SEED = 1

# CK+ folder names -> expression classes ("contempt" has none and is left out).
CKPLUS_TO_FER = {
    folder: EXPRESSIONS.index(name)
    for folder, name in {
        "anger": "angry",
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happy",
        "sadness": "sad",
        "surprise": "surprise",
    }.items()
}


@dataclass
class LabelledSet:
    """Images (N, H, W, C) uint8, targets per head, and a split code per row (0 train, 1 val, 2 test)."""

    images: np.ndarray
    targets: dict[str, np.ndarray]
    split: np.ndarray
    notes: dict = field(default_factory=dict)

    def rows(self, part: str) -> np.ndarray:
        return np.flatnonzero(self.split == PARTS[part])


def seeded_split(count: int, seed: int, fractions: tuple[float, float] = (0.1, 0.1)) -> np.ndarray:
    """Split codes for ``count`` items: a seeded permutation, the last fractions are val and test."""
    order = np.random.default_rng(seed).permutation(count)
    codes = np.full(count, TRAIN, dtype=np.int8)
    n_val, n_test = (int(round(f * count)) for f in fractions)
    codes[order[count - n_test :]] = TEST
    codes[order[count - n_test - n_val : count - n_test]] = VAL
    return codes


def attribute_set(cache_dir: str | Path) -> LabelledSet:
    """CelebA-HQ attributes on the aligned cache, downsampled to 64 px."""
    cache = open_cache(cache_dir)
    columns = [cache.attribute_names.index(name) for name in ATTRIBUTES]
    images = np.concatenate([attribute_input(cache.faces[i : i + 2048]) for i in range(0, len(cache.faces), 2048)])
    split = np.where(cache.ids >= TEST_IDS_FROM, TEST, np.where(cache.ids >= VAL_IDS_FROM, VAL, TRAIN)).astype(np.int8)
    targets = {"attributes": (cache.attributes[:, columns] > 0).astype(np.float32)}
    return LabelledSet(images, targets, split, {"source": str(cache_dir), "attributes": ATTRIBUTES})


def read_fer_labels(fer_dir: Path) -> tuple[list[str], np.ndarray]:
    """FER2013 member paths and class indices into ``EXPRESSIONS``, from the emotion names in ``labels.csv``."""
    with open(Path(fer_dir) / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["path"] for r in rows], np.array([EXPRESSIONS.index(r["emotion"].strip().lower()) for r in rows], dtype=np.int64)


def _read_grey(archive: zipfile.ZipFile, member: str, size: int) -> np.ndarray:
    image = Image.open(io.BytesIO(archive.read(member))).convert("L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


def expression_set(fer_dir: str | Path) -> LabelledSet:
    """FER2013 (48x48 grey) with its seeded split."""
    fer_dir = Path(fer_dir)
    paths, labels = read_fer_labels(fer_dir)
    with zipfile.ZipFile(fer_dir / "fer2013_48.zip") as archive:
        images = np.stack([_read_grey(archive, p, 48) for p in paths])[..., None]
    return LabelledSet(
        images, {"expression": labels}, seeded_split(len(paths), FER_SPLIT_SEED), {"source": str(fer_dir), "classes": EXPRESSIONS}
    )


def ckplus_set(ck_dir: str | Path, reframe: bool = True) -> LabelledSet:
    """CK+48 faces whose expression FER2013 also has (all rows are test rows).

    CK+48's crops are tighter than FER2013's; with ``reframe`` each face is re-cut the way
    ``faceflex classify`` cuts faces from photos (dlib landmarks on a 4x enlargement, then
    :func:`expression_input`); faces dlib misses keep their CK+48 crop (counted in the notes).
    """
    from faceflex.face.crops import expression_input
    from faceflex.face.detect import DetectSettings, detect_faces

    ck_dir = Path(ck_dir)
    images, labels, missed = [], [], 0
    with zipfile.ZipFile(ck_dir / "ckplus48.zip") as archive:
        for member in sorted(archive.namelist()):
            parts = member.split("/")
            if len(parts) >= 3 and parts[-2] in CKPLUS_TO_FER and member.lower().endswith((".png", ".jpg")):
                crop = _read_grey(archive, member, 48)
                if reframe:
                    large = np.asarray(Image.fromarray(crop).resize((192, 192), Image.Resampling.BICUBIC).convert("RGB"))
                    padded = np.pad(large, ((48, 48), (48, 48), (0, 0)), mode="edge")
                    faces = detect_faces(padded, DetectSettings())
                    if faces:
                        crop = expression_input(padded, faces[0].landmarks)
                    else:
                        missed += 1
                images.append(crop)
                labels.append(CKPLUS_TO_FER[parts[-2]])
    split = np.full(len(labels), TEST, dtype=np.int8)
    notes = {"source": str(ck_dir), "left_out": "contempt", "reframed": reframe, "dlib_missed": missed}
    return LabelledSet(np.stack(images)[..., None], {"expression": np.array(labels)}, split, notes)


def _utk_faces(utk_dir: Path, progress: Callable[[int], None] | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Every UTKFace crop aligned to 128 px with faceflex's alignment, its 68 landmarks in that frame
    (NaN where dlib missed the face) and how many dlib missed."""
    from faceflex.face.detect import DetectSettings, detect_faces

    with open(utk_dir / "labels.csv", newline="") as handle:
        paths = [row[0] for row in list(csv.reader(handle))[1:]]
    settings = DetectSettings()
    aligned = np.zeros((len(paths), 128, 128, 3), dtype=np.uint8)
    landmarks = np.full((len(paths), 68, 2), np.nan, dtype=np.float32)
    missed: list[tuple[int, np.ndarray]] = []
    matrices = []
    with zipfile.ZipFile(utk_dir / "utkface128.zip") as archive:
        for index, member in enumerate(paths):
            rgb = np.asarray(Image.open(io.BytesIO(archive.read(member))).convert("RGB"))
            pad = 32  # a face filling the crop is found more often with a margin around it
            faces = detect_faces(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge"), settings)
            if faces:
                points = faces[0].landmarks - pad
                face = align_face(rgb, points)
                aligned[index] = face.image
                landmarks[index] = face.landmarks
                matrices.append(face.matrix)
            else:
                missed.append((index, rgb))
            if progress:
                progress(1)
    median = np.median(np.stack(matrices), axis=0)
    for index, rgb in missed:
        aligned[index] = warp_image(rgb, median, (128, 128))
    return aligned, landmarks, len(missed)


def utk_faces(
    utk_dir: str | Path, cache_dir: str | Path, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """UTKFace re-aligned to faceflex's 128-px frame: (faces (N, 128, 128, 3) uint8, landmarks
    (N, 68, 2) float32 in that frame, NaN where dlib missed the face, faces missed), in the order of
    ``labels.csv``; computed once and kept in ``cache_dir/utkface_aligned.npz``."""
    utk_dir, cache_file = Path(utk_dir), Path(cache_dir) / "utkface_aligned.npz"
    if cache_file.is_file():
        stored = np.load(cache_file)
        if "landmarks" in stored:  # caches from before the landmarks were kept are rebuilt
            return stored["aligned"], stored["landmarks"], int(stored["missed"])
    aligned, landmarks, missed = _utk_faces(utk_dir, progress)
    write_atomic(cache_file, lambda handle: np.savez(handle, aligned=aligned, landmarks=landmarks, missed=missed))
    return aligned, landmarks, missed


def cached_face_descriptors(
    faces: np.ndarray, landmarks: np.ndarray, cache_file: str | Path, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """dlib's 128-d descriptor (:func:`faceflex.face.identity.face_descriptors`) of each aligned 128-px
    face, from its landmarks in that frame: (N, 128) float32, NaN rows where the landmarks are unknown.
    Computed once (in batches of 64; about 15 ms a face on 2 CPU cores) and kept in ``cache_file``."""
    from faceflex.face.identity import face_descriptors

    cache_file = Path(cache_file)
    if cache_file.is_file():
        stored = np.load(cache_file)["descriptors"]
        if len(stored) == len(faces):
            return stored
    descriptors = np.full((len(faces), 128), np.nan, dtype=np.float32)
    known = np.flatnonzero([np.isfinite(landmarks[i]).all() for i in range(len(faces))])
    for start in range(0, len(faces), 64):
        block = known[(known >= start) & (known < start + 64)]
        if len(block):
            descriptors[block] = face_descriptors([np.asarray(faces[i]) for i in block], [np.asarray(landmarks[i]) for i in block])
        if progress:
            progress(min(64, len(faces) - start))
    write_atomic(cache_file, lambda handle: np.savez(handle, descriptors=descriptors))
    return descriptors


def cached_refit_landmarks(faces: np.ndarray, landmarks: np.ndarray, cache_file: str | Path) -> np.ndarray:
    """dlib's 68 points found on each aligned 128-px face itself, in the box of its ``landmarks``
    (:func:`faceflex.face.detect.refit_landmarks`; the cached ones were found on the larger photo):
    (N, 68, 2) float32 in that frame, NaN rows where the landmarks are unknown. Computed once (about
    2 ms a face) and kept in ``cache_file``."""
    from faceflex.face.detect import refit_landmarks

    cache_file = Path(cache_file)
    if cache_file.is_file():
        stored = np.load(cache_file)["landmarks"]
        if len(stored) == len(faces):
            return stored
    refit = np.full((len(faces), 68, 2), np.nan, dtype=np.float32)
    for i in range(len(faces)):
        points = np.asarray(landmarks[i], np.float64)
        if np.isfinite(points).all():
            refit[i] = refit_landmarks(np.asarray(faces[i]), points)
    write_atomic(cache_file, lambda handle: np.savez(handle, landmarks=refit))
    return refit


def cached_dlib_stages(
    faces: np.ndarray, landmarks: np.ndarray, cache_file: str | Path, tap: int, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """The activations of dlib's residual block ``tap`` on each aligned 128-px face's dlib chip
    (:func:`faceflex.face.identity.face_chip`, from its landmarks in that frame) and on the chip's
    mirror image: (N, 2, C, H, W) float16 (plain, mirrored;
    :func:`~faceflex.models.face_descriptor_net.stage_shape`), NaN where the landmarks are unknown;
    what the gender-and-age network trains on. Computed once (about 12 ms a face on 2 CPU cores;
    block 6: 74 KB a face) and kept in ``cache_file`` (read memory-mapped)."""
    import torch

    from faceflex.face.dlib_models import face_descriptor_net
    from faceflex.face.identity import face_chip
    from faceflex.models.face_descriptor_net import stage_shape

    cache_file = Path(cache_file)
    if cache_file.is_file():
        stored = np.load(cache_file, mmap_mode="r")
        if len(stored) == len(faces):
            return stored
    stages = np.full((len(faces), 2, *stage_shape(tap)), np.nan, dtype=np.float16)
    known = np.flatnonzero([np.isfinite(landmarks[i]).all() for i in range(len(faces))])
    net = face_descriptor_net()
    for start in range(0, len(faces), 64):
        block = known[(known >= start) & (known < start + 64)]
        if len(block):
            chips = torch.from_numpy(np.stack([face_chip(np.asarray(faces[i]), np.asarray(landmarks[i])) for i in block]))
            chips = chips.permute(0, 3, 1, 2).float()
            with torch.inference_mode():
                for side, x in enumerate((chips, chips.flip(3))):
                    (tapped,), _ = net.features(x.contiguous(memory_format=torch.channels_last), taps=(tap,))
                    stages[block, side] = tapped.float().numpy()
        if progress:
            progress(min(64, len(faces) - start))
    write_atomic(cache_file, lambda handle: np.save(handle, stages))
    return np.load(cache_file, mmap_mode="r")


def face_set_dlib_stages(
    celeba_cache: str | Path, utk_dir: str | Path, cache_dir: str | Path, tap: int, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """:func:`cached_dlib_stages` of :func:`face_set`'s rows (CelebA-HQ, then UTKFace), (N, 2, C, H, W)
    float16, cached in ``cache_dir`` (block 6: 2.9 GB for the 39,778 faces)."""
    cache = open_cache(celeba_cache)
    aligned, landmarks, _ = utk_faces(utk_dir, cache_dir, progress)
    cache_dir = Path(cache_dir)
    celeba = cached_dlib_stages(cache.faces, cache.landmarks, cache_dir / f"celeba_hq_dlib_block{tap}.npy", tap, progress)
    utk = cached_dlib_stages(aligned, landmarks, cache_dir / f"utkface_dlib_block{tap}.npy", tap, progress)
    return np.concatenate([celeba, utk])


def standardised(values: np.ndarray, reference_rows: np.ndarray) -> np.ndarray:
    """``values`` (N, D) shifted and scaled per column to mean 0 and deviation 1 over ``reference_rows``
    (the training part; NaN rows are left NaN and ignored)."""
    reference = values[reference_rows]
    return ((values - np.nanmean(reference, axis=0)) / np.nanstd(reference, axis=0)).astype(np.float32)


def utk_split(count: int) -> np.ndarray:
    """UTKFace's fixed split codes (seeded 80/10/10; the test part is never trained on)."""
    return seeded_split(count, UTK_SPLIT_SEED)


def age_set(utk_dir: str | Path, cache_dir: str | Path, progress: Callable[[int], None] | None = None) -> LabelledSet:
    """UTKFace age and gender on re-aligned 64-px faces (alignment cached in ``cache_dir``)."""
    utk_dir = Path(utk_dir)
    with open(utk_dir / "labels.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    aligned, _, missed = utk_faces(utk_dir, cache_dir, progress)
    targets = {
        "age": np.array([float(r[1]) for r in rows], dtype=np.float32),
        "gender": np.array([int(r[2]) for r in rows], dtype=np.int64),
    }
    notes = {"source": str(utk_dir), "dlib_missed": missed}
    return LabelledSet(attribute_input(aligned), targets, utk_split(len(rows)), notes)


def face_set_descriptors(
    celeba_cache: str | Path, utk_dir: str | Path, cache_dir: str | Path, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """dlib's descriptors of :func:`face_set`'s rows (CelebA-HQ, then UTKFace), (N, 128) float32, NaN
    where dlib found no landmarks; cached in ``cache_dir`` (:func:`cached_face_descriptors`)."""
    cache = open_cache(celeba_cache)
    aligned, landmarks, _ = utk_faces(utk_dir, cache_dir, progress)
    return np.concatenate(
        [
            cached_face_descriptors(cache.faces, cache.landmarks, Path(cache_dir) / "celeba_hq_descriptors.npz", progress),
            cached_face_descriptors(aligned, landmarks, Path(cache_dir) / "utkface_descriptors.npz", progress),
        ]
    )


def face_set(
    celeba_cache: str | Path,
    utk_dir: str | Path,
    cache_dir: str | Path,
    progress: Callable[[int], None] | None = None,
    descriptors: bool = False,
) -> LabelledSet:
    """CelebA-HQ (attributes) and UTKFace (gender as Male, age) on the same 64-px crops, one row per
    face. Targets: ``attributes`` (N, 10) in {0, 1} or NaN where unknown, ``age`` in years (NaN for
    CelebA-HQ), ``race`` (UTKFace's code, -1 for CelebA-HQ) and ``source`` (0 CelebA-HQ, 1 UTKFace);
    with ``descriptors``, ``descriptor`` (N, 128): dlib's face descriptor standardised over the
    training part (NaN where dlib found no landmarks; cached in ``cache_dir``)."""
    celeba = attribute_set(celeba_cache)
    utk_dir = Path(utk_dir)
    with open(utk_dir / "labels.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    aligned, _, missed = utk_faces(utk_dir, cache_dir, progress)
    n_celeba, n_utk = len(celeba.images), len(rows)
    utk_attributes = np.full((n_utk, len(ATTRIBUTES)), np.nan, dtype=np.float32)
    utk_attributes[:, ATTRIBUTES.index("Male")] = np.array([int(r[2]) == 0 for r in rows], dtype=np.float32)  # UTKFace: 0 = male
    targets = {
        "attributes": np.concatenate([celeba.targets["attributes"], utk_attributes]),
        "age": np.concatenate([np.full(n_celeba, np.nan, np.float32), np.array([float(r[1]) for r in rows], dtype=np.float32)]),
        "race": np.concatenate([np.full(n_celeba, -1, np.int64), np.array([int(r[3]) for r in rows], dtype=np.int64)]),
        "source": np.concatenate([np.zeros(n_celeba, np.int64), np.ones(n_utk, np.int64)]),
    }
    split = np.concatenate([celeba.split, utk_split(n_utk)])
    if descriptors:
        raw = face_set_descriptors(celeba_cache, utk_dir, cache_dir, progress)
        targets["descriptor"] = standardised(raw, np.flatnonzero(split == TRAIN))
    notes = {"sources": [celeba.notes["source"], str(utk_dir)], "attributes": ATTRIBUTES, "utk_dlib_missed": missed}
    return LabelledSet(np.concatenate([celeba.images, attribute_input(aligned)]), targets, split, notes)


def task_set(
    task: str,
    data_dir: str | Path,
    cache_dir: str | Path,
    progress: Callable[[int], None] | None = None,
    descriptors: bool = False,
) -> LabelledSet:
    """The labelled set of a classifier task from the shared data folder (caches built on first use;
    ``descriptors``: the face task's dlib descriptor targets, for training)."""
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    if task in ("attributes", "face"):
        celeba_cache = cache_dir / "celeba_hq"
        if not (celeba_cache / "meta.json").is_file():
            from faceflex.train.cache import build_cache

            build_cache(data_dir / "celeba_hq", celeba_cache, progress=progress)
        if task == "face":
            return face_set(celeba_cache, data_dir / "utkface", cache_dir, progress, descriptors)
        return attribute_set(celeba_cache)
    if task == "expression":
        return expression_set(data_dir / "fer2013")
    if task == "age":
        return age_set(data_dir / "utkface", cache_dir, progress)
    raise ValueError(f"unknown task {task!r}; choose attributes, expression, age or face")
