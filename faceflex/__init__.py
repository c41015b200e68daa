"""faceflex: find, align, edit and classify faces in photos.

The public Python API, imported lazily so that ``import faceflex`` (and the CLI's ``--help``)
stays fast::

    import faceflex

    records = faceflex.classify_photo("photo.jpg")                 # one dict per face
    for edited in faceflex.edit_photo("photo.jpg", "Smiling", [0, 1, 2]):
        faceflex.save_image(edited.image, f"smile_{edited.strength}.jpg")

    # the building blocks the pipeline is made of
    image = faceflex.load_image("photo.jpg")
    for face in faceflex.detect_faces(image.rgb):
        aligned = faceflex.align_face(image.rgb, face.landmarks)   # 128x128, template framing
        mask = faceflex.region_mask(aligned.landmarks, "face")
        image_out = faceflex.paste_back(image.rgb, aligned.image, aligned.matrix, mask)
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_API = {
    # one call per job
    "classify_photo": "faceflex.api",
    "edit_photo": "faceflex.api",
    "EditedImage": "faceflex.api",
    "mask_photo": "faceflex.api",
    "unmask_photo": "faceflex.api",
    "anonymize_photo": "faceflex.api",
    "ProcessedPhoto": "faceflex.api",
    # the pipeline and its steps (what the CLI runs)
    "run_step": "faceflex.pipeline.flow",
    "PhotoResult": "faceflex.pipeline.flow",
    "DetectStep": "faceflex.steps.detect",
    "ClassifyStep": "faceflex.steps.classify",
    "EditStep": "faceflex.steps.edit",
    "EditSettings": "faceflex.steps.edit",
    "MaskStep": "faceflex.steps.mask",
    "MaskSettings": "faceflex.steps.mask",
    "UnmaskStep": "faceflex.steps.unmask",
    "load_unmasker": "faceflex.inference.unmasking",
    "AnonymizeStep": "faceflex.steps.anonymize",
    "load_anonymizer": "faceflex.inference.anonymizing",
    # building blocks
    "load_image": "faceflex.io.images",
    "save_image": "faceflex.io.images",
    "LoadedImage": "faceflex.io.images",
    "iter_inputs": "faceflex.io.inputs",
    "demo_image_path": "faceflex.io.inputs",
    "InputError": "faceflex.io.inputs",
    "load_config": "faceflex.config",
    "ConfigError": "faceflex.config",
    "Face": "faceflex.face.detect",
    "DetectSettings": "faceflex.face.detect",
    "detect_faces": "faceflex.face.detect",
    "AlignedFace": "faceflex.face.align",
    "align_face": "faceflex.face.align",
    "template_landmarks": "faceflex.face.align",
    "region_mask": "faceflex.face.masks",
    "REGIONS": "faceflex.choices",
    "paste_back": "faceflex.face.blend",
    "draw_landmarks": "faceflex.viz",
    "VAE": "faceflex.inference.vae_codec",
    "load_vae": "faceflex.inference.vae_codec",
    "AttributeVectors": "faceflex.inference.attribute_vectors",
    "load_vectors": "faceflex.inference.attribute_vectors",
    "ClassifierModels": "faceflex.inference.classifiers",
    "load_classifiers": "faceflex.inference.classifiers",
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
