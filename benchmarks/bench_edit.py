"""Time `edit` on a 1024-px single-face photo at 5 strengths (detect + align + encode + decode + paste back).

    python benchmarks/bench_edit.py [--repeats 10] [--large]

After start-up (models loaded, one warm-up call), excluding file writing; median of the repeats.
The same pipeline and step as `faceflex edit` (faceflex.pipeline.flow.run_step + EditStep), with
numpy's BLAS on one thread as the batch runner sets it (faceflex.pipeline.executors.one_blas_thread).
Also the peak resident memory over a stream of edits (flat = streaming), and with --large the
peak memory of one 40-megapixel photo at 6 strengths and of a 1,000-strength range.
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
from PIL import Image

from faceflex.inference.attribute_vectors import load_vectors
from faceflex.inference.vae_codec import load_vae
from faceflex.io.images import load_image
from faceflex.io.inputs import demo_image_path
from faceflex.pipeline.executors import one_blas_thread
from faceflex.pipeline.flow import run_step
from faceflex.steps.edit import EditSettings, EditStep


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def edit(rgb: np.ndarray, step: EditStep) -> int:
    """Every output composed (as the CLI does before saving each); returns the count."""
    return sum(1 for _ in run_step(rgb, step).images())


def median_ms(rgb: np.ndarray, step: EditStep, repeats: int) -> float:
    """Median milliseconds of :func:`edit` over ``repeats`` runs, after one warm-up."""
    edit(rgb, step)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        edit(rgb, step)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--large", action="store_true", help="also measure a 40-MP photo and a 1,000-strength range")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    start = time.perf_counter()
    vae, vectors = load_vae(device="cpu"), load_vectors()
    print(f"start-up: loading the VAE and the vectors {(time.perf_counter() - start) * 1000:.0f} ms")
    rgb = photo_1024(demo_image_path())
    strengths = (0.0, 1.0, 2.0, 3.0, 4.0)
    for mode, identity in (("residual", False), ("replace", False), ("warp", False), ("hybrid", False), ("residual", True)):
        step = EditStep(EditSettings("Smiling", strengths, (0,), mode, "auto", identity=identity), vae, vectors)
        label = mode + (" + identity distances" if identity else "")
        print(f"{label}: 1024-px demo photo, 1 face, 5 strengths: {median_ms(rgb, step, args.repeats):.0f} ms (median of {args.repeats})")
    for attribute, sign in (("Eyeglasses", 1), ("Eyeglasses", -1), ("Mustache", 1), ("Mustache", -1)):
        halves = tuple(sign * a / 2 for a in strengths)
        step = EditStep(EditSettings(attribute, halves, None, "paint", "auto", identity=False), vae, vectors)
        how = "drawn" if sign > 0 else "repainted"
        label = f"paint, {attribute} {'added' if sign > 0 else 'taken off'} ({how}), strengths 0-2 by 0.5"
        print(f"{label}: 1024-px demo photo, 1 face: {median_ms(rgb, step, args.repeats):.0f} ms (median of {args.repeats})")
    for attribute, values in (("Male", strengths), ("Young", tuple(1.5 * a for a in strengths))):
        step = EditStep(EditSettings(attribute, values, None, "prototype", "auto", identity=False), vae, vectors)
        label = f"prototype, {attribute}, strengths {values[0]:g}-{values[-1]:g}: 1024-px demo photo, 1 face, 5 strengths"
        print(f"{label}: {median_ms(rgb, step, args.repeats):.0f} ms (median of {args.repeats})")
    small = np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] // 5, rgb.shape[0] // 5), Image.Resampling.LANCZOS))  # face < 2x aligned
    halves = tuple(a / 2 for a in strengths)
    for photo, what in ((rgb, "1024-px demo photo (the warp alone)"), (small, f"{small.shape[0]}-px demo photo (teeth painted)")):
        step = EditStep(EditSettings("Smiling", halves, None, "paint", "auto", identity=False), vae, vectors)
        label = f"paint, Smiling, strengths 0-2 by 0.5: {what}, 1 face"
        print(f"{label}: {median_ms(photo, step, args.repeats):.0f} ms (median of {args.repeats})")
    step = EditStep(EditSettings("Smiling", strengths, (0, 1, 2), "residual", "auto", identity=False), vae, vectors)
    edit(rgb, step)
    t = time.perf_counter()
    for _ in range(args.repeats):
        edit(rgb, step)
    print(f"residual, 3 versions x 5 strengths (15 outputs, one encode): {(time.perf_counter() - t) / args.repeats * 1000:.0f} ms")
    step = EditStep(EditSettings("Smiling", strengths, (0,), "residual", "auto", identity=False), vae, vectors)
    peaks = []
    for i in range(30):
        edit(np.roll(rgb, i * 7, axis=1), step)
        peaks.append(peak_mb())
    print(f"peak RSS after 10 / 20 / 30 photos: {peaks[9]:.0f} / {peaks[19]:.0f} / {peaks[29]:.0f} MB (flat = streaming)")
    if args.large:
        demo = Image.fromarray(load_image(demo_image_path()).rgb)
        big = np.asarray(demo.resize((5400, 7400), Image.Resampling.BICUBIC))  # 40 MP
        before = peak_mb()
        count = edit(big, EditStep(EditSettings("Smiling", (0.0, 1.0, 2.0, 3.0, 4.0, 5.0), (0,), identity=False), vae, vectors))
        print(
            f"40-MP photo ({big.shape[1]}x{big.shape[0]}, {big.nbytes / 1e6:.0f} MB as RGB), {count} strengths: "
            f"peak RSS {peak_mb():.0f} MB (was {before:.0f})"
        )
        before = peak_mb()
        long_range = tuple(round(-10 + 0.02 * i, 2) for i in range(1000))
        count = edit(rgb, EditStep(EditSettings("Smiling", long_range, (0,), identity=False), vae, vectors))
        print(f"1,000-strength range on the 1024-px photo: {count} outputs, peak RSS {peak_mb():.0f} MB (was {before:.0f})")


if __name__ == "__main__":
    with one_blas_thread():
        main()
