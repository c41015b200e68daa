"""faceflex: find, align, edit and classify faces in photos.

The public Python API, imported lazily so that ``import faceflex`` (and the CLI's ``--help``)
stays fast::

    from faceflex import load_image, detect_faces, align_face, region_mask, paste_back

    image = load_image("photo.jpg")
    for face in detect_faces(image.rgb):
        aligned = align_face(image.rgb, face.landmarks)        # 128x128, template framing
        mask = region_mask(aligned.landmarks, "face")
        image_out = paste_back(image.rgb, aligned.image, aligned.matrix, mask)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "load_image": "faceflex.io",
    "save_image": "faceflex.io",
    "iter_inputs": "faceflex.io",
    "demo_image_path": "faceflex.io",
    "InputError": "faceflex.io",
    "LoadedImage": "faceflex.io",
    "load_config": "faceflex.config",
    "ConfigError": "faceflex.config",
    "Face": "faceflex.face.detect",
    "DetectSettings": "faceflex.face.detect",
    "detect_faces": "faceflex.face.detect",
    "AlignedFace": "faceflex.face.align",
    "align_face": "faceflex.face.align",
    "template_landmarks": "faceflex.face.align",
    "region_mask": "faceflex.face.masks",
    "REGIONS": "faceflex.face.masks",
    "paste_back": "faceflex.face.blend",
    "draw_landmarks": "faceflex.viz",
    "VAE": "faceflex.vae",
    "load_vae": "faceflex.vae",
    "Classifier": "faceflex.classify",
    "load_classifier": "faceflex.classify",
    "Pose": "faceflex.face.pose",
    "estimate_pose": "faceflex.face.pose",
    "Illumination": "faceflex.face.illumination",
    "measure_illumination": "faceflex.face.illumination",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'faceflex' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
