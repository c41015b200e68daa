"""Gender accuracy of faceflex's gender sources, and of the means reported, on both test parts.

    python benchmarks/eval_gender.py [--data ../shared/data] [--cache cache] [--fine]

Sources: the attribute model's Male output (trained on CelebA-HQ), the face model's Male output
(CelebA-HQ and UTKFace; calibrated) and the gender-and-age network on dlib's features (both; the
features come from the cache `faceflex train gender-age` fills). Also per UTKFace age band and race
group; ``--fine`` adds, for the reported gender, finer age bands and each race group from 3 years
on (UTKFace's babies). Record in docs/CLASSIFY.md.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from faceflex.inference.classifiers import REPORTED_MALE, load_classifiers
from faceflex.models.labels import AGE_BANDS, ATTRIBUTES, UTK_RACES
from faceflex.train.face_sets import face_set_dlib_stages, task_set

FINE_BANDS = ((0, 3), (3, 6), (6, 10), (10, 14), (14, 17), (17, 20), (20, 40), (40, 60), (60, 200))  # [low, high) years


def sources(images: np.ndarray, stages: np.ndarray) -> dict[str, np.ndarray]:
    """Every gender source and blend, as ``classify`` computes them (expression not read)."""
    return load_classifiers("cpu").predict(images, np.zeros((len(images), 48, 48), np.uint8), stages).male_sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path("cache"))
    parser.add_argument("--fine", action="store_true", help="finer age bands and race groups from 3 years on (reported gender)")
    args = parser.parse_args()
    celeba = task_set("attributes", args.data, args.cache)
    rows = celeba.rows("test")
    celeba_male = celeba.targets["attributes"][rows, ATTRIBUTES.index("Male")] > 0.5
    utk = task_set("age", args.data, args.cache)
    utk_rows = utk.rows("test")
    utk_male, old = utk.targets["gender"][utk_rows] == 0, utk.targets["age"][utk_rows] >= 50
    tap = load_classifiers("cpu").stage_block
    stages = face_set_dlib_stages(args.cache / "celeba_hq", args.data / "utkface", args.cache, tap)[:, 0]  # the plain chips'
    celeba_stages, utk_stages = stages[: len(celeba.images)], stages[len(celeba.images) :]
    on_celeba, on_utk = sources(celeba.images[rows], celeba_stages[rows]), sources(utk.images[utk_rows], utk_stages[utk_rows])
    ages = utk.targets["age"][utk_rows]
    with open(args.data / "utkface" / "labels.csv", newline="") as handle:  # the age set keeps labels.csv's order
        races = np.array([int(r[3]) for r in list(csv.reader(handle))[1:]])[utk_rows]
    for name in on_celeba:
        right_utk = (on_utk[name] > 0.5) == utk_male
        bands = ", ".join(f"{band} {right_utk[(ages >= lo) & (ages < hi)].mean():.1%}" for band, (lo, hi) in AGE_BANDS.items())
        bands += "; " + ", ".join(f"{race} {right_utk[races == code].mean():.1%}" for code, race in enumerate(UTK_RACES))
        print(
            f"{name}: CelebA-HQ test {((on_celeba[name] > 0.5) == celeba_male).mean():.1%}, "
            f"UTKFace test {right_utk.mean():.1%} ({bands}), UTKFace age >= 50 {right_utk[old].mean():.1%}"
        )
    if args.fine:
        right = (on_utk[REPORTED_MALE] > 0.5) == utk_male
        for lo, hi in FINE_BANDS:
            band = (ages >= lo) & (ages < hi)
            print(f"reported, ages {lo}-{hi - 1}: {right[band].mean():.1%} of {band.sum()} faces")
        older = ages >= 3
        print(f"reported, ages 3+: {right[older].mean():.1%} of {older.sum()} faces")
        for code, race in enumerate(UTK_RACES):
            group = races == code
            babies = (group & ~older).sum() / max(1, group.sum())
            share = f"under 3: {babies:.0%} of the group"
            print(f"reported, {race}: {right[group].mean():.1%}, ages 3+ {right[group & older].mean():.1%} ({share})")


if __name__ == "__main__":
    main()
