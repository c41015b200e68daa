"""The attribute painter for inference: repaint one region of an aligned face so that it gains or
loses an attribute, keeping the person.

A painter is a set of **targets**, each an attribute and a direction (``Eyeglasses:add``,
``Mustache:remove``, ...). A target's network (:class:`~faceflex.models.face_unet.FaceUNet`, as the
anonymizer) sees the aligned face with the attribute's region taken out (around the eyes from temple to
temple, the eyes themselves kept; the upper lip; or the mouth with its smile folds:
:func:`faceflex.face.sketch.region_hole`)
and the landmarks drawn as lines; its identity code stays at the mean (a person's dlib descriptor
tells whether they wear glasses, and would paint them back as they were). It was trained only on
faces that show the target's outcome (to add glasses: faces wearing them), so it paints that
outcome, in the face around it. All targets share the anonymizer's encoder (frozen while they trained): a packed file
(:func:`pack_targets`) stores it once, then each target's decoder. Deterministic for given inputs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from faceflex.device import resolve_device
from faceflex.face.sketch import painter_input, region_hole
from faceflex.inference.face_painting import FacePainter, IdentityPrior
from faceflex.inference.unmasking import grown_softened
from faceflex.io.files import write_atomic
from faceflex.models.face_unet import FaceUNet, FaceUNetConfig
from faceflex.models.weights import WeightsError, fingerprint, load_weights
from faceflex.shipped import require_shipped

SHIPPED_WEIGHTS = "attribute_painter.pt"
# the attributes paint mode edits, and the region of the face an edit changes (each one of the classifier's attributes)
PAINTED = {
    "Eyeglasses": "eyes",
    "Mustache": "upper-lip",
    "Smiling": "mouth",
    "Wearing_Lipstick": "mouth",
    "Male": "lower-face",
    "Young": "face",
    "No_Beard": "lower-face",
}
# the holes a painter is trained to fill for each (faceflex.face.sketch.region_hole); at use the first,
# or for glasses whose lenses hide the eyes (sunglasses) the second: around the eyes with the eyes
# behind clear lenses kept, or the eyes too; the upper lip; the mouth (a smile's edit keeps only the
# space between the lips); below the nose; the skin but eyes and brows (Male and Young: tried, not shipped);
# below the nose, the lips kept (No_Beard added: a beard shaved off; tried, not shipped)
HOLES = {
    "Eyeglasses": ("frames", "eyes"),
    "Mustache": ("upper-lip",),
    "Smiling": ("mouth",),
    "Wearing_Lipstick": ("mouth",),
    "Male": ("lower-face",),
    "Young": ("skin",),
    "No_Beard": ("beard",),
}
PAINT_REGIONS = tuple(dict.fromkeys(hole for holes in HOLES.values() for hole in holes))
HIDDEN_EYES = 0.2  # eyes darker than this share of the nose bridge are behind dark lenses (bare faces: 1.8 % below, glasses: 25 %)


def lenses_hide_eyes(face: np.ndarray, landmarks: np.ndarray) -> bool:
    """Whether dark lenses hide the eyes of an aligned face (H, W, 3) uint8 with its 68 landmarks:
    the eyes' mean brightness below :data:`HIDDEN_EYES` x that of the nose's bridge (landmarks 28-30)."""
    from faceflex.face.masks import polygon_mask

    points = np.asarray(landmarks, np.float64)
    luminance = np.asarray(face, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    eyes = polygon_mask([points[36:42], points[42:48]], luminance.shape[::-1]) > 0
    if not eyes.any():
        return False
    nose = [
        luminance[int(round(y)), int(round(x))]
        for x, y in points[28:31]
        if 0 <= round(y) < luminance.shape[0] and 0 <= round(x) < luminance.shape[1]
    ]
    return bool(nose) and float(luminance[eyes].mean()) < HIDDEN_EYES * float(np.mean(nose))


def hole_for(attribute: str, face: np.ndarray, landmarks: np.ndarray) -> str:
    """The hole a painter fills for ``attribute`` on this aligned face (see :data:`HOLES`)."""
    holes = HOLES[attribute]
    return holes[1] if len(holes) > 1 and lenses_hide_eyes(face, landmarks) else holes[0]


DIRECTIONS = ("add", "remove")
SHARED_PREFIXES = ("down.", "bottleneck.")  # the encoder every target shares (frozen in training)


def target_name(attribute: str, direction: str) -> str:
    """``"Eyeglasses:add"``: how a target is named in files and manifests."""
    return f"{attribute}:{direction}"


class AttributePainter:
    """A loaded attribute painter: one :class:`FacePainter` per target (their encoders shared).
    Faces are (N, 128, 128, 3) uint8 aligned faces, landmarks (N, 68, 2) in that frame."""

    what, made_by = "attribute painter weights", "faceflex train painter, then faceflex train pack-painter"

    def __init__(
        self,
        models: dict[str, FaceUNet],
        prior: IdentityPrior,
        device: torch.device,
        meta: dict | None = None,
        fingerprint: str | None = None,
    ):
        self.painters = {name: FacePainter(model, prior, device) for name, model in models.items()}
        self.prior, self.device, self.meta, self.fingerprint = prior, device, meta or {}, fingerprint

    @property
    def targets(self) -> list[str]:
        return list(self.painters)

    def paints(self, attribute: str, direction: str) -> bool:
        return target_name(attribute, direction) in self.painters

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto") -> AttributePainter:
        """A packed file (:func:`pack_targets`) or one target's weights as ``faceflex train painter`` exports them."""
        record = load_weights(path)
        meta, state = record.get("meta", {}), record["state_dict"]
        try:
            config = FaceUNetConfig.from_dict(record["config"])
            prior = IdentityPrior.from_dict(meta["identity_prior"])
            if "targets" in meta:
                shared = {k: v for k, v in state.items() if k.startswith(SHARED_PREFIXES)}
                states = {t: {**shared, **_unprefixed(state, f"targets.{t}.")} for t in meta["targets"]}
            else:
                states = {meta["target"]: state}
            models: dict[str, FaceUNet] = {}
            for name, tensors in states.items():
                model = FaceUNet(config)
                model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
                if models:  # one encoder in memory for every target
                    first = next(iter(models.values()))
                    model.down, model.bottleneck = first.down, first.bottleneck
                models[name] = model.float()
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise WeightsError(f"{path}: not {cls.what} ({type(error).__name__})") from None
        return cls(models, prior, resolve_device(device), meta, fingerprint(path))

    def paint(
        self,
        faces: np.ndarray,
        landmarks: np.ndarray,
        attribute: str,
        direction: str,
        drawn: np.ndarray | None = None,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(faces (N, 128, 128, 3) uint8 with the attribute's region repainted by the target
        (``attribute``, ``direction``), holes (N, 128, 128) float32 in {0, 1}). ``drawn`` (N, 68, 2):
        landmarks to paint to instead of the face's own (a smile's moved mouth); the hole then
        covers the region at both."""
        name = target_name(attribute, direction)
        if name not in self.painters:
            raise ValueError(f"this attribute painter has no target {name!r} (it has {', '.join(self.painters)})")
        faces = np.asarray(faces)

        def make_input(i: int) -> np.ndarray:
            region = hole_for(attribute, faces[i], landmarks[i])
            hole = region_hole(landmarks[i], region)
            if drawn is None:
                return painter_input(faces[i], hole, landmarks[i])
            return painter_input(faces[i], np.maximum(hole, region_hole(drawn[i], region)), drawn[i])

        codes = np.zeros((len(faces), self.painters[name].model.config.code_size), np.float32)  # the mean identity
        return self.painters[name].fill(faces, make_input, codes, batch_size)


def changed_weight(painted: np.ndarray, face: np.ndarray, low: float = 5.0, high: float = 25.0) -> np.ndarray:
    """Where a painting really changes a face (both (S, S, 3) uint8, the same frame): (S, S) float32 in
    [0, 1], 0 where every channel is within ``low`` (0-255 units) of the face, 1 from ``high`` on,
    linear between, grown and softened by a pixel (:func:`~faceflex.inference.unmasking.grown_softened`).
    Blending a painting through it keeps the person's own pixels where the painting only repeats
    them (the skin around glasses taken off) and takes what it changes (the frames)."""
    diff = np.abs(painted.astype(np.float32) - face.astype(np.float32)).max(axis=2)
    weight = torch.from_numpy(np.clip((diff - low) / (high - low), 0.0, 1.0))[None, None]
    return grown_softened(weight, 1)[0, 0].numpy()


def _unprefixed(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def target_records(path: str | Path) -> list[tuple[str, dict, dict, dict]]:
    """(target, state, config, meta) of each target in a weight file: one target as ``faceflex train
    painter`` exports it, or every target of a packed file (its meta: the identity prior and how it was trained)."""
    record = load_weights(path)
    meta, state = record.get("meta", {}), record["state_dict"]
    if "targets" in meta:
        shared = {k: v for k, v in state.items() if k.startswith(SHARED_PREFIXES)}
        return [
            (
                t,
                {**shared, **_unprefixed(state, f"targets.{t}.")},
                record["config"],
                {**meta["trained"][t], "identity_prior": meta["identity_prior"]},
            )
            for t in meta["targets"]
        ]
    if "target" not in meta:
        raise WeightsError(f"{path}: not an attribute painter (no target in its metadata)")
    return [(meta["target"], state, record["config"], meta)]


def pack_targets(paths: list[str | Path], out: str | Path) -> Path:
    """One file from target weight files (``faceflex train painter`` exports, or packed files, whose
    targets are taken over) that share an encoder: the encoder once, then each target's other tensors
    under ``targets.<target>.``. Refuses files whose encoders, architectures or identity priors
    differ, or two of the same target."""
    records = [(path, *record) for path in paths for record in target_records(path)]
    _, _, first_state, first_config, first_meta = records[0]
    shared = {k: v for k, v in first_state.items() if k.startswith(SHARED_PREFIXES)}
    state, targets = dict(shared), []
    for path, target, tensors, config, meta in records:
        same_net = FaceUNetConfig.from_dict(config) == FaceUNetConfig.from_dict(first_config)  # keys added later take their defaults
        if not same_net or meta.get("identity_prior") != first_meta.get("identity_prior"):
            raise WeightsError(f"{path}: another architecture or identity prior than {paths[0]}")
        if any(not torch.equal(tensors[k], v) for k, v in shared.items()):
            raise WeightsError(f"{path}: its encoder differs from {paths[0]}'s (targets must start from the same anonymizer)")
        if target in targets:
            raise WeightsError(f"{path}: target {target} given twice")
        targets.append(target)
        state.update({f"targets.{target}.{k}": v for k, v in tensors.items() if not k.startswith(SHARED_PREFIXES)})
    meta = {
        "identity_prior": first_meta["identity_prior"],
        "targets": targets,
        "trained": {target: {k: meta.get(k) for k in ("epochs", "history", "settings")} for _, target, _, _, meta in records},
    }
    record = {"config": first_config, "state_dict": state, "meta": meta}
    return write_atomic(Path(out), lambda handle: torch.save(record, handle))


@functools.cache
def _shipped(device: str) -> AttributePainter:
    return AttributePainter.from_file(require_shipped(SHIPPED_WEIGHTS, AttributePainter.what, AttributePainter.made_by), device)


def load_attribute_painter(path: str | Path | None = None, device: str = "auto") -> AttributePainter:
    """The shipped attribute painter (loaded once per process and device), or the weight file at ``path``."""
    return _shipped(device) if path is None else AttributePainter.from_file(path, device)
