"""Time `classify` on a 1024-px photo (detect + landmarks + 3 networks + mask segmentation + pose + illumination).

    python benchmarks/bench_classify.py [--repeats 20]

After start-up (models loaded, one warm-up call); median of the repeats. Also the per-face cost
of the batched network calls on a many-face photo. Record in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from bench_geometry import SHARED, median_ms, photo_1024  # noqa: E402  (same folder)

from faceflex.face.align import align_face
from faceflex.face.detect import detect_faces
from faceflex.io.inputs import demo_image_path
from faceflex.pipeline.flow import FaceCrop, run_step
from faceflex.steps.classify import ClassifyStep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    start = time.perf_counter()
    step = ClassifyStep(device="cpu")
    print(f"start-up: loading the classifiers and the unmasking network {(time.perf_counter() - start) * 1000:.0f} ms")
    photos = [("demo (grace_hopper)", demo_image_path())]
    if SHARED.is_dir():
        photos += [("Tom_Cruise_avp_2014_4", SHARED / "Tom_Cruise_avp_2014_4.jpg"), ("2008_001322 (VOC group)", SHARED / "2008_001322.jpg")]
    for name, path in photos:
        rgb = photo_1024(Path(path))
        faces = detect_faces(rgb)
        crops = [FaceCrop(i, face, align_face(rgb, face.landmarks)) for i, face in enumerate(faces)]
        total = median_ms(lambda rgb=rgb: run_step(rgb, step).records, args.repeats)
        networks = median_ms(lambda rgb=rgb, crops=crops: step(rgb, crops), args.repeats)
        print(
            f"{name}, {rgb.shape[1]}x{rgb.shape[0]}, {len(faces)} face(s): classify {total:.1f} ms in all "
            f"(detection + landmarks included); classification alone {networks:.1f} ms"
        )


if __name__ == "__main__":
    main()
