"""Time dlib's 128-d face descriptor: dlib's own network against faceflex's torch copy of it.

    python benchmarks/bench_descriptor.py [--repeats 20]

On the demo photo (1024-px long side), after start-up, median of the repeats: dlib's
``compute_face_descriptor`` on its face chip, faceflex's :func:`faceflex.face.identity.face_descriptors`
for one face (landmarks refitted, chip cut, network) and per face in a batch of 8, with the
largest difference between the two descriptors. Record in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from bench_geometry import median_ms, photo_1024  # noqa: E402  (same folder)

from faceflex.face.detect import detect_faces
from faceflex.face.dlib_models import FACE_DESCRIPTOR, model_path
from faceflex.face.identity import face_chip, face_descriptors
from faceflex.io.inputs import demo_image_path


def main() -> None:
    import dlib

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rgb = photo_1024(demo_image_path())
    landmarks = detect_faces(rgb)[0].landmarks
    chip = face_chip(rgb, landmarks)
    model = dlib.face_recognition_model_v1(str(model_path(FACE_DESCRIPTOR)))
    theirs = np.asarray(model.compute_face_descriptor(chip))
    ours = face_descriptors([rgb], [landmarks])[0]
    print(f"torch threads: {torch.get_num_threads()}; largest difference from dlib's descriptor: {np.abs(ours - theirs).max():.1e}")
    dlib_ms = median_ms(lambda: model.compute_face_descriptor(chip), args.repeats)
    print(f"dlib compute_face_descriptor (chip given): {dlib_ms:.1f} ms a face")
    print(f"faceflex face_descriptors, 1 face: {median_ms(lambda: face_descriptors([rgb], [landmarks]), args.repeats):.1f} ms")
    batch = median_ms(lambda: face_descriptors([rgb] * 8, [landmarks] * 8), args.repeats)
    print(f"faceflex face_descriptors, 8 faces: {batch / 8:.1f} ms a face")


if __name__ == "__main__":
    main()
