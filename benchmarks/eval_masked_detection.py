"""Finding faces that wear a mask: recall, extra detections and time per detector strategy.

    python benchmarks/eval_masked_detection.py [--data ../shared/data] [--detectors hog,hog+masked,hog+masked+upper] [--threshold -0.2]

Sets: the demo face under the six mask types (``faceflex mask --type``); the nine PASCAL VOC group
photos with a surgical_blue mask on every face dlib's HOG finds bare, scored against the XML labels;
the same photos bare (extra detections: what a masked-face detector adds to ordinary photos); the
real photos in ``photos/masked/`` (found = at least one face; seconds per photo). Alignment under
a mask: the mean error of the points unmask aligns on (brows, nose bridge, eyes) against the same
points found on the bare face (the demo face; each real photo's ``*.unmasked.jpg``), in
inter-ocular distances: the median over the 16 masked faces and each face off by more than 0.1 IOD
(real photo 0's bare twin is another shot of the same person, so its figure means nothing). The detectors
are the shipped ones (``data/masked_face_detector.svm``, ``data/upper_face_detector.svm``): to
measure a new one, put it there.
Record the output in docs/UNMASK.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib.cbook
import numpy as np

from faceflex import mask_photo
from faceflex.evaluation.detection import evaluate_photos, read_dlib_xml
from faceflex.face.detect import DetectSettings, detect_faces
from faceflex.io.images import load_image, save_image
from faceflex.steps.unmask import RELIABLE_UNDER_MASK

KINDS = ("surgical", "surgical_blue", "N95", "KN95", "cloth", "gas")


def reliable_point_error(masked: np.ndarray, bare: np.ndarray, settings: DetectSettings) -> float | None:
    """Mean distance (inter-ocular distances) between the aligning points found on the masked photo
    and on its bare twin (dlib's HOG), for the bare photo's largest face and the masked face whose
    eyes lie nearest; None when either is not found."""
    reference, found = detect_faces(bare, DetectSettings()), detect_faces(masked, settings)
    if not reference or not found:
        return None
    truth = reference[0].landmarks
    eyes = truth[36:48].mean(axis=0)
    face = min(found, key=lambda f: float(np.linalg.norm(f.landmarks[36:48].mean(axis=0) - eyes)))
    iod = float(np.linalg.norm(truth[36:42].mean(axis=0) - truth[42:48].mean(axis=0)))
    return float(np.linalg.norm(face.landmarks[RELIABLE_UNDER_MASK] - truth[RELIABLE_UNDER_MASK], axis=1).mean()) / iod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--detectors", default="hog,hog+masked,hog+masked+upper")
    parser.add_argument("--threshold", type=float, default=0.0, help="minimum detection score (faceflex unmask: -0.2)")
    args = parser.parse_args()
    photos = args.data / "photos"
    xml_files = sorted(photos.glob("*_with_face_landmarks.xml"))
    demo = load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).rgb
    demo_masked = [mask_photo(demo, kind=kind, seed=0).image for kind in KINDS]
    with tempfile.TemporaryDirectory() as folder:
        masked_voc = Path(folder)
        for xml_file in xml_files:
            for name in read_dlib_xml(xml_file):
                save_image(mask_photo(load_image(photos / name).rgb, kind="surgical_blue", seed=0).image, masked_voc / name)
        real = sorted((photos / "masked").glob("*.masked.jpg"))
        for detector in args.detectors.split(","):
            settings = DetectSettings(detector=detector, threshold=args.threshold)
            demo_found = sum(len(detect_faces(image, settings)) == 1 for image in demo_masked)
            voc = evaluate_photos(masked_voc, xml_files, settings)
            bare = evaluate_photos(photos, xml_files, settings)
            found, seconds = [], []
            for path in real:
                start = time.perf_counter()
                found.append(len(detect_faces(load_image(path).rgb, settings)) > 0)
                seconds.append(time.perf_counter() - start)
            missed = [p.name.split(".")[0] for p, f in zip(real, found) if not f]
            pairs = {f"demo {kind}": (image, demo) for kind, image in zip(KINDS, demo_masked)}
            for p in real:
                pairs[p.name.split(".")[0]] = (load_image(p).rgb, load_image(p.with_name(p.name.replace(".masked", ".unmasked"))).rgb)
            errors = {name: reliable_point_error(m, b, settings) for name, (m, b) in pairs.items()}
            errors = {name: e for name, e in errors.items() if e is not None}
            off = ", ".join(f"{name} {e:.3f}" for name, e in errors.items() if e > 0.1)
            print(
                f"{detector} (threshold {args.threshold}): demo {demo_found}/{len(KINDS)}"
                f" | masked VOC {voc.found}/{voc.labelled}, {voc.false_positives} extra"
                f" | bare VOC {bare.found}/{bare.labelled}, {bare.false_positives} extra"
                f" | real masked {sum(found)}/{len(real)} (missed {', '.join(missed) or 'none'}),"
                f" {min(seconds):.2f}-{max(seconds):.2f} s, mean {sum(seconds) / len(seconds):.2f} s"
                f" | aligning points off by {np.median(list(errors.values())):.3f} IOD (median of {len(errors)}; > 0.1: {off or 'none'})"
            )


if __name__ == "__main__":
    main()
