"""Batch throughput with 1 and 2 local workers and with the Ray backend, on a folder of real photos.

    python benchmarks/bench_workers.py [--photos 1000] [--commands classify,edit] [--ray]

Makes ``--photos`` copies of the shared photos (../shared/data/photos) at mixed long sides (480,
800, 1024, 1600 px) in a temporary folder, then times the whole command as a user runs it
(``faceflex classify`` / ``faceflex edit --range 0 2 1``, start-up included) with ``--workers 1``,
``--workers 2`` and, with ``--ray``, ``--backend ray`` on a local Ray. Prints photos per second and
the peak resident memory of the largest process (the batch's process or a worker). With
``--pinned``, also one worker held to one core (``taskset -c 0``): two such workers can at best
halve that time, so twice the 1-worker time over the pinned one bounds what 2 workers can gain on
a 2-core machine. Record in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
SIDES = (480, 800, 1024, 1600)
COMMANDS = {"classify": ["classify"], "edit": ["edit", "--range", "0", "2", "1"]}


def make_folder(folder: Path, count: int) -> None:
    """``count`` JPEG copies of the shared photos, cycling through the photos and the long sides."""
    sources = sorted(p for p in SHARED.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    images = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in sources]
    for i in range(count):
        image, side = images[i % len(images)], SIDES[(i // len(images)) % len(SIDES)]
        scale = side / max(image.size)
        image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS).save(
            folder / f"p{i:04d}.jpg", quality=92
        )


def run(command: list[str], photos: Path, out: Path, extra: list[str], prefix: tuple[str, ...] = ()) -> tuple[float, float]:
    """(seconds, peak MB of the largest child process) of one faceflex run (``prefix``: a launcher
    such as ``taskset -c 0``)."""
    faceflex = str(Path(sys.executable).with_name("faceflex"))
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([*prefix, faceflex, "-q", *command, str(photos), "-o", str(out), *extra], check=False, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--commands", default="classify,edit")
    parser.add_argument("--ray", action="store_true", help="also time --backend ray (needs faceflex[ray])")
    parser.add_argument("--pinned", action="store_true", help="also time 1 worker on one core (taskset -c 0): the 2-worker ceiling")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        photos, out = Path(temp) / "photos", Path(temp) / "out"
        photos.mkdir()
        make_folder(photos, args.photos)
        print(f"{args.photos} photos (long sides {', '.join(map(str, SIDES))} px) from {SHARED}")
        for name in args.commands.split(","):
            runs = [("1 worker", ["--workers", "1"], ()), ("2 workers", ["--workers", "2"], ())]
            if args.ray:
                runs.append(("ray, 2 actors", ["--backend", "ray", "--workers", "2"], ()))
            if args.pinned:
                runs.append(("1 worker on one core", ["--workers", "1"], ("taskset", "-c", "0")))
            base = None
            for label, extra, prefix in runs:
                seconds, peak = run(COMMANDS[name], photos, out, extra, prefix)
                base = base or seconds
                print(
                    f"{name}, {label}: {seconds:.1f} s, {args.photos / seconds:.2f} photos/s "
                    f"({base / seconds:.2f}x), peak memory so far {peak:.0f} MB (largest process)"
                )
                if prefix:
                    print(f"{name}: 2 workers on 2 cores can gain at most {2 * base / seconds:.2f}x (twice the 1-worker time over this)")


if __name__ == "__main__":
    main()
