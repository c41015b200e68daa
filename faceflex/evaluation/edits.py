"""Measuring edits on held-out CelebA-HQ faces: does the attribute change, and is the person kept?

For an attribute A, faces lacking A are edited with +strength and faces having it with -strength,
by the same :class:`~faceflex.steps.edit.EditStep` and paste-back as ``faceflex edit`` (the aligned
128-px face is the photo, its cached landmarks the detection). The judge is what ``faceflex
classify`` reports (:meth:`~faceflex.inference.classifiers.ClassifierModels.reported_attributes`:
the attribute and face models' blend, gender from the gender-and-age network on dlib's features). A face "lacks" A when its
CelebA label and the judge agree on it (probability below 0.5), and "has" A when both say so.
Success: the judge's probability crosses 0.5. Identity: dlib's face descriptor of the edited photo
is within 0.6 of the original's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from faceflex.face.align import align_face
from faceflex.face.crops import attribute_input
from faceflex.face.detect import Face
from faceflex.face.identity import SAME_PERSON
from faceflex.inference.attribute_painting import PAINTED, AttributePainter
from faceflex.inference.attribute_prototypes import AttributePrototypes
from faceflex.inference.attribute_vectors import AttributeVectors
from faceflex.inference.classifiers import ClassifierModels
from faceflex.inference.latent_landmarks import LandmarkRegressor
from faceflex.inference.vae_codec import VAE
from faceflex.models.labels import ATTRIBUTES
from faceflex.pipeline.flow import FaceCrop, compose
from faceflex.steps.edit import EditSettings, EditStep
from faceflex.train.cache import CachedFaces

# attribute-vector name -> the attribute model's output (the same CelebA names)
EVALUATED = ("Smiling", "Male", "Young", "Mustache", "Eyeglasses")
LEAKAGE = ("Male", "Young", "Eyeglasses", "Smiling", "No_Beard")  # non-target attributes watched for flips


def face_from_landmarks(landmarks: np.ndarray) -> Face:
    """A detection record for known landmarks (box = their bounding box)."""
    (x0, y0), (x1, y1) = landmarks.min(axis=0), landmarks.max(axis=0)
    return Face((float(x0), float(y0), float(x1), float(y1)), 0.0, np.asarray(landmarks, dtype=np.float64))


def _probabilities(judge: ClassifierModels, images: np.ndarray, stages: np.ndarray | None) -> np.ndarray:
    """(N, len(ATTRIBUTES)) probabilities as ``classify`` reports them (the gender reads dlib's features ``stages``)."""
    return judge.reported_attributes(attribute_input(images), stages)


def mouth_geometry(image: np.ndarray, landmarks: np.ndarray) -> tuple[float, float]:
    """(mouth width, mouth-corner height above the outer eye corners' line), both over the
    inter-ocular distance, from dlib's landmarks re-fitted on ``image`` near ``landmarks``."""
    from faceflex.face.detect import predict_landmarks

    points = predict_landmarks(image, (*landmarks.min(axis=0), *landmarks.max(axis=0)))
    iod = float(np.linalg.norm(points[45] - points[36]))
    corners = (points[48, 1] + points[54, 1]) / 2 - (points[36, 1] + points[45, 1]) / 2
    return float(np.linalg.norm(points[54] - points[48])) / iod, -float(corners) / iod


def evaluate_edits(
    vae: VAE,
    vectors: AttributeVectors,
    judge: ClassifierModels,
    cache: CachedFaces,
    attributes: Sequence[str] = EVALUATED,
    strengths: Sequence[float] = (1.0, 2.0, 3.0, 4.0),
    per_side: int = 40,
    modes: Sequence[str] = ("residual", "replace"),
    versions: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
    regressor: LandmarkRegressor | None = None,
    painter: AttributePainter | None = None,
    prototypes: AttributePrototypes | None = None,
) -> dict:
    """Per attribute, mode and strength on the held-out split: success, identity kept, leakage
    (how often each other attribute of :data:`LEAKAGE` flips) and, for Smiling, the change of mouth
    width and mouth-corner lift (over the inter-ocular distance) that dlib measures on the edited
    faces that lacked the smile.

    ``versions``: the vector versions rendered (each counted); None: the mean of all versions.
    Mode paint is measured for the attributes and directions it can edit (glasses drawn; the painter's
    targets) and skipped for the others (listed under ``skipped``).
    """
    test_rows = np.sort(cache.split("test"))
    rows_per_face = len(versions) if versions else 1
    report: dict = {
        "per_side": per_side,
        "strengths": list(strengths),
        "versions": list(versions) if versions else "mean of all",
        "attributes": {},
    }
    skipped: list[str] = []
    for attribute in attributes:
        name = vectors.resolve(attribute)
        column = cache.attribute_names.index(name)
        target = ATTRIBUTES.index(name)
        watched = [a for a in LEAKAGE if a != name]
        test_stages = None  # the reported gender reads them
        if name == "Male":
            chunks = [test_rows[start : start + 64] for start in range(0, len(test_rows), 64)]
            test_stages = np.concatenate([judge.dlib_features(list(cache.faces[c]), list(cache.landmarks[c]))[1] for c in chunks])
        before = _probabilities(judge, np.asarray(cache.faces[test_rows]), test_stages)[:, target]
        labels = cache.attributes[test_rows, column]
        sides = {
            +1: test_rows[(labels < 0) & (before < 0.5)][:per_side],
            -1: test_rows[(labels > 0) & (before > 0.5)][:per_side],
        }
        results: dict = {}
        for mode in modes:
            if mode == "paint" and name not in PAINTED:
                continue
            success = np.zeros(len(strengths))
            same = np.zeros(len(strengths))
            flips = np.zeros((len(watched), len(strengths)))
            geometry = np.zeros((2, len(strengths)))
            by_side = {sign: np.zeros((2, len(strengths))) for sign in sides}  # per side: (success, identity kept) summed
            side_count = dict.fromkeys(sides, 0)
            count = 0
            for sign, rows in sides.items():
                options = EditSettings(
                    name, tuple(sign * s for s in strengths), tuple(versions) if versions else None, mode, "auto", identity=False
                )  # the same auto region (and auto mode) the command picks
                try:
                    step = EditStep(options, vae, vectors, regressor, painter, prototypes)
                except (ValueError, FileNotFoundError) as error:  # paint mode: no target for this direction (or no painter)
                    if mode != "paint":
                        raise
                    skipped.append(f"{name} {'added' if sign > 0 else 'removed'}: {error}")
                    continue
                for row in rows:
                    photo, landmarks = np.asarray(cache.faces[row]), cache.landmarks[row]
                    crops = [FaceCrop(0, face_from_landmarks(landmarks), align_face(photo, landmarks))]
                    output = step(photo, crops)
                    edited = np.stack([compose(photo, crops, variant.layers()) for variant in output.variants])
                    columns = np.tile(np.arange(len(strengths)), rows_per_face)
                    descriptors, stages = judge.dlib_features([photo, *edited], [landmarks] * (1 + len(edited)))
                    probabilities = _probabilities(judge, np.concatenate([photo[None], edited]), stages)
                    p = probabilities[1:, target]
                    hit = (p > 0.5) if sign > 0 else (p < 0.5)
                    for w, other in enumerate(watched):
                        k = ATTRIBUTES.index(other)
                        flipped = (probabilities[1:, k] > 0.5) != (probabilities[0, k] > 0.5)
                        flips[w] += np.bincount(columns, flipped, len(strengths)) / rows_per_face
                    if name == "Smiling" and sign > 0:
                        width0, lift0 = mouth_geometry(photo, landmarks)
                        for j, o in enumerate(edited):
                            width, lift = mouth_geometry(o, landmarks)
                            geometry[:, columns[j]] += np.array([width - width0, lift - lift0]) / rows_per_face
                    kept = np.linalg.norm(descriptors[1:] - descriptors[0], axis=1) < SAME_PERSON
                    success += np.bincount(columns, hit, len(strengths)) / rows_per_face
                    same += np.bincount(columns, kept, len(strengths)) / rows_per_face
                    by_side[sign] += np.stack([np.bincount(columns, hit, len(strengths)), np.bincount(columns, kept, len(strengths))])
                    side_count[sign] += rows_per_face
                    count += 1
                    if progress:
                        progress(1)
            per_strength = lambda values: dict(zip(map(str, strengths), np.round(values, 3).tolist()))  # noqa: E731
            results[mode] = {
                "faces": count,
                "faces_lacking": int(side_count[+1] // rows_per_face),  # measured: a side paint mode cannot edit counts 0
                "faces_having": int(side_count[-1] // rows_per_face),
                "success": per_strength(success / max(count, 1)),
                "identity_kept": per_strength(same / max(count, 1)),
                "leakage": {other: per_strength(flips[w] / max(count, 1)) for w, other in enumerate(watched)},
                "leakage_max": per_strength(flips.max(axis=0) / max(count, 1)),
                "by_side": {
                    side: {
                        "faces": int(side_count[sign] // rows_per_face),
                        "success": per_strength(by_side[sign][0] / side_count[sign]),
                        "identity_kept": per_strength(by_side[sign][1] / side_count[sign]),
                    }
                    for sign, side in ((1, "adding"), (-1, "removing"))
                    if side_count[sign]
                },
            }
            if name == "Smiling" and side_count[+1]:
                results[mode]["mouth_width_change_iod"] = per_strength(geometry[0] / len(sides[+1]))
                results[mode]["corner_lift_iod"] = per_strength(geometry[1] / len(sides[+1]))
        report["attributes"][name] = results
    if skipped:
        report["skipped"] = skipped
    return report
