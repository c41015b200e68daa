"""Finding faces that wear a mask: recall, extra detections and time per detector strategy.

    python benchmarks/eval_masked_detection.py [--data ../shared/data] [--detectors hog,hog+masked,hog+masked+upper] [--threshold -0.2]

Sets: the demo face under the six mask types (``faceflex mask --type``); the nine PASCAL VOC group
photos with a surgical_blue mask on every face dlib's HOG finds bare, scored against the XML labels;
the same photos bare (extra detections: what a masked-face detector adds to ordinary photos); the
real photos in ``photos/masked/`` (found = at least one face; seconds per photo). The detectors
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

from faceflex import mask_photo
from faceflex.evaluation.detection import evaluate_photos, read_dlib_xml
from faceflex.face.detect import DetectSettings, detect_faces
from faceflex.io.images import load_image, save_image

KINDS = ("surgical", "surgical_blue", "N95", "KN95", "cloth", "gas")


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
            print(
                f"{detector} (threshold {args.threshold}): demo {demo_found}/{len(KINDS)}"
                f" | masked VOC {voc.found}/{voc.labelled}, {voc.false_positives} extra"
                f" | bare VOC {bare.found}/{bare.labelled}, {bare.false_positives} extra"
                f" | real masked {sum(found)}/{len(real)} (missed {', '.join(missed) or 'none'}),"
                f" {min(seconds):.2f}-{max(seconds):.2f} s, mean {sum(seconds) / len(seconds):.2f} s"
            )


if __name__ == "__main__":
    main()
