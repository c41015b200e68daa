"""Recover a generic 3D face (68 dlib points) from CelebA-HQ's 2D landmarks, for head pose.

Rigid structure from motion (Tomasi-Kanade factorisation with the metric upgrade for a scaled
orthographic camera) over the training ids' landmarks: faces seen at many yaws and pitches give
the depth of every landmark. The result, in units of the outer-eye-corner distance with x to the
face's left in the image, y down and z towards the camera, is ``data/face3d68.json``.

    python scripts/make_face3d.py ../shared/data/celeba_hq/landmarks68.npz [--faces 20000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from faceflex.train.cache import TEST_IDS_FROM


def factorise(tracks: np.ndarray) -> np.ndarray:
    """3D shape (P, 3) from 2D views (F, P, 2) of one rigid object under scaled orthography."""
    centred = tracks - tracks.mean(axis=1, keepdims=True)
    w = np.concatenate([centred[..., 0], centred[..., 1]], axis=0)  # (2F, P)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    motion, shape = u[:, :3] * np.sqrt(s[:3]), (vt[:3].T * np.sqrt(s[:3])).T
    f = len(tracks)
    rows_x, rows_y = motion[:f], motion[f:]

    def coefficients(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # a^T L b for symmetric L, as a linear function of L's 6 free entries
        return np.stack(
            [
                a[:, 0] * b[:, 0],
                a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0],
                a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0],
                a[:, 1] * b[:, 1],
                a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1],
                a[:, 2] * b[:, 2],
            ],
            axis=1,
        )

    system = np.concatenate([coefficients(rows_x, rows_x) - coefficients(rows_y, rows_y), coefficients(rows_x, rows_y)])
    _, _, vt_l = np.linalg.svd(system, full_matrices=False)
    lin = vt_l[-1]
    gram = np.array([[lin[0], lin[1], lin[2]], [lin[1], lin[3], lin[4]], [lin[2], lin[4], lin[5]]])
    if np.trace(gram) < 0:
        gram = -gram
    values, vectors = np.linalg.eigh(gram)
    q = vectors @ np.diag(np.sqrt(np.clip(values, 1e-12, None)))
    points = (np.linalg.inv(q) @ shape).T  # (P, 3)
    return points


def canonical(points: np.ndarray, mean2d: np.ndarray) -> np.ndarray:
    """Rotate the shape so its frontal projection matches the mean 2D face, z towards the viewer."""
    centred2d = mean2d - mean2d.mean(axis=0)
    # Orthogonal Procrustes from 3D to the 2D mean face (first two rotated axes)
    best = None
    for mirror in (1.0, -1.0):
        p = points * np.array([1.0, 1.0, mirror])
        p = p - p.mean(axis=0)
        u, _, vt = np.linalg.svd(centred2d.T @ p)  # (2, 3)
        rows = u @ vt[:2]
        rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
        if np.linalg.det(rotation) < 0:
            continue
        rotated = p @ rotation.T
        nose_forward = rotated[30, 2] - rotated[[36, 45], 2].mean()  # nose tip nearer than eye corners
        candidate = rotated * np.array([1, 1, 1 if nose_forward > 0 else -1])
        error = np.linalg.norm(candidate[:, :2] / np.linalg.norm(candidate[:, :2]) - centred2d / np.linalg.norm(centred2d))
        if nose_forward > 0 and (best is None or error < best[0]):
            best = (error, candidate)
    if best is None:
        raise RuntimeError("no proper rotation puts the nose in front of the eyes")
    shape = best[1]
    return shape / np.linalg.norm(shape[45] - shape[36])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("landmarks", type=Path)
    parser.add_argument("--faces", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "face3d68.json")
    args = parser.parse_args()
    data = np.load(args.landmarks)
    keep = (data["ids"] < TEST_IDS_FROM) & (data["flags"] != 3)
    tracks = data["landmarks"][keep].astype(np.float64)
    chosen = np.random.default_rng(0).choice(len(tracks), size=min(args.faces, len(tracks)), replace=False)
    tracks = tracks[chosen]
    shape = canonical(factorise(tracks), tracks.mean(axis=0))
    record = {
        "points": shape.round(5).tolist(),
        "faces": int(len(tracks)),
        "units": "outer eye corner distance (points 36-45) = 1; x right, y down, z towards the camera",
        "note": "rigid factorisation of CelebA-HQ training-id dlib landmarks; made by scripts/make_face3d.py",
    }
    args.out.write_text(json.dumps(record) + "\n")
    print(f"nose tip depth {shape[30, 2] - shape[[36, 45], 2].mean():.3f}, chin {shape[8].round(3)}, written {args.out}")


if __name__ == "__main__":
    main()
