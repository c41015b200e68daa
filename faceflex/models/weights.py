"""Weight files: fp16 state dicts plus their architecture config, loadable without running code."""

from __future__ import annotations

from pathlib import Path

import torch

from faceflex.io import write_atomic
from faceflex.shipped import shipped  # noqa: F401  (weight files are found through it)


def save_weights(path: str | Path, model: torch.nn.Module, config: dict, extra: dict | None = None) -> Path:
    """Write ``{"config", "state_dict" (floating tensors as fp16), "meta"}`` atomically."""
    state = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()) for k, v in model.state_dict().items()}
    record = {"config": config, "state_dict": state, "meta": extra or {}}
    return write_atomic(Path(path), lambda handle: torch.save(record, handle))


def load_weights(path: str | Path) -> dict:
    """Read a weight file with ``torch.load(weights_only=True)`` (no code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found")
    return torch.load(path, map_location="cpu", weights_only=True)
