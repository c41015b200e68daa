"""The aligned face cache: labelled faces aligned with faceflex's own alignment, memory-mappable.

A cache folder holds ``faces.npy`` (N, 128, 128, 3) uint8, ``attributes.npy`` (N, 40) int8 of
-1/1, ``landmarks.npy`` (N, 68, 2) float32 in the aligned frame, ``ids.npy`` (N,) int64 and
``meta.json`` (attribute names, source, split rule). Readers: the CelebA-HQ shards in
``../shared/data/celeba_hq`` and the original CelebA layout (``img_align_celeba/`` +
``list_attr_celeba.txt``, landmarks detected on the fly).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from faceflex.face.align import align_face, template_landmarks
from faceflex.face.detect import detect_faces
from faceflex.io.files import write_atomic

# The fixed held-out split: CelebA-HQ ids 28001-30000 are never trained on (VAE, vectors, classifiers).
TEST_IDS_FROM = 28001


@dataclass(frozen=True)
class CachedFaces:
    """An opened cache (arrays memory-mapped)."""

    faces: np.ndarray
    attributes: np.ndarray
    landmarks: np.ndarray
    ids: np.ndarray
    attribute_names: list[str]

    def split(self, part: str) -> np.ndarray:
        """Row indices of the ``train`` or ``test`` part (test = ids >= 28001)."""
        if part not in ("train", "test"):
            raise ValueError("part must be 'train' or 'test'")
        held_out = self.ids >= TEST_IDS_FROM
        return np.flatnonzero(held_out if part == "test" else ~held_out)


def open_cache(folder: str | Path) -> CachedFaces:
    """Open a cache written by :func:`build_cache`."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no face cache here (run `faceflex train prepare`)")
    meta = json.loads(meta_path.read_text())
    return CachedFaces(
        faces=np.load(folder / "faces.npy", mmap_mode="r"),
        attributes=np.load(folder / "attributes.npy"),
        landmarks=np.load(folder / "landmarks.npy"),
        ids=np.load(folder / "ids.npy"),
        attribute_names=meta["attribute_names"],
    )


@dataclass(frozen=True)
class RawFace:
    """One labelled face before alignment."""

    id: int
    rgb: np.ndarray
    attributes: np.ndarray  # (40,) int8
    landmarks: np.ndarray | None  # (68, 2) in the image's pixels, or None to detect
    prealigned: bool = False  # already in the template's 128x128 framing


def read_attribute_file(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """CelebA's attribute list: line 1 a count, line 2 the names, then ``file v1 v2 ...`` (-1/1)."""
    lines = path.read_text().splitlines()
    names = lines[1].split()
    rows = {}
    for line in lines[2:]:
        parts = line.split()
        if parts:
            rows[parts[0]] = np.array(parts[1 : 1 + len(names)], dtype=np.int8)
    return names, rows


def celeba_hq_faces(root: Path) -> tuple[list[str], int, Iterator[RawFace]]:
    """CelebA-HQ 128-px shards with dlib landmarks (``landmarks68.npz``, 256-px coordinates)."""
    names, rows = read_attribute_file(root / "attributes.txt")
    marks = np.load(root / "landmarks68.npz")
    by_id = {int(i): (lm / 2.0, int(flag)) for i, lm, flag in zip(marks["ids"], marks["landmarks"], marks["flags"])}
    shards = sorted(root.glob("celebahq128_part*.zip"))
    if not shards:
        raise FileNotFoundError(f"{root}: no celebahq128_part*.zip shards")
    members = []
    for shard in shards:
        with zipfile.ZipFile(shard) as archive:
            members += [(shard, m) for m in archive.namelist() if m.endswith(".jpg")]

    def generate() -> Iterator[RawFace]:
        archives = {shard: zipfile.ZipFile(shard) for shard in shards}
        try:
            for shard, member in members:
                face_id = int(Path(member).stem)
                rgb = np.asarray(Image.open(io.BytesIO(archives[shard].read(member))).convert("RGB"))
                landmarks, flag = by_id[face_id]
                # flag 3: no reliable landmarks; the photo is already in CelebA-HQ framing.
                yield RawFace(face_id, rgb, rows[f"{face_id}.jpg"], landmarks.astype(np.float64), prealigned=flag == 3)
        finally:
            for archive in archives.values():
                archive.close()

    return names, len(members), generate()


def celeba_faces(root: Path) -> tuple[list[str], int, Iterator[RawFace]]:
    """The original CelebA layout: ``img_align_celeba/*.jpg`` + ``list_attr_celeba.txt``."""
    names, rows = read_attribute_file(root / "list_attr_celeba.txt")
    files = sorted(name for name in rows if (root / "img_align_celeba" / name).is_file())

    def generate() -> Iterator[RawFace]:
        for name in files:
            rgb = np.asarray(Image.open(root / "img_align_celeba" / name).convert("RGB"))
            yield RawFace(int(Path(name).stem), rgb, rows[name], None)

    return names, len(files), generate()


def detect_source(root: Path) -> Callable[[Path], tuple[list[str], int, Iterator[RawFace]]]:
    """The reader for a data folder, told apart by its files."""
    if (root / "attributes.txt").is_file() and (root / "landmarks68.npz").is_file():
        return celeba_hq_faces
    if (root / "list_attr_celeba.txt").is_file() and (root / "img_align_celeba").is_dir():
        return celeba_faces
    raise FileNotFoundError(
        f"{root}: not a CelebA-HQ folder (attributes.txt, landmarks68.npz, celebahq128_part*.zip) "
        "nor a CelebA folder (img_align_celeba/, list_attr_celeba.txt)"
    )


def align_raw(face: RawFace) -> tuple[np.ndarray, np.ndarray] | None:
    """Aligned 128x128 image and its aligned landmarks (None when no face is found).

    Landmarks are detected when the record has none; a record marked ``prealigned`` (CelebA-HQ
    without a reliable detection, already in the template's framing) is kept as it is.
    """
    if face.prealigned:
        return np.ascontiguousarray(face.rgb, dtype=np.uint8), template_landmarks().astype(np.float32)
    landmarks = face.landmarks
    if landmarks is None:
        faces = detect_faces(face.rgb)
        if not faces:
            return None
        landmarks = faces[0].landmarks
    aligned = align_face(face.rgb, landmarks)
    return aligned.image, aligned.landmarks.astype(np.float32)


def build_cache(source: Path, out: Path, progress: Callable[[int], None] | None = None) -> dict:
    """Align every face of ``source`` and write the cache to ``out``; returns the meta record."""
    reader = detect_source(Path(source))
    names, total, faces = reader(Path(source))
    out.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(out / "faces.tmp.npy", mode="w+", dtype=np.uint8, shape=(total, 128, 128, 3))
    attributes = np.zeros((total, len(names)), dtype=np.int8)
    landmarks = np.zeros((total, 68, 2), dtype=np.float32)
    ids = np.zeros(total, dtype=np.int64)
    kept, skipped = 0, []
    for face in faces:
        result = align_raw(face)
        if result is None:
            skipped.append(face.id)
        else:
            images[kept], landmarks[kept] = result
            attributes[kept], ids[kept] = face.attributes, face.id
            kept += 1
        if progress:
            progress(1)
    images.flush()
    del images
    faces_all = np.load(out / "faces.tmp.npy", mmap_mode="r")
    order = np.argsort(ids[:kept], kind="stable")
    final = np.lib.format.open_memmap(out / "faces.npy.part", mode="w+", dtype=np.uint8, shape=(kept, 128, 128, 3))
    for start in range(0, kept, 1024):
        final[start : start + 1024] = faces_all[order[start : start + 1024]]
    final.flush()
    del final, faces_all
    (out / "faces.npy.part").replace(out / "faces.npy")
    (out / "faces.tmp.npy").unlink()
    for name, array in (("attributes", attributes[:kept][order]), ("landmarks", landmarks[:kept][order]), ("ids", ids[:kept][order])):
        write_atomic(out / f"{name}.npy", lambda handle, a=array: np.save(handle, a))
    meta = {
        "source": str(source),
        "reader": reader.__name__,
        "faces": kept,
        "skipped_no_face": skipped,
        "attribute_names": names,
        "split": f"test = ids >= {TEST_IDS_FROM}, train = the rest",
        "alignment": "faceflex.face.align.align_face onto data/template68.json, 128x128",
    }
    write_atomic(out / "meta.json", lambda handle: handle.write(json.dumps(meta, indent=1).encode()))
    return meta
