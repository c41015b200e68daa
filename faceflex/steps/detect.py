"""``faceflex detect``: every face with its box, score, size and 68 landmarks; no model, nothing painted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceflex.pipeline.flow import FaceCrop, StepOutput


@dataclass(frozen=True)
class DetectStep:
    """Records each face's size and landmarks (the pipeline adds index, box and score)."""

    command = "detect"
    aligned_size = None
    writes_variants = False
    picture_format = None

    def settings(self) -> dict:
        return {}

    def __call__(self, photo: np.ndarray, crops: list[FaceCrop]) -> StepOutput:
        records = [{"size": round(c.face.size, 2), "landmarks": np.round(c.face.landmarks, 2).tolist()} for c in crops]
        return StepOutput(records)
