"""Head-pose agreement on 300-W: pose from dlib's landmarks vs pose from the hand-annotated ones.

    python benchmarks/eval_pose.py [--data ../shared/data] [--limit N]

300-W has no pose labels, so this measures how much the detected landmarks move the pose
estimate (faceflex.face.pose) away from the one the hand landmarks give. Record in docs/CLASSIFY.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faceflex.evaluation.detection import evaluate_300w_pose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    report = evaluate_300w_pose(args.data / "landmarks_300w" / "landmarks68_afw_helen128.zip", limit=args.limit)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
