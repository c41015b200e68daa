"""Fitting the gender read from dlib's face descriptor (``faceflex train gender-probe``).

dlib's 128-d descriptor was trained to tell people apart on millions of faces; gender is written
in it linearly. A logistic regression on it, fitted on the face set's training part (CelebA-HQ's
Male and UTKFace's gender, the two sources weighted equally), reads gender better on CelebA-HQ
than faceflex's 64-px networks, and differently enough from them that their mean beats each
(docs/CLASSIFY.md). Deterministic: L-BFGS in float64 from zero weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def reported_temperature(probe: dict, images: np.ndarray, descriptors: np.ndarray, male: np.ndarray, rows: dict[str, np.ndarray]) -> dict:
    """The temperature of ``classify``'s reported gender with this ``probe`` and the shipped networks,
    fitted on the ``val`` rows (the blend of several sources is under-confident), and the
    calibration error (ECE) before and after it on the ``val`` and ``test`` rows. ``images`` are the
    face set's 64-px inputs, ``descriptors`` its raw descriptors, ``male`` its labels (NaN: unknown)."""
    from faceflex.evaluation.calibration import binary_ece, fit_temperature
    from faceflex.inference.classifiers import ClassifierModels, logit

    models = ClassifierModels("cpu", gender_probe={**probe, "reported_temperature": 1.0})
    logits = {}
    for part in ("val", "test"):
        known = rows[part][np.isfinite(male[rows[part]])]
        reported = models.predict(images[known], np.zeros((len(known), 48, 48), np.uint8), descriptors[known]).male
        logits[part] = (logit(reported), male[known])
    temperature = fit_temperature(*logits["val"])
    ece = {part: [round(binary_ece(x, y), 4), round(binary_ece(x, y, temperature), 4)] for part, (x, y) in logits.items()}
    return {"reported_temperature": round(temperature, 4), "reported_ece_before_after": ece}


L2_CHOICES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)  # penalty on the standardised weights, chosen on the validation part


def fit_logistic(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """(w, b) minimising the ``weights``-weighted mean logistic loss of ``features @ w + b`` against
    ``labels`` in {0, 1}, plus ``l2`` |w|^2 (the bias unpenalised)."""
    x, y = torch.from_numpy(np.asarray(features, np.float64)), torch.from_numpy(np.asarray(labels, np.float64))
    sample = torch.from_numpy(np.asarray(weights, np.float64))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(x @ w + b, y, reduction="none") * sample).sum() / sample.sum() + l2 * (w**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().numpy(), float(b.detach())


def fit_gender_probe(descriptors: np.ndarray, male: np.ndarray, source: np.ndarray, split: dict[str, np.ndarray]) -> dict:
    """The probe on raw descriptors: ``{"weights": (128,), "bias": float, ...record}``.

    ``descriptors`` (N, 128) (NaN rows: no descriptor), ``male`` (N,) in {0, 1} or NaN, ``source``
    (N,) 0 CelebA-HQ / 1 UTKFace, ``split`` rows of the ``train``, ``val`` and ``test`` parts. Features
    are standardised over the training part, each source weighted to half of the loss; the penalty
    is chosen by the mean of the two sources' validation accuracies; the standardisation is folded
    into the returned weights. The test part is only measured."""
    known = np.isfinite(descriptors).all(axis=1) & np.isfinite(male)
    parts = {name: rows[known[rows]] for name, rows in split.items()}
    train = parts["train"]
    mean, scale = descriptors[train].mean(axis=0), descriptors[train].std(axis=0)
    features = (descriptors - mean) / scale
    counts = np.bincount(source[train], minlength=2)
    balance = 1.0 / counts[source[train]]

    def accuracy(w: np.ndarray, b: float, rows: np.ndarray) -> dict:
        right = ((features[rows] @ w + b) > 0) == (male[rows] > 0.5)
        return {name: round(float(right[source[rows] == code].mean()), 4) for code, name in enumerate(("celeba_hq", "utkface"))}

    scores = {}
    for l2 in L2_CHOICES:
        w, b = fit_logistic(features[train], male[train], balance, l2)
        scores[l2] = accuracy(w, b, parts["val"])
    best = max(L2_CHOICES, key=lambda l2: np.mean(list(scores[l2].values())))
    w, b = fit_logistic(features[train], male[train], balance, best)
    return {
        "weights": (w / scale).tolist(),
        "bias": b - float((w * mean / scale).sum()),
        "l2": best,
        "validation_accuracy": {str(k): v for k, v in scores.items()},
        "test_accuracy": accuracy(w, b, parts["test"]),
        "train_faces": {name: int(n) for name, n in zip(("celeba_hq", "utkface"), counts)},
    }
