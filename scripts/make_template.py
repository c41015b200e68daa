"""Derive faceflex's 68-point alignment template from CelebA-HQ's dlib landmarks.

The template is the plain mean of the dlib 68-point landmarks of every CelebA-HQ face whose
landmarks came from a real detection (flags 1 and 2; flag 3 means the predictor ran on a fixed
box and is unreliable), in 128-px coordinates. Aligning user photos onto it gives them the
framing of the CelebA-HQ training faces.

    python scripts/make_template.py ../shared/data/celeba_hq/landmarks68.npz data/template68.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("landmarks", type=Path, help="CelebA-HQ landmarks68.npz (256-px coordinates)")
    parser.add_argument("output", type=Path, help="template JSON to write")
    args = parser.parse_args()

    data = np.load(args.landmarks)
    keep = data["flags"] != 3
    points = data["landmarks"][keep].astype(np.float64) / 2.0  # 256 px -> 128 px
    template = points.mean(axis=0)
    left_eye, right_eye = template[36:42].mean(axis=0), template[42:48].mean(axis=0)
    record = {
        "description": "mean dlib 68-point landmarks of CelebA-HQ at 128x128 (x, y; pixel centres at integers)",
        "size": 128,
        "source": "../shared/data/celeba_hq/landmarks68.npz, flags 1 and 2",
        "faces": int(keep.sum()),
        "command": "python scripts/make_template.py ../shared/data/celeba_hq/landmarks68.npz data/template68.json",
        "left_eye": [round(float(v), 3) for v in left_eye],
        "right_eye": [round(float(v), 3) for v in right_eye],
        "points": [[round(float(x), 3), round(float(y), 3)] for x, y in template],
    }
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{record['faces']} faces; eyes at {record['left_eye']} and {record['right_eye']}")


if __name__ == "__main__":
    main()
