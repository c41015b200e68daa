"""Files shipped in ``data/`` (installed as the ``faceflex.data`` package)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

import numpy as np


def shipped(name: str) -> Path:
    """Path of a file shipped in ``data/``."""
    return Path(str(resources.files("faceflex.data").joinpath(name)))


def require_shipped(name: str, what: str, made_by: str) -> Path:
    """Path of the shipped file ``name``, or FileNotFoundError saying ``what`` is missing and the
    command (``made_by``) that makes it."""
    path = shipped(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped {what} is missing (make it with `{made_by}`)")
    return path


@functools.cache
def shipped_array(name: str, key: str) -> np.ndarray:
    """A read-only float64 array stored under ``key`` in the shipped JSON file ``name``."""
    array = np.asarray(json.loads(shipped(name).read_text())[key], dtype=np.float64)
    array.setflags(write=False)
    return array
