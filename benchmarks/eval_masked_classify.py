"""Gender and age of faces behind a face mask: read from the masked face, or from the face the
unmasking network paints under the mask.

    python benchmarks/eval_masked_classify.py [--data ../shared/data] [--cache cache] [--seed 0]

The UTKFace test part (ages 1-110, never trained on), each face aligned to faceflex's 128-px frame
and given one seeded synthetic mask (``synthetic_mask``, as the unmasking network's training
masks); the shipped classifiers read the bare face, the masked face, and the masked face with the
shipped unmasking network's painting. Prints age MAE, mean signed age error (bias) and gender
accuracy, overall and per age band. Record the output in docs/CLASSIFY.md.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from faceflex.face.crops import attribute_input
from faceflex.face.mask_overlay import synthetic_mask
from faceflex.inference.classifiers import load_classifiers
from faceflex.inference.unmasking import load_unmasker, mask_presence
from faceflex.models.labels import AGE_BANDS
from faceflex.train.face_sets import TEST, utk_faces, utk_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path("cache"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    faces, landmarks, _ = utk_faces(args.data / "utkface", args.cache)
    with open(args.data / "utkface" / "labels.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    ages, male = np.array([float(r[1]) for r in rows]), np.array([r[2] == "0" for r in rows])
    test = np.flatnonzero((utk_split(len(faces)) == TEST) & np.isfinite(landmarks).all(axis=(1, 2)))
    rng = np.random.default_rng(args.seed)
    masked = np.stack([synthetic_mask(faces[i], landmarks[i], rng)[0] for i in test])
    painted, probabilities = load_unmasker(None, "cpu")(masked)
    print(f"{len(test)} UTKFace test faces; masks found on {(mask_presence(probabilities)[1] >= 0.5).mean():.1%}")
    models = load_classifiers("cpu")
    no_expression = np.zeros((len(test), 48, 48), np.uint8)
    for name, images in (("bare", faces[test]), ("masked", masked), ("masked, painted", painted)):
        _, stages = models.dlib_features(list(images), list(landmarks[test]))
        predictions = models.predict(np.stack([attribute_input(image) for image in images]), no_expression, stages)
        error, right = predictions.age_years - ages[test], (predictions.male > 0.5) == male[test]
        bands = []
        for band, (lo, hi) in AGE_BANDS.items():
            inside = (ages[test] >= lo) & (ages[test] < hi)
            bands.append(f"{band}: {np.abs(error[inside]).mean():.1f} ({error[inside].mean():+.1f}), {right[inside].mean():.1%}")
        print(f"{name}: age MAE {np.abs(error).mean():.2f} (bias {error.mean():+.1f}), gender {right.mean():.1%}; " + "; ".join(bands))


if __name__ == "__main__":
    main()
