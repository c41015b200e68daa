"""Compare ways to find an attribute's direction in the VAE's latent space (issue 11, item 2).

    python benchmarks/eval_directions.py [--cache cache/celeba_hq] [--out runs/directions]

Writes one vector file per method (every one of its 25 "versions" the same direction, so that
`faceflex evaluate edit --vectors FILE --versions 21` measures it exactly as the shipped file's
version 21 is measured) and prints each direction's length and its cosine with the shipped
version 21. Methods, all from the mean latents of the CelebA-HQ training split (held-out ids never
used):

- mean_all: mean(latents with it) - mean(latents without it) over the whole training split
  (the shipped vectors are the same, over disjoint samples of 200 + 200 faces);
- lda: shrinkage linear discriminant w = (S_within shrunk 20 % toward its mean variance)^-1 d,
  scaled to d's component along it (strength 1 = the class gap measured along w);
- conditional: the mean difference with the mean differences of Male, Young, Heavy_Makeup,
  Wearing_Lipstick and Eyeglasses (other than itself) projected out.

Then, per method (about 2.5 min each on the 2-core CPU):

    faceflex evaluate edit --vectors runs/directions/lda.npz --versions 21 --per-side 30 --modes auto
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from faceflex.inference.attribute_vectors import AttributeVectors, load_vectors, orthogonalize
from faceflex.inference.vae_codec import load_vae
from faceflex.train.attribute_vectors import encode_rows
from faceflex.train.cache import open_cache

ATTRIBUTES = ("Smiling", "Male", "Young", "Mustache", "Eyeglasses")
CONDITIONED_ON = ("Male", "Young", "Heavy_Makeup", "Wearing_Lipstick", "Eyeglasses")
SHRINK = 0.2


def mean_difference(latents: np.ndarray, has: np.ndarray) -> np.ndarray:
    return latents[has].mean(axis=0) - latents[~has].mean(axis=0)


def shrinkage_lda(latents: np.ndarray, has: np.ndarray, shrink: float = SHRINK) -> np.ndarray:
    d = mean_difference(latents, has)
    centred = np.vstack([latents[has] - latents[has].mean(axis=0), latents[~has] - latents[~has].mean(axis=0)])
    within = np.cov(centred.T)
    shrunk = (1 - shrink) * within + shrink * np.trace(within) / len(within) * np.eye(len(within))
    w = np.linalg.solve(shrunk, d)
    return w * (d @ w) / (w @ w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="cache/celeba_hq")
    parser.add_argument("--out", default="runs/directions")
    args = parser.parse_args()
    faces = open_cache(args.cache)
    vae = load_vae(device="cpu")
    rows = faces.split("train")
    latents = encode_rows(vae, faces, rows).astype(np.float64)
    labels = {name: faces.attributes[rows, faces.attribute_names.index(name)] > 0 for name in set(ATTRIBUTES) | set(CONDITIONED_ON)}
    shipped = load_vectors()
    methods = {
        "mean_all": lambda n: mean_difference(latents, labels[n]),
        "lda": lambda n: shrinkage_lda(latents, labels[n]),
        "conditional": lambda n: orthogonalize(
            mean_difference(latents, labels[n]), np.array([mean_difference(latents, labels[o]) for o in CONDITIONED_ON if o != n])
        ),
    }
    out = Path(args.out)
    for method, direction in methods.items():
        vectors = []
        for name in ATTRIBUTES:
            v = direction(name)
            reference = shipped.direction(name, [21])
            cosine = float(v @ reference / np.linalg.norm(v) / np.linalg.norm(reference))
            print(f"{method:12s} {name:11s} length {np.linalg.norm(v):5.2f}  cosine with shipped v21 {cosine:.3f}")
            vectors.append(v)
        stacked = np.repeat(np.array(vectors, np.float32)[:, None], shipped.versions, axis=1)
        meta = {"method": method, "vae_fingerprint": vae.fingerprint, "faces": int(len(rows))}
        path = AttributeVectors(list(ATTRIBUTES), stacked, np.full(len(ATTRIBUTES), len(rows)), meta).save(out / f"{method}.npz")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
