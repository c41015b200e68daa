"""Following faces from one video frame to the next, so a face keeps one identity across a video.

Boxes are (left, top, right, bottom) in photo pixels. Matching is greedy by overlap (intersection
over union), best pairs first; a track not seen for ``patience`` frames is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Gives each face of a frame a track number: the number of the last frame's face it overlaps
    most (IoU >= ``min_iou``), or a new one (0, 1, 2, ... in order of appearance)."""

    def __init__(self, min_iou: float = 0.3, patience: int = 5) -> None:
        self.min_iou, self.patience = min_iou, patience
        self.tracks: dict[int, tuple[Box, int]] = {}  # track -> (last box, frames since seen)
        self.next_track = 0

    def assign(self, boxes: Sequence[Box]) -> list[int]:
        """The track of each box of this frame, in the boxes' order."""
        pairs = sorted(
            ((box_iou(box, last), i, track) for i, box in enumerate(boxes) for track, (last, _) in self.tracks.items()),
            reverse=True,
        )
        found: dict[int, int] = {}
        used: set[int] = set()
        for iou, i, track in pairs:
            if iou < self.min_iou:
                break
            if i not in found and track not in used:
                found[i] = track
                used.add(track)
        for i in range(len(boxes)):
            if i not in found:
                found[i], self.next_track = self.next_track, self.next_track + 1
        seen = {found[i]: tuple(float(v) for v in boxes[i]) for i in range(len(boxes))}
        self.tracks = {
            track: (seen[track], 0) if track in seen else (box, missed + 1)
            for track, (box, missed) in {**self.tracks, **{t: (b, 0) for t, b in seen.items()}}.items()
            if track in seen or missed + 1 <= self.patience
        }
        return [found[i] for i in range(len(boxes))]
