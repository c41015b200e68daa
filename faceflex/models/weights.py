"""Weight files: fp16 state dicts plus their architecture config, loadable without running code."""

from __future__ import annotations

import functools
import hashlib
import pickle
import zipfile
from pathlib import Path

import torch

from faceflex.io.files import write_atomic


class WeightsError(ValueError):
    """A file that is not a usable faceflex weight file; ``str()`` names the file and the cause."""


def save_weights(path: str | Path, model: torch.nn.Module, config: dict, extra: dict | None = None) -> Path:
    """Write ``{"config", "state_dict" (floating tensors as fp16), "meta"}`` atomically."""
    state = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()) for k, v in model.state_dict().items()}
    record = {"config": config, "state_dict": state, "meta": extra or {}}
    return write_atomic(Path(path), lambda handle: torch.save(record, handle))


def load_weights(path: str | Path) -> dict:
    """Read a weight file with ``torch.load(weights_only=True)``: no code in the file is ever run.

    Raises :class:`WeightsError` (one line, no advice to lower the safety) for a file that holds
    anything but tensors and plain data, is not a torch file, or lacks the faceflex layout.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" in str(error).lower():  # a class or function inside: code the file would run
            raise WeightsError(
                f"{path}: refused: it holds Python objects other than tensors, which faceflex never loads (no code was run)"
            ) from None
        raise WeightsError(f"{path}: not a faceflex weight file (not a torch file)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise WeightsError(f"{path}: not a faceflex weight file ({type(error).__name__})") from None
    if not isinstance(record, dict) or not {"config", "state_dict"} <= set(record):
        raise WeightsError(f"{path}: not a faceflex weight file (no config and state_dict inside)")
    return record


@functools.cache
def load_network(path: str | Path, build, what: str) -> tuple[torch.nn.Module, dict]:
    """(float32 network, the weight file's record): ``build(config dict)`` makes the network the
    file's ``config`` describes, and the file's tensors are loaded into it; a file whose config or
    tensors do not fit is a :class:`WeightsError` naming ``what`` it should have held."""
    record = load_weights(path)
    try:
        model = build(record["config"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{path}: not {what} ({type(error).__name__})") from None
    return model.float(), record


def fingerprint(path: str | Path) -> str:
    """The first 16 hex digits of the file's SHA-256: which weights a derived file (vectors) belongs to."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
