"""Time `anonymize` per face (detect + landmarks + align + network + paste back + the identity check),
and a 10-second video's memory.

    python benchmarks/bench_anonymize.py [--repeats 5] [--weights W] [--video-seconds 10]

Photos (1024-px long side, after start-up and one warm-up call, median of the repeats; the same
pipeline and step as `faceflex anonymize`, the output composed and its identity distances measured
as the CLI does before saving; file writing excluded): the demo face, and VOC 2008_001322 (3 faces)
when the shared data is there. Per method (generate, blur, pixelate): ms per photo and per face.
Video: `faceflex anonymize` on a synthetic clip (the demo face drifting across a 640x480 frame at
25 fps), its resident memory sampled every half second. Record in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_geometry import photo_1024

from faceflex.inference.anonymizing import load_anonymizer
from faceflex.io.inputs import demo_image_path
from faceflex.pipeline.flow import run_step
from faceflex.steps.anonymize import AnonymizeStep

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


def anonymize(rgb: np.ndarray, step: AnonymizeStep) -> int:
    result = run_step(rgb, step)
    for variant, image in result.images():
        variant.measure(image)
    return len(result.records)


def synthetic_clip(path: Path, seconds: float) -> None:
    from PIL import Image

    from faceflex.io.video import VideoWriter

    face = Image.open(demo_image_path()).convert("RGB").resize((240, 281))
    writer = VideoWriter(path, 25)
    for i in range(int(seconds * 25)):
        frame = Image.new("RGB", (640, 480), (90, 110, 130))
        frame.paste(face, (40 + (i * 3) % 300, 100))
        writer.write(np.asarray(frame))
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--weights", help="anonymizer weights (default: the shipped ones)")
    parser.add_argument("--video-seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    start = time.perf_counter()
    anonymizer = load_anonymizer(args.weights, "cpu")
    print(f"start-up: loading the anonymizer {(time.perf_counter() - start) * 1000:.0f} ms")
    photos = {"demo (Grace Hopper)": photo_1024(demo_image_path())}
    if (SHARED / "2008_001322.jpg").is_file():
        photos["2008_001322 (VOC)"] = photo_1024(SHARED / "2008_001322.jpg")
    for method in ("generate", "blur", "pixelate"):
        step = AnonymizeStep(method, seed=0, anonymizer=anonymizer if method == "generate" else None)
        anonymize(photos["demo (Grace Hopper)"], step)
        for name, rgb in photos.items():
            runs = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                faces = anonymize(rgb, step)
                runs.append(time.perf_counter() - t)
            ms = statistics.median(runs) * 1000
            size = f"{rgb.shape[1]}x{rgb.shape[0]}"
            print(f"{method} | {name} {size}, {faces} face(s): {ms:.0f} ms a photo, {ms / max(faces, 1):.0f} ms a face")
    with tempfile.TemporaryDirectory() as temp:
        clip = Path(temp) / "clip.mp4"
        synthetic_clip(clip, args.video_seconds)
        faceflex = str(Path(sys.executable).with_name("faceflex"))
        command = [faceflex, "-q", "anonymize", str(clip), "-o", str(Path(temp) / "out"), "--workers", "1"]
        if args.weights:
            command += ["--weights", args.weights]
        t = time.perf_counter()
        process = subprocess.Popen(command)
        samples = []  # resident memory (MB) every half second while it runs
        while process.poll() is None:
            samples.append(resident_mb(process.pid))
            time.sleep(0.5)
        seconds = time.perf_counter() - t
        if process.returncode:
            raise SystemExit(f"faceflex anonymize failed ({process.returncode})")
        frames = int(args.video_seconds * 25)
        samples = [m for m in samples if m] or [0.0]
        quarter = max(1, len(samples) // 4)
        print(
            f"video: {frames} frames 640x480 in {seconds:.1f} s ({frames / seconds:.1f} frames/s); resident memory: "
            f"peak {max(samples):.0f} MB, first quarter {max(samples[:quarter]):.0f} MB, last quarter {max(samples[-quarter:]):.0f} MB"
        )


def resident_mb(pid: int) -> float:
    """The resident memory of a running process (Linux), 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


if __name__ == "__main__":
    main()
