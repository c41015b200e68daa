"""Time `edit` on a 1024-px single-face photo at 5 strengths (detect + align + encode + decode + blend).

    python benchmarks/bench_edit.py [--repeats 10]

After start-up (models loaded, one warm-up call), excluding file writing; median of the repeats.
Also the peak resident memory over a stream of edits, to show a folder batch stays flat.
Record in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch
from bench_geometry import photo_1024

from faceflex.face.detect import detect_faces
from faceflex.inference.attribute_vectors import load_vectors
from faceflex.inference.vae_codec import load_vae
from faceflex.io.inputs import demo_image_path
from faceflex.steps.edit import edit_photo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    start = time.perf_counter()
    vae, vectors = load_vae(device="cpu"), load_vectors()
    print(f"start-up: loading the VAE and the vectors {(time.perf_counter() - start) * 1000:.0f} ms")
    rgb = photo_1024(demo_image_path())
    direction = vectors.direction("Smiling", [0])
    strengths = [0.0, 1.0, 2.0, 3.0, 4.0]
    for mode in ("residual", "replace"):
        def run() -> None:
            edit_photo(rgb, detect_faces(rgb), vae, direction, strengths, mode, "mouth")

        run()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        print(f"{mode}: 1024-px demo photo, 1 face, 5 strengths: {statistics.median(times) * 1000:.0f} ms (median of {args.repeats})")
    faces = detect_faces(rgb)
    t = time.perf_counter()
    for _ in range(args.repeats):
        edit_photo(rgb, faces, vae, direction, strengths)
    print(f"without detection: {(time.perf_counter() - t) / args.repeats * 1000:.0f} ms")
    peaks = []
    for i in range(30):
        photo = np.roll(rgb, i * 7, axis=1)
        edit_photo(photo, detect_faces(photo), vae, direction, strengths)
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"peak RSS after 10 / 20 / 30 photos: {peaks[9]:.0f} / {peaks[19]:.0f} / {peaks[29]:.0f} MB (flat = streaming)")


if __name__ == "__main__":
    main()
