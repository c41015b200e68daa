"""Measure how FER2013 frames a face, relative to faceflex's aligned 128-px template frame.

FER2013's 48x48 crops are not aligned. For a seeded sample of its training part, dlib finds the
68 landmarks (on a 4x enlargement); each face gives the similarity taking the template onto its
landmarks, and the median scale, angle and offset become ``data/fer_frame.json``: the fixed map
from the aligned 128-px frame to a FER-like 48-px crop that `faceflex classify` uses, so the
expression model sees faces framed as in its training data.

    python scripts/make_fer_frame.py ../shared/data/fer2013 [--sample 3000]
"""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from faceflex.face.align import estimate_similarity, template_landmarks
from faceflex.face.detect import DetectSettings, detect_faces
from faceflex.train.face_sets import FER_SPLIT_SEED, read_fer_labels, seeded_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fer_dir", type=Path)
    parser.add_argument("--sample", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "fer_frame.json")
    args = parser.parse_args()

    paths, _ = read_fer_labels(args.fer_dir)
    train = np.flatnonzero(seeded_split(len(paths), FER_SPLIT_SEED) == 0)
    chosen = np.random.default_rng(0).choice(train, size=min(args.sample, len(train)), replace=False)
    settings = DetectSettings()
    template = template_landmarks()
    scales, angles, offsets = [], [], []
    with zipfile.ZipFile(args.fer_dir / "fer2013_48.zip") as archive:
        for index in chosen:
            grey = Image.open(io.BytesIO(archive.read(paths[index]))).convert("RGB").resize((192, 192), Image.Resampling.BICUBIC)
            faces = detect_faces(np.asarray(grey), settings)
            if len(faces) != 1:
                continue
            points = (faces[0].landmarks + 0.5) / 4.0 - 0.5  # back to 48-px pixel centres
            m = estimate_similarity(template, points)
            scales.append(float(np.hypot(m[0, 0], m[1, 0])))
            angles.append(float(np.arctan2(m[1, 0], m[0, 0])))
            offsets.append(m[:, 2] + m[:, :2] @ np.array([63.5, 63.5]) - 23.5)  # template centre offset
    scale, angle = float(np.median(scales)), float(np.median(angles))
    centre_offset = np.median(np.array(offsets), axis=0)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    linear = np.array([[c, -s], [s, c]])
    translation = np.array([23.5, 23.5]) + centre_offset - linear @ np.array([63.5, 63.5])
    matrix = np.hstack([linear, translation[:, None]])
    record = {
        "matrix": matrix.round(5).tolist(),
        "size": 48,
        "faces_measured": len(scales),
        "sampled": int(len(chosen)),
        "scale_iqr": np.percentile(scales, [25, 75]).round(4).tolist(),
        "centre_offset_px": centre_offset.round(3).tolist(),
        "note": "maps the aligned 128-px template frame to a FER2013-like 48-px crop; made by scripts/make_fer_frame.py",
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
