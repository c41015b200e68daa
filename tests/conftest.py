"""Shared fixtures: the demo photo, the shared data folder (tests needing it skip without it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_path() -> Path:
    from faceflex.io.inputs import demo_image_path

    return demo_image_path()


@pytest.fixture(scope="session")
def demo_rgb(demo_path) -> np.ndarray:
    from faceflex.io.images import load_image

    return load_image(demo_path).rgb


@pytest.fixture(scope="session")
def demo_faces(demo_rgb):
    from faceflex.face.detect import detect_faces

    return detect_faces(demo_rgb)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def one_worker_unless_asked(monkeypatch):
    """``--workers auto`` means one worker in tests (batches run in-process, where monkeypatches
    apply, without starting a process pool per test); tests of the pool pass ``--workers N``."""
    monkeypatch.setattr("faceflex.pipeline.executors.machine_cores", lambda: 1)
