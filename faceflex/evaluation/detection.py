"""Detection and landmark accuracy against labelled faces (dlib XML datasets, 300-W crops).

Landmark error is the mean point-to-point distance normalised by the inter-ocular distance
(outer eye corners, landmarks 36 and 45), the usual 300-W measure.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from faceflex.face.detect import DetectSettings, Face, detect_faces
from faceflex.io.images import load_image


@dataclass(frozen=True)
class LabelledFace:
    """A hand-labelled face: box (left, top, right, bottom) and, if labelled, 68 landmarks."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None


def read_dlib_xml(path: str | Path) -> dict[str, list[LabelledFace]]:
    """Faces per image file name from dlib's imglab XML format (``<image><box><part/>``)."""
    labels: dict[str, list[LabelledFace]] = {}
    for image in ElementTree.parse(path).getroot().iter("image"):
        faces = []
        for box in image.iter("box"):
            left, top = float(box.get("left")), float(box.get("top"))
            box_xy = (left, top, left + float(box.get("width")) - 1, top + float(box.get("height")) - 1)
            parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
            points = np.array([(float(p.get("x")), float(p.get("y"))) for p in parts]) if len(parts) == 68 else None
            faces.append(LabelledFace(box_xy, points))
        labels[image.get("file")] = faces
    return labels


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes (inclusive pixel ranges)."""
    width = min(a[2], b[2]) - max(a[0], b[0]) + 1
    height = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def landmark_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean point error over the inter-ocular distance (outer eye corners 36 and 45)."""
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / np.linalg.norm(truth[36] - truth[45]))


def match(detected: list[Face], labelled: list[LabelledFace], min_iou: float = 0.3) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by IoU: (detected index, labelled index) pairs."""
    pairs = sorted(((iou(d.box, t.box), i, j) for i, d in enumerate(detected) for j, t in enumerate(labelled)), reverse=True)
    used_d: set[int] = set()
    used_t: set[int] = set()
    matched = []
    for overlap, i, j in pairs:
        if overlap < min_iou:
            break
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
            matched.append((i, j))
    return matched


@dataclass
class DetectionReport:
    """Recall, false positives and landmark error over a labelled photo set."""

    labelled: int = 0
    found: int = 0
    false_positives: int = 0
    errors: list[float] = field(default_factory=list)
    per_image: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # labelled, found, extra

    @property
    def recall(self) -> float:
        return self.found / self.labelled if self.labelled else float("nan")

    @property
    def mean_error(self) -> float:
        return float(np.mean(self.errors)) if self.errors else float("nan")


def evaluate_photos(photos: Path, xml_files: list[Path], settings: DetectSettings | None = None) -> DetectionReport:
    """Detect faces in every labelled photo and compare them with the XML labels."""
    report = DetectionReport()
    for xml_file in xml_files:
        for name, labelled in read_dlib_xml(xml_file).items():
            faces = detect_faces(load_image(photos / name).rgb, settings)
            pairs = match(faces, labelled)
            report.labelled += len(labelled)
            report.found += len(pairs)
            report.false_positives += len(faces) - len(pairs)
            report.per_image[name] = (len(labelled), len(pairs), len(faces) - len(pairs))
            for i, j in pairs:
                if labelled[j].landmarks is not None:
                    report.errors.append(landmark_error(faces[i].landmarks, labelled[j].landmarks))
    return report


def iter_300w(zip_path: Path, settings: DetectSettings | None = None, limit: int | None = None):
    """(hand landmarks, detected faces, matched (face, label) pairs) per 300-W (AFW + HELEN) 128-px crop."""
    with zipfile.ZipFile(zip_path) as archive:
        labels = np.load(io.BytesIO(archive.read("landmarks.npz")))
        names, points = labels["names"], labels["landmarks"].astype(np.float64)
        for name, truth in list(zip(names, points))[:limit]:
            rgb = np.asarray(Image.open(io.BytesIO(archive.read(f"images/{name}"))).convert("RGB"))
            faces = detect_faces(rgb, settings)
            box = (*truth.min(axis=0), *truth.max(axis=0))
            yield truth, faces, match(faces, [LabelledFace(box, truth)], min_iou=0.2)


def evaluate_300w(zip_path: Path, settings: DetectSettings | None = None, limit: int | None = None) -> DetectionReport:
    """Landmark error on the 300-W crops with hand-annotated landmarks.

    Each crop holds one labelled face; the detected face overlapping its landmark box is scored.
    """
    report = DetectionReport()
    for truth, faces, pairs in iter_300w(zip_path, settings, limit):
        report.labelled += 1
        report.found += len(pairs)
        report.false_positives += len(faces) - len(pairs)
        for i, _ in pairs:
            report.errors.append(landmark_error(faces[i].landmarks, truth))
    return report


def evaluate_300w_pose(zip_path: Path, settings: DetectSettings | None = None, limit: int | None = None) -> dict:
    """Agreement of head pose from dlib's landmarks with head pose from the hand-annotated ones."""
    from faceflex.face.pose import estimate_pose

    truth_poses, found_poses = [], []
    for truth, faces, pairs in iter_300w(zip_path, settings, limit):
        for i, _ in pairs:
            truth_poses.append(estimate_pose(truth))
            found_poses.append(estimate_pose(faces[i].landmarks))
    a = np.array([(p.yaw, p.pitch, p.roll) for p in truth_poses])
    b = np.array([(p.yaw, p.pitch, p.roll) for p in found_poses])
    difference = np.abs(a - b)
    return {
        "faces": len(a),
        "mean_abs_difference_degrees": dict(zip(("yaw", "pitch", "roll"), difference.mean(axis=0).round(2).tolist())),
        "median_abs_difference_degrees": dict(zip(("yaw", "pitch", "roll"), np.median(difference, axis=0).round(2).tolist())),
        "label_agreement": round(float(np.mean([p.label == q.label for p, q in zip(truth_poses, found_poses)])), 4),
        "hand_label_counts": {label: sum(p.label == label for p in truth_poses) for label in ("frontal", "left", "right", "up", "down")},
        "hand_yaw_range": [round(float(a[:, 0].min()), 1), round(float(a[:, 0].max()), 1)],
    }
