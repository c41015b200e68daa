"""``faceflex edit``: move each face's VAE latent along an attribute direction and paint the change back.

Every face of a photo is encoded once (mean latent); each output (vector version x strength) is
decoded for all faces together, in blocks of at most :data:`DECODE_BLOCK` images, so memory stays
bounded for long ranges. Modes:

- ``residual``: photo + mask x (decode(z + a v) - decode(z)), made seamless first (the smooth
  field matching the change around the mask is taken out, so no tone step shows at its border).
  The photo's own texture, lighting and identity carry through.
- ``replace``: the decoded face decode(z + a v) itself is blended in (the original Face Flex).
- ``warp``: the photo's own full-resolution pixels move the way the latent edit moves the 68
  landmarks (``faceflex.inference.latent_landmarks``: displacement = a x (v @ W), mapped into the
  photo through the inverse alignment, a thin-plate spline anchored around the face). Nothing is
  painted: texture, wrinkles and identity are the photo's own.
- ``hybrid``: the warp, then, through the attribute's region mask, what a warp cannot make:
  decode(z + a v) minus decode(z) warped the same way (teeth where the lips part, a moustache).
- ``paint``: the attribute painter (``faceflex.inference.attribute_painting``) repaints the
  attribute's region (eyes, mouth or upper lip) from the face around it, with the target that adds
  the attribute (strength > 0) or removes it (< 0): glasses or a moustache painted as faces have
  them, not as a difference of two blurred decodes. Strengths below 1 in size blend the change in
  partly (a drawn moustache gets fewer strands instead); from 1 on it is made whole. For Smiling the photo is
  warped first by the strength (lips may part) and the mouth painted to the moved landmarks; the
  Smiling prototypes' colour and detail raise the cheeks around it.
- ``prototype``: the difference between the average training faces with and without the attribute
  (``faceflex.inference.attribute_prototypes``): the photo's own pixels warped by the landmarks'
  difference, the colour difference added (made seamless over the whole face), and the photo's own
  detail scaled band by band at its resolution (wrinkles, stubble, smooth skin). No latent, no decode;
  one unit of strength is half the difference between the two averages.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from faceflex.choices import EDIT_MODES, EDIT_REGIONS
from faceflex.face.align import transform_scale
from faceflex.face.blend import matched_chroma, seamless_change
from faceflex.face.glasses import GLASSES_STYLES, render_glasses
from faceflex.face.identity import SAME_PERSON, face_descriptors
from faceflex.face.masks import eyes_mask, forehead_mask, gaussian_blur, polygon_mask, region_mask
from faceflex.face.moustache import hair_color, render_moustache
from faceflex.face.warp import anchor_ring, warp_points
from faceflex.inference.attribute_painting import PAINTED, AttributePainter, changed_weight, load_attribute_painter
from faceflex.inference.attribute_prototypes import AttributePrototypes, load_prototypes
from faceflex.inference.attribute_vectors import AttributeVectors, VectorsError, load_vectors
from faceflex.inference.latent_landmarks import LandmarkRegressor, load_landmark_regressor
from faceflex.inference.vae_codec import VAE, load_vae
from faceflex.pipeline.flow import FaceCrop, Layer, StepOutput, Variant
from faceflex.viz import mask_panels

MAX_STRENGTH = 20.0  # |strength| above this only paints noise (latent norms of real faces are ~18-32)
MAX_TARGET_STRENGTH = 6.0  # --to searches strengths up to this
TARGET_BISECTIONS = 5  # refinement steps of the --to search (the bracket shrinks 32-fold)
NO_DECODE = ("warp", "paint", "prototype")  # modes that need no latent and decode nothing
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


def lips_kept(move: np.ndarray) -> np.ndarray:
    """``move`` (68, 2) with each facing pair of lip points (upper / lower, inner and outer) moved
    together, by their mean: the lips keep their opening and thickness while the mouth widens
    and its corners lift. A warp cannot paint what parting lips would show (teeth, the inside of
    the mouth): it would only stretch the line between closed lips into a dark smear, or an open
    mouth's teeth and gums into a grimace.
    """
    move = move.copy()
    for a, b in INNER_LIP_PAIRS + OUTER_LIP_PAIRS:
        move[a] = move[b] = (move[a] + move[b]) / 2
    move[60], move[64] = move[48] * 0.5 + move[60] * 0.5, move[54] * 0.5 + move[64] * 0.5
    return move


def lips_uncrossed(landmarks: np.ndarray, move: np.ndarray) -> np.ndarray:
    """``move`` (68, 2) for ``landmarks`` (68, 2; y down), except that lips it would push through each
    other (a closed mouth closed further) meet instead: each facing pair (upper / lower, inner and
    outer) whose moved upper point would lie below its moved lower point goes to their mean."""
    moved = np.asarray(landmarks, np.float64) + move
    for a, b in INNER_LIP_PAIRS + OUTER_LIP_PAIRS:
        if moved[a, 1] > moved[b, 1]:
            moved[a] = moved[b] = (moved[a] + moved[b]) / 2
    return moved - landmarks


def lips_opening(landmarks: np.ndarray) -> float:
    """How far apart the inner lips are: the mean gap of their facing pairs (same units as the landmarks, y down)."""
    return float(np.mean([landmarks[b, 1] - landmarks[a, 1] for a, b in INNER_LIP_PAIRS]))


def teeth_painted(landmarks: np.ndarray) -> bool:
    """Whether a smile added to a face with these aligned ``landmarks`` gets teeth painted between
    its parted lips: not when its lips are already apart by :data:`TEETH_SHOW` or more; there the
    warp's own stretch of the person's teeth looks better than a 128-px painting of new ones (seen
    on the astronaut)."""
    return lips_opening(landmarks) < TEETH_SHOW


TEETH_SHOW = 4.0  # aligned px (128-px frame; 0.13 IOD): held-out smiling faces' median 4.6, not smiling 0.5 (90 % below 3.5)


# a painted smile's teeth are 128-px paintings: on faces enlarged more than this (photo px per aligned px) they
# look like a blurred band, so there the smile is the warp alone (lips kept closed or as open as they were)
MAX_PAINT_ENLARGEMENT = 2.0
INNER_LIPS = list(range(60, 68))  # the 68 landmarks' inner lip line: between them, teeth or the dark of the mouth


# mode "auto": the mode measured best per attribute on held-out faces (docs/EDIT.md); others: residual.
# Smiling is a change of shape: the warp moves the photo's own mouth, then on faces of up to 2x the
# aligned size the attribute painter paints teeth between parted lips, or closed lips, and the Smiling
# prototypes raise the cheeks: 98 % success at strength 2 with identity kept for 97 % (`classify`'s
# judge), against 76 % / 98 % for the warp alone. Eyeglasses are drawn
# (added) or repainted by the attribute painter (removed): 98 % / 95 % added and 97 % / 92 % removed at
# strength 1, against residual's dark goggles (42 % at 2). A moustache is drawn (added) or repainted
# (removed): `classify` reads a drawn moustache on 70 % of men but on no woman (it learned
# moustaches from men), below residual's 55 % at 1, but residual paints a dark band, not hair.
# Gender and age are the prototypes' difference (shape, colour, the photo's own detail scaled): Male at 3
# 88 % success with identity kept for 82 % (residual: 93 % / 40 %), Young at 6 78 % / 92 % with 8 %
# leakage (residual at its best, 3: 55 % / 85 %, 28 % leakage), and no colour smears.
AUTO_MODES = {"smiling": "paint", "eyeglasses": "paint", "mustache": "paint", "male": "prototype", "young": "prototype"}


def glasses_area(hole: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(S, S) bool: the region glasses cover in the aligned frame: the painter's hole with the eye
    openings it keeps filled in, grown by about a pixel."""
    area = np.maximum(hole, eyes_mask(landmarks, grow=1.6, feather=0.0))
    return gaussian_blur((area > 0.5).astype(np.float32), 1.5) > 0.05


def auto_mode(attribute: str) -> str:
    """The edit mode ``auto`` picks for an attribute (see :data:`AUTO_MODES`)."""
    return AUTO_MODES.get(attribute.lower(), "residual")


def auto_region(attribute: str) -> str:
    """The mask region ``auto`` picks for an attribute (see :data:`AUTO_REGIONS`)."""
    return AUTO_REGIONS.get(attribute.lower(), "face")


@dataclass(frozen=True)
class EditSettings:
    """What ``faceflex edit`` does; the ``edit:`` config keys and the CLI options fill it."""

    attribute: str = "Smiling"
    strengths: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    versions: tuple[int, ...] | None = None  # vector versions, one output row each; None: the mean of all versions
    mode: str = "auto"
    region: str = "auto"
    orthogonal_to: tuple[str, ...] = ()
    feather: float = 0.04
    plot_masks: bool = False
    identity: bool = True  # measure each output's dlib face-descriptor distance from the original, per face
    target: float | None = None  # instead of strengths: edit each face until `classify` would report this probability
    glasses: str = "rectangle"  # paint mode, Eyeglasses added: the frames drawn (faceflex.face.glasses.GLASSES_STYLES)

    def __post_init__(self) -> None:
        if self.mode not in EDIT_MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(EDIT_MODES)}")
        if self.region not in EDIT_REGIONS:
            raise ValueError(f"unknown region {self.region!r}; choose one of {', '.join(EDIT_REGIONS)}")
        if self.glasses not in GLASSES_STYLES:
            raise ValueError(f"unknown glasses style {self.glasses!r}; choose one of {', '.join(GLASSES_STYLES)}")
        if self.target is not None and not 0.0 < self.target < 1.0:
            raise ValueError(f"--to must be a probability between 0 and 1 (exclusive), not {self.target}")
        if not self.strengths and self.target is None:
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
    painter: AttributePainter | None = field(default=None, repr=False)  # paint mode
    prototypes: AttributePrototypes | None = field(default=None, repr=False)  # prototype mode

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
        self.mode = auto_mode(self.attribute) if s.mode == "auto" else s.mode
        if self.mode == "paint":
            if self.attribute not in PAINTED:
                raise ValueError(f"mode paint edits {', '.join(PAINTED)}, not {self.attribute}")
            if s.region not in ("auto", PAINTED[self.attribute]):
                raise ValueError(f"mode paint repaints {self.attribute} in the region it was trained on ({PAINTED[self.attribute]})")
            self.region = PAINTED[self.attribute]
            signs = {1 if s.target >= 0.5 else -1} if s.target is not None else {int(np.sign(a)) for a in s.strengths if a}
            needed = [d for d, sign in (("add", 1), ("remove", -1)) if sign in signs and not self._drawn(d)]
            if needed:
                self.painter = self.painter if self.painter is not None else load_attribute_painter(device=self.vae.device.type)
            for direction in needed:
                if not self.painter.paints(self.attribute, direction):
                    has = ", ".join(self.painter.targets)
                    raise ValueError(f"the attribute painter cannot {direction} {self.attribute} (it has {has})")
        if self.mode == "paint" and self.attribute == "Smiling":  # a smile's cheeks: the prototypes' colour and detail
            self.prototypes = self.prototypes if self.prototypes is not None else load_prototypes()
        if self.mode == "prototype":
            if s.versions is not None or s.orthogonal_to:
                picked = " (auto picks it for " + self.attribute + ")" if s.mode == "auto" else ""
                raise ValueError(
                    f"mode prototype{picked} uses no attribute vectors: drop the vector versions and --orthogonal-to, "
                    "or choose --mode residual"
                )
            self.prototypes = self.prototypes if self.prototypes is not None else load_prototypes()
            self.prototypes.resolve(self.attribute)  # an attribute without prototypes is a usage error
        if self.mode in ("warp", "hybrid") or (self.mode == "paint" and self.attribute == "Smiling"):
            self.landmarks = self.landmarks if self.landmarks is not None else load_landmark_regressor()
            made_for = self.landmarks.meta.get("vae_fingerprint")
            if made_for and self.vae.fingerprint and made_for != self.vae.fingerprint:
                raise VectorsError(f"the landmark regressor was made for VAE weights {made_for}, not {self.vae.fingerprint}")
            self.moves = np.stack([self.landmarks.displacement(d) for d in self.directions])
        self._reached: dict[int, np.ndarray] = {}
        self._paintings: dict = {}
        self._smiles: dict = {}  # Smiling in paint mode, the outputs at hand: (row, face, strength) -> (move, painted face, region)
        self._enlarged = np.zeros(0, bool)  # per face of the photo at hand: enlarged too much for painted teeth
        if s.target is not None:
            from faceflex.inference.classifiers import load_classifiers
            from faceflex.models.labels import ATTRIBUTES

            if self.attribute not in ATTRIBUTES:
                raise ValueError(f"--to needs an attribute the classifier reads ({', '.join(ATTRIBUTES)}), not {self.attribute}")
            self.judge = load_classifiers(self.vae.device.type)  # read as `classify` reports it
            self.classifier_column = ATTRIBUTES.index(self.attribute)

    def settings(self) -> dict:
        s = self.options
        return {
            "attribute": self.attribute,
            "strengths": list(s.strengths),
            "versions": self.rows if s.versions is not None else "mean of all",
            "mode": self.mode,
            "region": self.region,
            "orthogonal_to": self.against,
            "feather": s.feather,
            **({"target": s.target} if s.target is not None else {}),
            "vae_fingerprint": self.vae.fingerprint,
            "vectors_vae_fingerprint": self.vectors.vae_fingerprint,
            **({"painter_fingerprint": self.painter.fingerprint} if self.painter is not None else {}),
            **({"glasses": s.glasses} if self.mode == "paint" and self.attribute == "Eyeglasses" else {}),
        }

    def product(self, row: int, strength: float) -> str:
        version = self.rows[row]
        return f"{self.attribute}.{'mean' if version is None else f'v{version}'}.{strength_name(strength)}"

    def __call__(self, photo: np.ndarray, crops: list[FaceCrop]) -> StepOutput:
        if not crops:
            return StepOutput([])
        s = self.options
        self._paintings: dict = {}  # paint mode, this photo: what every strength shares (a drawn patch, a repainted region)
        self._smiles = {}
        self._enlarged = np.array([1.0 / transform_scale(c.aligned.matrix) > MAX_PAINT_ENLARGEMENT for c in crops])  # --to keeps it
        # the warp, the painter and the prototypes need no latent: the regressor is linear, so a x (v @ W) moves every face alike
        latents = self.vae.encode(np.stack([c.aligned.image for c in crops])) if self.mode not in NO_DECODE else np.zeros((len(crops), 0))
        masks = [region_mask(c.aligned.landmarks, self.region, feather=s.feather) for c in crops]
        pictures = {}
        if s.plot_masks:
            pictures = {f"face{c.index}.mask": mask_panels(c.aligned.image, c.aligned.landmarks, m) for c, m in zip(crops, masks)}
        records = [{"region": self.region} for _ in crops]
        originals = face_descriptors([photo] * len(crops), [c.face.landmarks for c in crops]) if s.identity else None
        if s.target is None:
            plan = [
                (row, column, np.full(len(crops), strength)) for row in range(len(self.rows)) for column, strength in enumerate(s.strengths)
            ]
        else:
            plan = [(row, 0, self._strengths_to_target(latents, masks, crops, row)) for row in range(len(self.rows))]
        variants = self._variants(latents, masks, crops, plan)
        if s.identity:
            variants = (self._with_identity(v, crops, originals) for v in variants)
        return StepOutput(records, variants, pictures, sheet_columns=1 if s.target is not None else len(s.strengths))

    @staticmethod
    def _with_identity(variant: Variant, crops: list[FaceCrop], originals: np.ndarray) -> Variant:
        """The variant, measuring on its composed image how far each face moved from the person
        (dlib descriptor distance; >= 0.6 is another person by dlib's rule, and is warned about)."""

        def measure(image: np.ndarray) -> dict:
            strengths = variant.info.get("strengths", [variant.info.get("strength")] * len(crops))
            moved = [i for i, a in enumerate(strengths) if a != 0]
            distances = [0.0] * len(crops)
            edited = face_descriptors([image] * len(moved), [crops[i].face.landmarks for i in moved])
            for i, descriptor in zip(moved, edited):
                distances[i] = round(float(np.linalg.norm(descriptor - originals[i])), 4)
            lost = [c.index for c, d in zip(crops, distances) if d >= SAME_PERSON]
            warning = {"warning": f"identity lost (descriptor distance >= {SAME_PERSON}) for face(s) {lost}"} if lost else {}
            return {"identity_distance": distances, **warning}

        return dataclasses.replace(variant, measure=measure)

    def _decode(self, latents: np.ndarray, row: int, strengths: np.ndarray) -> np.ndarray:
        """decode(z_i + a_i v_row) for every face i (one batch)."""
        return self.vae.decode(latents + strengths[:, None] * self.directions[row][None])

    def _layers(self, crops, masks, base, decoded, row: int, strengths: np.ndarray) -> list[Layer]:
        """Every face's layers for one output: face i edited at ``strengths[i]`` (its decode: ``decoded[i]``)."""
        mode = self.mode
        if mode == "paint":
            return self._painted(crops, row, strengths)
        layers: list[Layer] = []
        for i, strength in enumerate(strengths):
            if strength == 0:  # strength 0 is the unedited photo in every mode
                continue
            move = self.moves[row] * strength if self.moves is not None else None
            if mode == "warp":
                layers.append(self._warp(i, crops[i], move))
            elif mode == "hybrid":  # the lips may part: the decoder paints what lies between them
                layers += [
                    self._warp(i, crops[i], move, keep_lips=False),
                    self._residual(i, decoded[i], masks[i], base, self.region, crops[i], move),
                ]
            elif mode == "residual":
                layers.append(self._residual(i, decoded[i], masks[i], base, self.region, crops[i]))
            elif mode == "prototype":
                layers += self._prototype(i, crops[i], masks[i], float(strength))
            else:
                layers.append(Layer(i, decoded[i], masks[i], "replace"))
        return layers

    def _drawn(self, direction: str) -> bool:
        """Whether paint mode draws the edit instead of painting it: glasses and a moustache added are
        drawn (:func:`render_glasses`, :func:`render_moustache`)."""
        return self.attribute in ("Eyeglasses", "Mustache") and direction == "add"

    def _painted(self, crops: list[FaceCrop], row: int, strengths: np.ndarray) -> list[Layer]:
        """Paint mode: each edited face's region repainted by the target that adds (strength > 0) or
        removes (< 0) the attribute, blended in by min(1, |strength|); for Smiling the face is
        warped by the strength first (lips may part) and the mouth painted to the moved landmarks."""
        from faceflex.inference.unmasking import paint_region

        layers = []
        for direction, chosen in (("add", strengths > 0), ("remove", strengths < 0)):  # strength 0 is the unedited photo
            edited = np.flatnonzero(chosen)
            if not len(edited):
                continue
            opacity = np.minimum(1.0, np.abs(strengths[edited])).astype(np.float32)
            if self._drawn(direction):  # glasses, a moustache: drawn over the photo at its own resolution
                for i, o in zip(edited, opacity):
                    layers.append(self._drawn_layer(i, crops[i], float(o)))
                continue
            if self.moves is not None:  # a smile: on a face the 128-px painting would enlarge blurrily, the warp alone, lips kept
                large = self._enlarged[edited]
                layers += [self._warp(i, crops[i], self.moves[row] * strengths[i]) for i in edited[large]]
                for i in edited[large]:
                    layers += self._cheeks(i, crops[i], float(strengths[i]), lips_kept(self.moves[row] * strengths[i]))
                edited, opacity = edited[~large], opacity[~large]
                keys = [(row, i, float(strengths[i])) for i in edited]
                self._paint_smiles(crops, keys)
                smiles = [self._smiles[key] for key in keys]
                layers += [self._warp(i, crops[i], move, keep_lips=False) for i, (move, _, _) in zip(edited, smiles)]
                layers += [Layer(i, face, region * o, "replace") for i, (_, face, region), o in zip(edited, smiles, opacity)]
                for i, (move, _, _) in zip(edited, smiles):
                    layers += self._cheeks(i, crops[i], float(strengths[i]), move)
                continue
            faces = np.stack([crops[i].aligned.image for i in edited])
            landmarks = np.stack([crops[i].aligned.landmarks for i in edited])
            keys = [(id(crops[i].aligned), direction) for i in edited]
            if any(key not in self._paintings for key in keys):  # the same painting for every strength
                painted, holes = self.painter.paint(faces, landmarks, self.attribute, direction)
                regions = paint_region(torch.from_numpy(holes)[:, None], grow=1)[:, 0].numpy()
                if self.attribute == "Eyeglasses":
                    # the frames go; where the painting repeats the skin, the person's own stays
                    regions = regions * np.stack([changed_weight(p, f) for p, f in zip(painted, faces)])
                    # skin painted beside tinted lenses comes out tinted: it takes the tone of the skin around the glasses
                    painted = np.stack([matched_chroma(p, f, glasses_area(h, lm)) for p, f, h, lm in zip(painted, faces, holes, landmarks)])
                self._paintings.update(zip(keys, zip(painted, regions)))
            painted, regions = zip(*(self._paintings[key] for key in keys))
            layers += [Layer(i, face, region * o, "replace", grain=True) for i, face, region, o in zip(edited, painted, regions, opacity)]
        return layers

    def _paint_smiles(self, crops: list[FaceCrop], keys: Sequence[tuple[int, int, float]]) -> None:
        """Smiling in paint mode: for each (row, face, strength) of ``keys`` not painted yet, the move
        of the face's landmarks (lips never pushed through each other), and the face warped by it with
        its mouth painted to the moved landmarks, in one painter batch per direction; kept in
        ``self._smiles`` as (move, painted face, paint region)."""
        from faceflex.inference.unmasking import paint_region

        missing = list(dict.fromkeys(key for key in keys if key not in self._smiles))
        for direction, chosen in (("add", [k for k in missing if k[2] > 0]), ("remove", [k for k in missing if k[2] < 0])):
            if not chosen:
                continue
            landmarks = np.stack([crops[i].aligned.landmarks for _, i, _ in chosen])
            moves = np.stack([lips_uncrossed(lm, self.moves[row] * strength) for lm, (row, _, strength) in zip(landmarks, chosen)])
            drawn = landmarks + moves
            images = [crops[i].aligned.image for _, i, _ in chosen]
            faces = np.stack(
                [
                    (warp_points(image, lm, d, anchor_ring(lm, scale=1.35), (0, 0, image.shape[1], image.shape[0])) + 0.5)
                    .clip(0, 255)
                    .astype(np.uint8)
                    for image, lm, d in zip(images, landmarks, drawn)
                ]
            )
            painted, holes = self.painter.paint(faces, landmarks, self.attribute, direction, drawn)
            if direction == "add":
                # a smile added: the warp moved the photo's own mouth, only between the lips (before or after) is painted;
                # taken away, the whole mouth (closed lips where teeth were: 95 % against 87 % between the lips alone)
                size = holes.shape[1:][::-1]
                holes = np.stack([polygon_mask([a[INNER_LIPS], b[INNER_LIPS]], size) * teeth_painted(a) for a, b in zip(landmarks, drawn)])
            regions = paint_region(torch.from_numpy(holes)[:, None], grow=1)[:, 0].numpy()
            self._smiles.update(zip(chosen, zip(moves, painted, regions)))

    def _drawn_layer(self, i: int, crop: FaceCrop, strength: float) -> Layer:
        """Face ``i``'s drawn glasses (blended in by ``strength`` below 1) or moustache (``strength``
        of its strands below 1; the hair colour read on the aligned face, strands placed by the face's
        index), drawn once per photo and strength."""
        key = (id(crop.face), 1.0 if self.attribute == "Eyeglasses" else strength)
        if key not in self._paintings:
            if self.attribute == "Eyeglasses":
                self._paintings[key] = render_glasses(crop.face.landmarks, self.options.glasses)
            else:
                color = hair_color(crop.aligned.image, crop.aligned.landmarks)
                self._paintings[key] = render_moustache(crop.face.landmarks, color, seed=crop.index, density=strength)
        patch, origin = self._paintings[key]
        if self.attribute == "Eyeglasses" and strength < 1:
            patch = patch.copy()
            patch[..., 3] = (patch[..., 3] * strength + 0.5).astype(np.uint8)
        return Layer(i, patch, None, "over", origin)

    def _variants(self, latents: np.ndarray, masks: Sequence[np.ndarray], crops: list[FaceCrop], plan) -> Iterator[Variant]:
        """The outputs in ``plan`` order ((row, column, per-face strengths)), decoded block by block.

        Residual and hybrid modes also need decode(z) of every face: it rides along in the first
        block's decode. Warp and paint modes decode nothing.
        """
        mode = self.mode
        faces = len(latents)
        block = max(1, DECODE_BLOCK // faces)
        base = None
        for start in range(0, len(plan), block):
            chunk = plan[start : start + block]
            decoded = [None] * len(chunk)
            if mode == "paint" and self.moves is not None:  # a smile: the chunk's mouths painted in one batch
                self._smiles = {}
                small = ~self._enlarged
                keys = [(row, i, float(a)) for row, _, strengths in chunk for i, a in enumerate(strengths) if a and small[i]]
                self._paint_smiles(crops, keys)
            if mode not in NO_DECODE:
                batch = np.concatenate([latents + a[:, None] * self.directions[row][None] for row, _, a in chunk])
                first = mode in ("residual", "hybrid") and base is None
                images = self.vae.decode(np.concatenate([latents, batch]) if first else batch)
                if first:
                    base, images = images[:faces].astype(np.float32), images[faces:]
                decoded = images.reshape(len(chunk), faces, *images.shape[1:])
            for (row, column, strengths), images in zip(chunk, decoded):
                yield self._variant(row, column, strengths, self._layers(crops, masks, base, images, row, strengths))

    def _variant(self, row: int, column: int, strengths: np.ndarray, layers: list[Layer]) -> Variant:
        version = self.rows[row]
        info: dict = {"version": version if version is not None else "mean"}
        if self.options.target is None:
            strength = float(strengths[0])
            info["strength"] = strength
            product, title = self.product(row, strength), f"{self.attribute}, {strength_name(strength)}"
        else:
            info.update(target=self.options.target, strengths=[round(float(a), 3) for a in strengths])
            info["probabilities"] = [round(float(p), 4) for p in self._reached[row]]
            product = f"{self.attribute}.{'mean' if version is None else f'v{version}'}.to{self.options.target:g}"
            title = f"{self.attribute} to {self.options.target:g}"
        return Variant(
            product,
            lambda: layers,
            info=info,
            row=row,
            column=column,
            title=title + (f" (v{version})" if len(self.rows) > 1 else ""),
        )

    def _strengths_to_target(self, latents: np.ndarray, masks, crops: list[FaceCrop], row: int) -> np.ndarray:
        """Per face, the strength at which the probability ``classify`` reports for the attribute on
        the edited face (:meth:`~faceflex.inference.classifiers.ClassifierModels.reported_attributes`)
        reaches ``target``: at least ``target`` when it is 0.5 or more (adding the attribute), at
        most when it is less (removing it). A face already past it keeps strength 0:
        no over-editing.

        The edit is rendered on the aligned face exactly as it will be pasted (same mode, mask and
        warp); the probability is searched on a coarse grid of strengths (one decode batch), then
        refined by bisection between the two grid points around the target.
        """
        target = self.options.target
        probability = self._probability_of(latents, masks, crops, row)
        current = probability(np.zeros(len(crops)))
        sign = np.full(len(crops), 1.0 if target >= 0.5 else -1.0)  # a target of 0.5 or more adds the attribute, less removes it
        grid = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, MAX_TARGET_STRENGTH])
        values = np.stack([probability(sign * g) for g in grid], axis=1)  # (faces, grid)
        reached = (values - target) * sign[:, None] >= 0
        strengths, probabilities = np.zeros(len(crops)), current.copy()
        for i in range(len(crops)):
            if reached[i, 0]:
                continue
            hit = np.flatnonzero(reached[i])
            if not len(hit):  # not reachable within the range: the strongest edit
                strengths[i], probabilities[i] = sign[i] * grid[-1], values[i, -1]
                continue
            low, high = grid[hit[0] - 1], grid[hit[0]]
            for _ in range(TARGET_BISECTIONS):
                middle = (low + high) / 2
                one = np.zeros(len(crops))
                one[i] = sign[i] * middle
                if (probability(one)[i] - target) * sign[i] >= 0:
                    high = middle
                else:
                    low = middle
            strengths[i] = sign[i] * high
            one = np.zeros(len(crops))
            one[i] = strengths[i]
            probabilities[i] = probability(one)[i]
        self._reached[row] = probabilities
        return strengths

    def _probability_of(self, latents, masks, crops: list[FaceCrop], row: int):
        """p(strengths) -> the classifier's probability of the attribute for each face, edited on its aligned crop."""
        from faceflex.face.align import AlignedFace
        from faceflex.face.crops import attribute_input
        from faceflex.pipeline.flow import compose

        identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        own = [  # each face in its own aligned frame (layers drawn over the photo are drawn at the aligned landmarks)
            FaceCrop(
                0, dataclasses.replace(c.face, landmarks=c.aligned.landmarks), AlignedFace(c.aligned.image, identity, c.aligned.landmarks)
            )
            for c in crops
        ]
        base = self.vae.decode(latents).astype(np.float32) if self.mode in ("residual", "hybrid") else None
        column = self.classifier_column

        def probability(strengths: np.ndarray) -> np.ndarray:
            decoded = self._decode(latents, row, strengths) if self.mode not in NO_DECODE else [None] * len(crops)
            layers = self._layers(own, masks, base, decoded, row, strengths)
            edited = np.stack(
                [
                    compose(c.aligned.image, [own[i]], [dataclasses.replace(la, face=0) for la in layers if la.face == i])
                    for i, c in enumerate(crops)
                ]
            )
            stages = None
            if self.attribute == "Male":  # the reported gender reads dlib's features
                stages = self.judge.dlib_features(list(edited), [c.aligned.landmarks for c in crops])[1]
            return self.judge.reported_attributes(attribute_input(edited), stages)[:, column]

        return probability

    @staticmethod
    def _warp(face: int, crop: FaceCrop, move: np.ndarray, keep_lips: bool = True) -> Layer:
        """The photo's pixels moved: the face's own aligned landmarks go to themselves + ``move``
        (with ``keep_lips``, the lips keep their opening: :func:`lips_kept`)."""
        sources = crop.aligned.landmarks
        return Layer(face, np.stack([sources, sources + (lips_kept(move) if keep_lips else move)]), None, "warp")

    def _cheeks(self, face: int, crop: FaceCrop, strength: float, move: np.ndarray) -> list[Layer]:
        """What a smile does around the mouth, from the Smiling prototypes: their colour change
        (seamless over the face) and detail change (folds, raised cheeks) outside the mouth and the
        eyes' openings, placed on the landmarks as the smile moved them. The mouth itself is the
        warp and the painter's: the prototypes' mouth is an average of parted lips, a pale band."""
        landmarks = crop.aligned.landmarks
        change = self.prototypes.change(self.attribute, landmarks, strength, moved=landmarks + move)
        face_area = region_mask(landmarks + move, "face")
        mouth = np.maximum(region_mask(landmarks, "mouth", feather=0.0), region_mask(landmarks + move, "mouth", feather=0.0))
        mouth = np.clip(2.0 * gaussian_blur((mouth > 0.01).astype(np.float32), 2.0), 0.0, 1.0)  # grown 2 px, soft
        kept = face_area * (1.0 - mouth) * (1.0 - eyes_mask(landmarks + move))
        colour = seamless_change(change.colour, face_area) * kept[..., None]
        return [Layer(face, colour, face_area, "add"), Layer(face, change.log_gains, kept, "detail")]

    def _prototype(self, face: int, crop: FaceCrop, mask: np.ndarray, strength: float) -> list[Layer]:
        """The prototype transform (:mod:`faceflex.inference.attribute_prototypes`): the photo's own
        detail scaled band by band, the colour difference added (over the whole face made seamless,
        as in residual mode; the eyes' openings keep their colour and detail), then the photo's own
        pixels warped by the shape difference (lips keep their opening), carrying both changes along.

        The change is linear in the strength, so every strength shares one placement, made once per
        face: the maps on the face's own landmarks at strength 1, scaled by each output's strength
        (``Layer.amount``: the photo's bands and the maps in it are then computed once per photo)."""
        entry = self._paintings.get((id(crop.aligned), "prototype"))
        if entry is None or entry[0] is not crop.aligned:  # the id of a crop no longer alive may be reused
            landmarks = crop.aligned.landmarks
            unit = self.prototypes.change(self.attribute, landmarks, 1.0, moved=landmarks)
            colour, kept = unit.colour, mask
            if self.region == "face":
                outside_eyes = 1.0 - eyes_mask(landmarks)
                colour, kept = seamless_change(colour, mask) * outside_eyes[..., None], mask * outside_eyes
            forehead = forehead_mask(landmarks)  # a fringe or a hat there keeps its darkness
            entry = self._paintings[(id(crop.aligned), "prototype")] = (crop.aligned, unit.move, colour, unit.log_gains, kept, forehead)
        _, move, colour, gains, kept, forehead = entry
        return [
            Layer(face, gains, kept, "detail", amount=strength),
            Layer(face, colour, mask, "add", amount=strength, shading=forehead),
            self._warp(face, crop, move * strength),
        ]

    @staticmethod
    def _residual(face: int, decoded: np.ndarray, mask: np.ndarray, base: np.ndarray, region: str, crop: FaceCrop, move=None) -> Layer:
        """decode(z + a v) - decode(z) as a change; with ``move`` (hybrid), decode(z) warped the same way first.

        Over the whole face the change is made seamless (no tone step where the mask ends) and left
        out of the eyes' openings; in the small regions (mouth, eyes, upper lip) the
        change *is* a local tone (lipstick, a moustache, frames) and is kept whole.
        """
        reference = base[face]
        if move is not None:
            sources = crop.aligned.landmarks
            reference = warp_points(reference, sources, sources + move, anchor_ring(sources, scale=1.35), (0, 0, 128, 128))
        change = decoded.astype(np.float32) - reference
        if region != "face":
            return Layer(face, change, mask, "add")
        # gender and age do not change the eyes' colour: the two decodes' difference there is a glow
        eyes = eyes_mask(crop.aligned.landmarks + (0.0 if move is None else move))[..., None]
        return Layer(face, seamless_change(change, mask) * (1.0 - eyes), mask, "add")
