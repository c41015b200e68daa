"""``faceflex edit``: move each face's VAE latent along an attribute direction and paint the change back.

Every face of a photo is encoded once (mean latent); each output (vector version x strength) is
decoded for all faces together, in blocks of at most :data:`DECODE_BLOCK` images, so memory stays
bounded for long ranges. Modes:

- ``residual`` (default): photo + mask x (decode(z + a v) - decode(z)). Strength 0 returns the
  photo bit for bit, and the photo's own texture, lighting and identity carry through.
- ``replace``: the decoded face decode(z + a v) itself is blended in (the original Face Flex).
- ``warp``: the photo's own full-resolution pixels move the way the latent edit moves the 68
  landmarks (``faceflex.inference.latent_landmarks``: displacement = a x (v @ W), mapped into the
  photo through the inverse alignment, a thin-plate spline anchored around the face). Nothing is
  painted: texture, wrinkles and identity are the photo's own.
- ``hybrid``: the warp, then, through the attribute's region mask, what a warp cannot make:
  decode(z + a v) minus decode(z) warped the same way (teeth where the lips part, a moustache).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from faceflex.choices import EDIT_MODES, EDIT_REGIONS
from faceflex.face.identity import SAME_PERSON, descriptor_distance, face_descriptor
from faceflex.face.masks import region_mask
from faceflex.face.warp import anchor_ring, warp_points
from faceflex.inference.attribute_vectors import AttributeVectors, VectorsError, load_vectors
from faceflex.inference.latent_landmarks import LandmarkRegressor, load_landmark_regressor
from faceflex.inference.vae_codec import VAE, load_vae
from faceflex.pipeline.flow import FaceCrop, Layer, StepOutput, Variant
from faceflex.viz import mask_panels

MAX_STRENGTH = 20.0  # |strength| above this only paints noise (latent norms of real faces are ~18-32)
MAX_OUTPUTS = 1000  # versions x strengths per photo
DECODE_BLOCK = 64  # images decoded per call
# region "auto": where each attribute lives; every attribute not listed edits the whole face.
AUTO_REGIONS = {
    "smiling": "mouth",
    "mouth_slightly_open": "mouth",
    "big_lips": "mouth",
    "wearing_lipstick": "mouth",
    "mustache": "upper-lip",
    "eyeglasses": "eyes",
    "narrow_eyes": "eyes",
    "bags_under_eyes": "eyes",
    "arched_eyebrows": "eyes",
    "bushy_eyebrows": "eyes",
}


def parse_range(start: float, end: float, step: float) -> list[float]:
    """Strengths from ``start`` to ``end`` by ``step``, ``end`` included when the steps reach it.

    Values are rounded to 6 decimals, so 0.1 steps give 0.3, not 0.30000000000000004.
    Negative starts, ends and steps are allowed; the step must point from start to end, and every
    strength must lie within +-:data:`MAX_STRENGTH`.
    """
    if not all(math.isfinite(v) for v in (start, end, step)):
        raise ValueError("range values must be finite numbers")
    if max(abs(start), abs(end)) > MAX_STRENGTH:
        raise ValueError(f"strengths must lie between -{MAX_STRENGTH:g} and {MAX_STRENGTH:g} (larger ones only paint noise)")
    if step == 0:
        raise ValueError("the range step must not be 0")
    if (end - start) * step < 0:
        raise ValueError(f"a step of {step:g} never gets from {start:g} to {end:g}")
    count = math.floor((end - start) / step + 1e-9) + 1
    if count > MAX_OUTPUTS:
        raise ValueError(f"the range gives {count} strengths; at most {MAX_OUTPUTS}")
    return [round(start + i * step, 6) + 0.0 for i in range(count)]  # + 0.0 turns -0.0 into 0.0


def strength_name(value: float) -> str:
    """A stable file-name form of a strength: 1.0, 0.3, -2.5."""
    return repr(round(float(value), 6) + 0.0)


INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip landmarks facing each other
OUTER_LIP_PAIRS = ((50, 58), (51, 57), (52, 56))  # upper / lower outer-lip landmarks facing each other
CLOSED_GAP = 0.06  # inner lips closer than this x the inter-ocular distance count as touching


def closed_lips(landmarks: np.ndarray, move: np.ndarray) -> np.ndarray:
    """``move`` (68, 2) with touching lips moved together (each facing pair by its mean), so they
    stay closed and keep their thickness.

    Lips count as touching when every facing pair of inner-lip points in ``landmarks`` is closer
    than :data:`CLOSED_GAP` x the inter-ocular distance (outer eye corners 36, 45).
    """
    iod = float(np.linalg.norm(landmarks[45] - landmarks[36]))
    gaps = [np.linalg.norm(landmarks[a] - landmarks[b]) for a, b in INNER_LIP_PAIRS]
    if max(gaps) >= CLOSED_GAP * iod:
        return move
    move = move.copy()
    for a, b in INNER_LIP_PAIRS + OUTER_LIP_PAIRS:
        move[a] = move[b] = (move[a] + move[b]) / 2
    move[60], move[64] = move[48] * 0.5 + move[60] * 0.5, move[54] * 0.5 + move[64] * 0.5
    return move


def auto_region(attribute: str) -> str:
    """The mask region ``auto`` picks for an attribute (see :data:`AUTO_REGIONS`)."""
    return AUTO_REGIONS.get(attribute.lower(), "face")


@dataclass(frozen=True)
class EditSettings:
    """What ``faceflex edit`` does; the ``edit:`` config keys and the CLI options fill it."""

    attribute: str = "Smiling"
    strengths: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    versions: tuple[int, ...] | None = None  # vector versions, one output row each; None: the mean of all versions
    mode: str = "residual"
    region: str = "auto"
    orthogonal_to: tuple[str, ...] = ()
    feather: float = 0.04
    plot_masks: bool = False
    identity: bool = True  # measure each output's dlib face-descriptor distance from the original, per face

    def __post_init__(self) -> None:
        if self.mode not in EDIT_MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(EDIT_MODES)}")
        if self.region not in EDIT_REGIONS:
            raise ValueError(f"unknown region {self.region!r}; choose one of {', '.join(EDIT_REGIONS)}")
        if not self.strengths:
            raise ValueError("no strengths to render")
        if any(not math.isfinite(s) or abs(s) > MAX_STRENGTH for s in self.strengths):
            raise ValueError(f"strengths must be finite and between -{MAX_STRENGTH:g} and {MAX_STRENGTH:g}")
        rows = len(self.versions) if self.versions is not None else 1
        if rows * len(self.strengths) > MAX_OUTPUTS:
            raise ValueError(
                f"{rows} versions x {len(self.strengths)} strengths = {rows * len(self.strengths)} outputs per photo; at most {MAX_OUTPUTS}"
            )


@dataclass
class EditStep:
    """The edit as a pipeline step: the VAE and its vectors travel together and are checked against each other."""

    options: EditSettings
    vae: VAE = field(default=None, repr=False)  # type: ignore[assignment]
    vectors: AttributeVectors = field(default=None, repr=False)  # type: ignore[assignment]
    landmarks: LandmarkRegressor | None = field(default=None, repr=False)  # warp and hybrid modes

    command = "edit"
    aligned_size = 128
    writes_variants = True
    picture_format = "png"

    def __post_init__(self) -> None:
        self.vae = self.vae if self.vae is not None else load_vae()
        self.vectors = self.vectors if self.vectors is not None else load_vectors()
        self.vectors.check_vae(self.vae.fingerprint)
        s = self.options
        self.attribute = self.vectors.resolve(s.attribute)
        against = [self.vectors.resolve(n) for n in s.orthogonal_to]
        self.against = against
        self.rows = list(s.versions) if s.versions is not None else [None]
        self.directions = np.stack([self.vectors.direction(self.attribute, None if k is None else [k], against) for k in self.rows])
        if self.directions.shape[1] != self.vae.latent_size:
            raise ValueError(f"the vectors have {self.directions.shape[1]} dimensions, the VAE's latent {self.vae.latent_size}")
        self.region = auto_region(self.attribute) if s.region == "auto" else s.region
        self.moves = None  # (rows, 68, 2): landmark displacement per unit strength, warp and hybrid modes
        if s.mode in ("warp", "hybrid"):
            self.landmarks = self.landmarks if self.landmarks is not None else load_landmark_regressor()
            made_for = self.landmarks.meta.get("vae_fingerprint")
            if made_for and self.vae.fingerprint and made_for != self.vae.fingerprint:
                raise VectorsError(f"the landmark regressor was made for VAE weights {made_for}, not {self.vae.fingerprint}")
            self.moves = np.stack([self.landmarks.displacement(d) for d in self.directions])

    def settings(self) -> dict:
        s = self.options
        return {
            "attribute": self.attribute,
            "strengths": list(s.strengths),
            "versions": self.rows if s.versions is not None else "mean of all",
            "mode": s.mode,
            "region": self.region,
            "orthogonal_to": self.against,
            "feather": s.feather,
            "vae_fingerprint": self.vae.fingerprint,
            "vectors_vae_fingerprint": self.vectors.vae_fingerprint,
        }

    def product(self, row: int, strength: float) -> str:
        version = self.rows[row]
        return f"{self.attribute}.{'mean' if version is None else f'v{version}'}.{strength_name(strength)}"

    def __call__(self, photo: np.ndarray, crops: list[FaceCrop]) -> StepOutput:
        if not crops:
            return StepOutput([])
        s = self.options
        latents = self.vae.encode(np.stack([c.aligned.image for c in crops]))
        masks = [region_mask(c.aligned.landmarks, self.region, feather=s.feather) for c in crops]
        pictures = {}
        if s.plot_masks:
            pictures = {f"face{c.index}.mask": mask_panels(c.aligned.image, c.aligned.landmarks, m) for c, m in zip(crops, masks)}
        records = [{"region": self.region} for _ in crops]
        originals = [face_descriptor(photo, c.face.landmarks) for c in crops] if s.identity else None
        variants = self._variants(latents, masks, crops)
        if originals is not None:
            variants = (self._with_identity(v, crops, originals) for v in variants)
        return StepOutput(records, variants, pictures, sheet_columns=len(s.strengths))

    @staticmethod
    def _with_identity(variant: Variant, crops: list[FaceCrop], originals: list[np.ndarray]) -> Variant:
        """The variant, measuring on its composed image how far each face moved from the person
        (dlib descriptor distance; >= 0.6 is another person by dlib's rule, and is warned about)."""

        def measure(image: np.ndarray) -> dict:
            if variant.info.get("strength") == 0:
                return {"identity_distance": [0.0] * len(crops)}
            distances = [round(descriptor_distance(o, face_descriptor(image, c.face.landmarks)), 4) for o, c in zip(originals, crops)]
            lost = [c.index for c, d in zip(crops, distances) if d >= SAME_PERSON]
            warning = {"warning": f"identity lost (descriptor distance >= {SAME_PERSON}) for face(s) {lost}"} if lost else {}
            return {"identity_distance": distances, **warning}

        return dataclasses.replace(variant, measure=measure)

    def _variants(self, latents: np.ndarray, masks: Sequence[np.ndarray], crops: list[FaceCrop]) -> Iterator[Variant]:
        """The outputs in order (rows = versions, columns = strengths), decoded block by block.

        Residual mode also needs decode(z) of every face: it rides along in the first block's decode.
        """
        s = self.options
        plan = [(row, column, strength) for row in range(len(self.rows)) for column, strength in enumerate(s.strengths)]
        faces, size = len(latents), latents.shape[1]
        block = max(1, DECODE_BLOCK // faces)
        base = None
        for start in range(0, len(plan), block):
            chunk = plan[start : start + block]
            if s.mode == "warp":  # nothing decoded: the photo's own pixels move
                for row, column, strength in chunk:
                    layers = [self._warp(i, crops[i], self.moves[row] * strength) for i in range(faces)]
                    yield self._variant(row, column, strength, layers)
                continue
            shifts = np.stack([strength * self.directions[row] for row, _, strength in chunk])  # (B, D)
            batch = (latents[:, None, :] + shifts[None]).reshape(-1, size)
            first = s.mode in ("residual", "hybrid") and base is None
            decoded = self.vae.decode(np.concatenate([latents, batch]) if first else batch)
            if first:
                base, decoded = decoded[:faces].astype(np.float32), decoded[faces:]
            decoded = decoded.reshape(faces, len(chunk), *decoded.shape[1:])
            for c, (row, column, strength) in enumerate(chunk):
                layers = []
                for i in range(faces):
                    if s.mode == "hybrid":
                        move = self.moves[row] * strength
                        layers += [
                            self._warp(i, crops[i], move),
                            self._residual(i, decoded[i, c], masks[i], base, strength, crops[i], move),
                        ]
                    elif s.mode == "residual":
                        layers.append(self._residual(i, decoded[i, c], masks[i], base, strength))
                    else:
                        if strength != 0:  # strength 0 is the unedited photo in every mode
                            layers.append(Layer(i, decoded[i, c], masks[i], "replace"))
                yield self._variant(row, column, strength, layers)

    def _variant(self, row: int, column: int, strength: float, layers: list[Layer]) -> Variant:
        version = self.rows[row]
        return Variant(
            self.product(row, strength),
            lambda: layers,
            info={"version": version if version is not None else "mean", "strength": strength},
            row=row,
            column=column,
            title=f"{self.attribute}, {strength_name(strength)}" + (f" (v{version})" if len(self.rows) > 1 else ""),
        )

    @staticmethod
    def _warp(face: int, crop: FaceCrop, move: np.ndarray, keep_closed: bool = True) -> Layer:
        """The photo's pixels moved: the face's own aligned landmarks go to themselves + ``move``.

        With ``keep_closed``, lips that touch in the photo stay together: a warp cannot paint the
        inside of a mouth, so parting closed lips would only stretch the line between them.
        """
        sources = crop.aligned.landmarks
        return Layer(face, np.stack([sources, sources + (closed_lips(sources, move) if keep_closed else move)]), None, "warp")

    @staticmethod
    def _residual(
        face: int, decoded: np.ndarray, mask: np.ndarray, base: np.ndarray, strength: float, crop: FaceCrop | None = None, move=None
    ) -> Layer:
        """decode(z + a v) - decode(z) as a change; with ``move`` (hybrid), decode(z) warped the same way first."""
        if strength == 0:
            return Layer(face, np.zeros_like(base[face]), mask, "add")
        reference = base[face]
        if move is not None:
            sources = crop.aligned.landmarks
            reference = warp_points(reference, sources, sources + move, anchor_ring(sources, scale=1.35), (0, 0, 128, 128))
        return Layer(face, decoded.astype(np.float32) - reference, mask, "add")
