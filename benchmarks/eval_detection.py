"""Detection recall and landmark error on the labelled photos in ../shared/data.

    python benchmarks/eval_detection.py [--data ../shared/data] [--limit-300w N]

Prints, for the nine PASCAL VOC group photos (dlib's XML labels) and the 300-W (AFW + HELEN)
crops: faces labelled, found, recall, extra detections and the mean landmark error normalised
by the inter-ocular distance. Record the output in docs/DETECTION.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from faceflex.evaluation.detection import evaluate_300w, evaluate_photos
from faceflex.face.detect import DetectSettings, detect_faces
from faceflex.io.images import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--limit-300w", type=int, default=None)
    args = parser.parse_args()
    photos = args.data / "photos"
    for detector in ("hog", "cnn"):
        settings = DetectSettings(detector=detector)
        start = time.perf_counter()
        report = evaluate_photos(photos, sorted(photos.glob("*_with_face_landmarks.xml")), settings)
        print(
            f"VOC ({detector}): {report.found}/{report.labelled} faces found, recall {report.recall:.3f}, "
            f"{report.false_positives} extra, landmark error {report.mean_error:.4f} IOD "
            f"({time.perf_counter() - start:.1f} s)"
        )
        for name, (labelled, found, extra) in sorted(report.per_image.items()):
            print(f"  {name}: {found}/{labelled} found, {extra} extra")
    for name in ("dogs.jpg", "sk_astronaut.png", "bald_guys.jpg", "Tom_Cruise_avp_2014_4.jpg", "cv_messi5.jpg"):
        faces = detect_faces(load_image(photos / name).rgb)
        print(f"{name}: {len(faces)} faces, scores {[round(f.score, 2) for f in faces]}")
    report = evaluate_300w(args.data / "landmarks_300w" / "landmarks68_afw_helen128.zip", limit=args.limit_300w)
    errors = sorted(report.errors)
    median = errors[len(errors) // 2] if errors else float("nan")
    failures = sum(e > 0.08 for e in errors)
    print(
        f"300-W AFW+HELEN crops: {report.found}/{report.labelled} detected ({report.recall:.3f}), "
        f"landmark error mean {report.mean_error:.4f}, median {median:.4f} IOD, "
        f"{failures} faces over 0.08 ({failures / max(len(errors), 1):.1%})"
    )


if __name__ == "__main__":
    main()
