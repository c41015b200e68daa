"""Calibration of classifier probabilities: expected calibration error and temperature scaling.

Temperature scaling (Guo et al., 2017) divides a head's logits by one positive number T fitted on
a validation part (minimum negative log-likelihood); it changes no decision, only how sure the
probabilities say they are. Users threshold probabilities, so they should mean what they say.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def expected_calibration_error(probabilities: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE: over equal-width bins of the confidence (the probability of the predicted label, (N,)
    in [0, 1]), the mean |accuracy - confidence| weighted by the bin's share of the N predictions;
    ``correct`` (N,) says whether each prediction was right. 0 is perfect."""
    confidence, correct = np.asarray(probabilities, np.float64), np.asarray(correct, np.float64)
    if len(confidence) == 0:
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            error += chosen.mean() * abs(correct[chosen].mean() - confidence[chosen].mean())
    return float(error)


def binary_ece(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = 15) -> float:
    """ECE of a sigmoid output (logits (N,), labels (N,) in {0, 1}) at ``temperature``."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64) / temperature))
    predicted = p >= 0.5
    return expected_calibration_error(np.where(predicted, p, 1 - p), predicted == (np.asarray(labels) > 0.5), bins)


def softmax_ece(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = 15) -> float:
    """ECE of a softmax output (logits (N, K), labels (N,) class indices) at ``temperature``."""
    p = _softmax(np.asarray(logits, np.float64) / temperature)
    return expected_calibration_error(p.max(axis=1), p.argmax(axis=1) == np.asarray(labels), bins)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T in [0.05, 20] minimising the negative log-likelihood of ``labels`` under
    logits / T: sigmoid for 1-D logits with labels in {0, 1}, softmax for (N, K) logits with class
    indices. 1.0 when there is nothing to fit on."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    if len(logits) == 0:
        return 1.0
    if logits.ndim == 1:
        signs = np.where(labels > 0.5, 1.0, -1.0)

        def nll(log_t: float) -> float:
            return float(np.logaddexp(0.0, -signs * logits / np.exp(log_t)).mean())

    else:

        def nll(log_t: float) -> float:
            z = logits / np.exp(log_t)
            z = z - z.max(axis=1, keepdims=True)
            return float((np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), labels]).mean())

    return float(np.exp(_golden_minimum(nll, math.log(0.05), math.log(20.0))))


def _golden_minimum(f: Callable[[float], float], low: float, high: float, tolerance: float = 1e-5) -> float:
    """The minimiser of a unimodal ``f`` on [low, high] by golden-section search."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tolerance:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return (a + b) / 2


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
