"""Fitting the latent -> landmarks ridge regression (``faceflex train landmarks``)."""

from __future__ import annotations

import numpy as np

from faceflex.inference.latent_landmarks import LandmarkRegressor

RIDGE_CHOICES = (0.1, 1.0, 10.0, 100.0, 1000.0)


def fit_ridge(latents: np.ndarray, targets: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) minimising |latents @ W + b - targets|^2 + strength |W|^2 (the bias unpenalised)."""
    x = np.asarray(latents, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc = x - mx
    weights = np.linalg.solve(xc.T @ xc + strength * np.eye(x.shape[1]), xc.T @ (y - my))
    return weights, my - mx @ weights


def landmark_error(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Mean point error in aligned pixels and over the inter-ocular distance (outer eye corners)."""
    per_face = np.linalg.norm(predicted - truth, axis=2).mean(axis=1)
    iod = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=1)
    return {"pixels": round(float(per_face.mean()), 4), "iod": round(float((per_face / iod).mean()), 5)}


def fit_landmark_regressor(
    latents: np.ndarray, landmarks: np.ndarray, train: np.ndarray, test: np.ndarray, meta: dict
) -> LandmarkRegressor:
    """Ridge strength chosen on the last 1,000 training faces, refitted on all of them; the test
    faces only measured (``meta["held_out_error"]``)."""
    flat = landmarks.reshape(len(landmarks), -1)
    fit_rows, val_rows = train[:-1000], train[-1000:]
    scores = {}
    for strength in RIDGE_CHOICES:
        w, b = fit_ridge(latents[fit_rows], flat[fit_rows], strength)
        scores[strength] = landmark_error((latents[val_rows] @ w + b).reshape(-1, 68, 2), landmarks[val_rows])["pixels"]
    best = min(scores, key=scores.get)
    w, b = fit_ridge(latents[train], flat[train], best)
    held_out = landmark_error((latents[test] @ w + b).reshape(-1, 68, 2), landmarks[test])
    mean_shape = landmark_error(np.broadcast_to(landmarks[train].mean(axis=0), landmarks[test].shape), landmarks[test])
    info = {
        **meta,
        "ridge": best,
        "validation_pixels": scores,
        "held_out_error": held_out,
        "mean_shape_error": mean_shape,
        "train_faces": int(len(train)),
        "test_faces": int(len(test)),
    }
    return LandmarkRegressor(w.astype(np.float32), b.astype(np.float32), info)
