"""Time `unmask` per photo (detect + landmarks + align + network + paste back) for each detector strategy.

    python benchmarks/bench_unmask.py [--data ../shared/data] [--repeats 3] [--detectors hog+masked,hog+masked+upper]
        [--threshold -0.2]

After start-up (models loaded, one warm-up call), excluding file writing; per photo the median of
the repeats. Photos: the demo face under a surgical mask scaled to a 1024-px long side, and the
real photos in ``photos/masked/`` (when the shared data is there). The same pipeline and step as
`faceflex unmask` (faceflex.pipeline.flow.run_step + UnmaskStep). Record in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from bench_geometry import photo_1024

from faceflex import mask_photo
from faceflex.face.detect import DetectSettings
from faceflex.inference.unmasking import load_unmasker
from faceflex.io.images import load_image
from faceflex.io.inputs import demo_image_path
from faceflex.pipeline.flow import run_step
from faceflex.steps.unmask import DETECTION, UnmaskStep


def unmask(rgb, step: UnmaskStep, settings: DetectSettings) -> tuple[int, int]:
    """The photo unmasked (composed, as the CLI does before saving); returns (faces, masks found)."""
    result = run_step(rgb, step, settings)
    for _ in result.images():
        pass
    return len(result.records), sum(r["mask_found"] for r in result.records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--detectors", default=f"hog+masked,{DETECTION.detector}")
    parser.add_argument("--threshold", type=float, default=DETECTION.threshold, help="detector threshold (unmask's default)")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    start = time.perf_counter()
    step = UnmaskStep(unmasker=load_unmasker(device="cpu"))
    print(f"start-up: loading the unmasking network {(time.perf_counter() - start) * 1000:.0f} ms")
    photos = {"demo, surgical mask, 1024 px": mask_photo(photo_1024(demo_image_path()), kind="surgical", seed=0).image}
    for path in sorted((args.data / "photos" / "masked").glob("*.masked.jpg")):
        photos[path.name] = load_image(path).rgb
    for detector in args.detectors.split(","):
        settings = DetectSettings(detector=detector, threshold=args.threshold)
        unmask(photos["demo, surgical mask, 1024 px"], step, settings)
        times, found = [], 0
        for name, rgb in photos.items():
            runs = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                faces, masks = unmask(rgb, step, settings)
                runs.append(time.perf_counter() - t)
            times.append(statistics.median(runs))
            found += masks > 0
            print(f"  {detector} | {name} ({rgb.shape[1]}x{rgb.shape[0]}): {times[-1] * 1000:.0f} ms, faces {faces}, masks found {masks}")
        print(
            f"{detector} (threshold {args.threshold:g}): {found}/{len(photos)} photos with a mask found and replaced; "
            f"{min(times):.2f}-{max(times):.2f} s a photo, mean {statistics.mean(times):.2f} s"
        )


if __name__ == "__main__":
    main()
