"""Time the face geometry pipeline (detect + landmarks + align + mask + paste-back) and start-up.

    python benchmarks/bench_geometry.py [--repeats 20]

Photos are resized to a 1024-px long side. Timings are after start-up (models loaded, one
warm-up call), median of the repeats, on whatever machine runs the script. Record the output in
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


def seconds(command: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_ms(function, repeats: int) -> float:
    """Median milliseconds of ``function()`` over ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def photo_1024(path: Path) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    scale = 1024 / max(image.size)
    return np.asarray(image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    exe = str(Path(sys.executable).parent / "faceflex")
    print(f"start-up: `faceflex --help` {seconds([exe, '--help']) * 1000:.0f} ms (median of 5)")
    start = time.perf_counter()
    import faceflex  # noqa: F401
    from faceflex.face import dlib_models
    from faceflex.face.align import align_face
    from faceflex.face.blend import paste_back
    from faceflex.face.detect import detect_faces
    from faceflex.face.masks import region_mask
    from faceflex.io.inputs import demo_image_path

    print(f"start-up: imports {(time.perf_counter() - start) * 1000:.0f} ms")
    start = time.perf_counter()
    dlib_models.hog_detector()
    dlib_models.landmark_predictor()
    print(f"start-up: loading dlib's detector and 68-point model {(time.perf_counter() - start) * 1000:.0f} ms")

    photos = {"grace_hopper (1 face)": demo_image_path()}
    if SHARED.is_dir():
        photos["Tom_Cruise (1 face)"] = SHARED / "Tom_Cruise_avp_2014_4.jpg"
        photos["2008_004176 (7 faces)"] = SHARED / "2008_004176.jpg"
    for label, path in photos.items():
        rgb = photo_1024(path)

        def pipeline(rgb: np.ndarray = rgb) -> tuple[float, float]:
            t0 = time.perf_counter()
            faces = detect_faces(rgb)
            t1 = time.perf_counter()
            out = rgb
            for face in faces:
                aligned = align_face(rgb, face.landmarks)
                out = paste_back(out, aligned.image, aligned.matrix, region_mask(aligned.landmarks))
            return t1 - t0, time.perf_counter() - t1

        pipeline()
        runs = [pipeline() for _ in range(args.repeats)]
        detect_ms = statistics.median(r[0] for r in runs) * 1000
        rest_ms = statistics.median(r[1] for r in runs) * 1000
        total_ms = statistics.median(sum(r) for r in runs) * 1000
        print(
            f"{label}, {rgb.shape[1]}x{rgb.shape[0]}: detect+landmarks {detect_ms:.1f} ms, "
            f"align+mask+paste {rest_ms:.1f} ms, total {total_ms:.1f} ms"
        )


if __name__ == "__main__":
    main()
