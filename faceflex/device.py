"""Choosing where models run."""

from __future__ import annotations


def resolve_device(name: str = "auto"):
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but this torch build sees no CUDA GPU")
    return torch.device(name)
