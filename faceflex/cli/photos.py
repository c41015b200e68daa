"""The commands that work on photos: each builds its step and hands it to the shared runner."""

from __future__ import annotations

import os
import sys

import click

from faceflex.choices import ANONYMIZE_METHODS, EDIT_MODES, EDIT_REGIONS, GLASSES_KINDS, MASK_TYPES
from faceflex.cli.app import PhotoArgs, Session, UsageProblem, cli, photo_options, run_photos, torch_device


@cli.command()
@photo_options
@click.pass_obj
def detect(session: Session, **kwargs) -> None:
    """Find every face and its 68 landmarks.

    PATHS are image files, folders or glob patterns; with none, the demo face (matplotlib's
    grace_hopper.jpg). The records go to stdout as JSON, or to OUT_DIR/detect.json with --out-dir.
    """
    from faceflex.io.inputs import demo_image_path
    from faceflex.steps.detect import DetectStep

    args = PhotoArgs.take(kwargs)
    run_photos(session, args, session.config(args.overrides()), DetectStep(), default_inputs=[str(demo_image_path())])


@cli.command()
@photo_options
@click.option("--annotate", is_flag=True, help="Also save each photo (and video) with boxes and labels drawn (<name>.classified.<ext>).")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, help="Videos: classify every Nth frame.")
@click.pass_obj
def classify(session: Session, annotate: bool, every: int, **kwargs) -> None:
    """Gender, age, expression, smiling, occlusion, makeup, pose and illumination of every face.

    PATHS are images, videos (mp4, avi, mov, mkv, webm), folders or globs; with none, the demo
    face. One record per face; a photo without faces has none. Videos: per-frame records in
    OUT_DIR/<name>.frames.jsonl, and with --annotate an MP4 at the source frame rate / EVERY.
    """
    from faceflex.io.inputs import demo_image_path
    from faceflex.models.weights import WeightsError
    from faceflex.steps.classify import ClassifyStep

    args = PhotoArgs.take(kwargs)
    config = session.config(args.overrides())
    device = torch_device(config)
    try:
        step = ClassifyStep(device=device.type, annotate=annotate)
    except (FileNotFoundError, WeightsError) as error:
        raise UsageProblem(str(error)) from None
    run_photos(session, args, config, step, default_inputs=[str(demo_image_path())], videos=True, every=every)


@cli.command()
@photo_options
@click.option("--type", "kind", type=click.Choice(MASK_TYPES), help="Mask template (random: one per face, drawn from --seed).")
@click.option("--color", help="Recolour the mask: a CSS colour name or hex code (navy, #1f4e79).")
@click.option("--texture", help="A shipped texture (check/check_1, floral/floral_3, fruits/lemon, ...) or random.")
@click.pass_obj
def mask(session: Session, kind, color, texture, **kwargs) -> None:
    """Put a face mask on every face (MaskTheFace's templates, fitted to the 68 landmarks).

    PATHS are images, folders or globs; with none, the demo face. Writes <name>.masked.<ext> per
    photo (alpha kept) and OUT_DIR/mask.json with each face's mask type, template view and how much
    of the face it covers.
    """
    from faceflex.io.inputs import demo_image_path
    from faceflex.steps.mask import MaskSettings, MaskStep

    args = PhotoArgs.take(kwargs)
    config = session.config({**args.overrides(), "mask.type": kind, "mask.color": color, "mask.texture": texture})
    section = config["mask"]
    try:
        step = MaskStep(MaskSettings(section["type"], section["color"], section["texture"], config["seed"]))
    except ValueError as error:
        raise UsageProblem(str(error)) from None
    run_photos(session, args, config, step, default_inputs=[str(demo_image_path())])


@cli.command()
@photo_options
@click.option("--save-mask", is_flag=True, default=None, help="Also save the predicted mask (<name>.mask.png, white = mask).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Unmasking weights (default: the shipped data/unmask.pt).")
@click.option("--detail-weights", type=click.Path(dir_okay=False), help="A detail stage over them (faceflex train unmask-detail).")
@click.pass_obj
def unmask(session: Session, save_mask, weights, detail_weights, **kwargs) -> None:
    """Take face masks off: find the mask on every face and paint the face it hides.

    PATHS are images, folders or globs; with none, the demo face. The lower face is synthesised
    (a plausible face, not the person's own); a face without a mask is left untouched. Detection:
    unmask.detector and unmask.threshold (hog+masked+upper down to -0.2: dlib's HOG misses most masked
    faces) unless --detector / --threshold are given.
    Writes <name>.unmasked.<ext> and OUT_DIR/unmask.json (per face: mask found, its coverage, the box).
    """
    from faceflex.io.inputs import demo_image_path
    from faceflex.models.weights import WeightsError
    from faceflex.steps.unmask import UnmaskStep

    args = PhotoArgs.take(kwargs)
    flags = {"unmask.save_mask": save_mask, "unmask.weights": weights, "unmask.detail_weights": detail_weights}
    config = session.config({**args.overrides(), **flags})
    if args.detector is None:
        config["detect"]["detector"] = config["unmask"]["detector"]
    if args.threshold is None:
        config["detect"]["threshold"] = config["unmask"]["threshold"]
    section = config["unmask"]
    try:
        weights = {"weights": section["weights"], "detail_weights": section["detail_weights"]}
        step = UnmaskStep(save_mask=section["save_mask"], **weights, device=torch_device(config).type)
    except (FileNotFoundError, WeightsError) as error:
        raise UsageProblem(str(error)) from None
    run_photos(session, args, config, step, default_inputs=[str(demo_image_path())])


@cli.command()
@photo_options
@click.option(
    "--method", type=click.Choice(ANONYMIZE_METHODS), help="generate (default): a new face with the same expression; blur | pixelate."
)
@click.option("--seed", "identity_seed", type=int, help="Seed of the new identities (default: the global --seed, else 0).")
@click.option(
    "--save-parts",
    is_flag=True,
    default=None,
    help="Also save per face the original crop, its landmarks and the new face (<name>.parts.png).",
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Anonymizer weights (default: the shipped data/anonymizer.pt).")
@click.option(
    "--normalise-shape",
    type=click.FloatRange(0.0, 1.0),
    help="generate: move the face's proportions this far toward the average face (expression kept): less of its shape passes on.",
)
@click.option(
    "--keep-tone/--new-tone",
    default=None,
    help="generate: the new face takes the original's colouring, blurred (default), or keeps the network's own (nothing of the face used).",
)
@click.option(
    "--every", type=click.IntRange(min=1), default=1, show_default=True, help="Videos: anonymize every Nth frame (the video keeps those)."
)
@click.pass_obj
def anonymize(session: Session, method, identity_seed, save_parts, weights, normalise_shape, keep_tone, every, **kwargs) -> None:
    """Replace every face with a new person who has the same expression and pose, or blur / pixelate it.

    PATHS are images, videos, folders or globs; with none, the demo face. generate paints a new face
    from the face's landmarks and surroundings and a random identity (it never sees the face itself):
    the same seed gives the same new faces, and in a video a face keeps its new identity from frame
    to frame. Writes <name>.anonymized.<ext> (videos: .mp4) and OUT_DIR/anonymize.json (per face:
    the method, the seed, and dlib's identity distance between the original and the new face).
    """
    from faceflex.io.inputs import demo_image_path
    from faceflex.models.weights import WeightsError
    from faceflex.steps.anonymize import AnonymizeStep

    args = PhotoArgs.take(kwargs)
    seed = identity_seed if identity_seed is not None else session.seed
    config = session.config(
        {
            **args.overrides(),
            "anonymize.method": method,
            "anonymize.seed": seed,
            "anonymize.save_parts": save_parts,
            "anonymize.weights": weights,
            "anonymize.normalise_shape": normalise_shape,
            "anonymize.keep_tone": keep_tone,
        }
    )
    section = config["anonymize"]
    try:
        step = AnonymizeStep(
            section["method"],
            section["seed"],
            section["save_parts"],
            section["weights"],
            section["normalise_shape"],
            section["keep_tone"],
            torch_device(config).type,
        )
    except (FileNotFoundError, WeightsError) as error:
        raise UsageProblem(str(error)) from None
    run_photos(session, args, config, step, default_inputs=[str(demo_image_path())], videos=True, every=every)


@cli.command()
@photo_options
@click.option("-a", "--attribute", help="CelebA attribute to change (case-insensitive), e.g. Smiling, Young, Male, Mustache.")
@click.option("--range", "strength_range", nargs=3, type=float, metavar="START END STEP", help="Strengths; END included when reached.")
@click.option(
    "--to",
    "target",
    type=float,
    help="Instead of --range: edit each face until classify's probability of the attribute reaches this (e.g. 0.9).",
)
@click.option(
    "--sample-size", type=int, help="How many vector versions to render (rows), chosen with the seed; 0: their mean (the default)."
)
@click.option("--versions", help="Explicit comma-separated version numbers, e.g. 0,3 (instead of --sample-size).")
@click.option(
    "--mode",
    type=click.Choice(EDIT_MODES),
    help="auto: the best measured per attribute; residual: the decoded change added; replace: the decoded face; "
    "warp: the photo's own pixels moved like the landmarks; hybrid: warp + the change a warp cannot make; "
    "paint: glasses are drawn from the landmarks, other attributes repainted in their region by the attribute painter; "
    "prototype: the difference between the average faces with and without the attribute (shape, colour, texture).",
)
@click.option(
    "--glasses",
    type=click.Choice(GLASSES_KINDS),
    help="Paint mode, Eyeglasses added: the frames drawn (default: rectangle).",
)
@click.option("--region", type=click.Choice(EDIT_REGIONS), help="Mask region (auto: where the attribute lives).")
@click.option("--orthogonal-to", help="Comma-separated attributes whose directions are projected out, e.g. Male,Eyeglasses.")
@click.option("--weights", type=click.Path(dir_okay=False), help="VAE weight file (default: the shipped data/vae.pt).")
@click.option(
    "--vectors",
    "vectors_path",
    type=click.Path(dir_okay=False),
    help="Attribute vectors made for those weights (default: the shipped ones).",
)
@click.option(
    "--landmarks",
    "landmarks_path",
    type=click.Path(dir_okay=False),
    help="Latent-landmark regressor made for those weights (warp and hybrid modes; default: the shipped one).",
)
@click.option(
    "--painter",
    "painter_path",
    type=click.Path(dir_okay=False),
    help="Attribute painter weights (paint mode; default: the shipped data/attribute_painter.pt).",
)
@click.option(
    "--prototypes",
    "prototypes_path",
    type=click.Path(dir_okay=False),
    help="Attribute prototypes (prototype mode, a painted smile's cheeks; default: the shipped data/attribute_prototypes.npz).",
)
@click.option(
    "--plot-masks", is_flag=True, default=None, help="Also save each aligned face with its landmarks, its mask and the masked face."
)
@click.option("--plot/--no-plot", default=None, help="Show the contact sheets on screen (only with a display).")
@click.option("--identity/--no-identity", default=None, help="Measure each output's face-descriptor distance from the person (default on).")
@click.pass_obj
def edit(
    session: Session,
    target,
    identity,
    attribute,
    strength_range,
    sample_size,
    versions,
    mode,
    region,
    orthogonal_to,
    weights,
    vectors_path,
    landmarks_path,
    painter_path,
    prototypes_path,
    glasses,
    plot_masks,
    plot,
    **kwargs,
):
    """Change an attribute of every face: encode, move along the attribute vector, decode, blend back.

    PATHS are images, folders or globs; with none, the config's edit.image_filename (by default the
    embedded demo face). Writes one image per input x version x strength
    (<name>.<Attribute>.v<version>.<strength>.<ext>), a contact sheet per input and OUT_DIR/edit.json.
    """
    import numpy as np

    from faceflex.inference.attribute_painting import load_attribute_painter
    from faceflex.inference.attribute_prototypes import PrototypesError, load_prototypes
    from faceflex.inference.attribute_vectors import UnknownAttribute, VectorsError, load_vectors
    from faceflex.inference.latent_landmarks import load_landmark_regressor
    from faceflex.inference.vae_codec import load_vae
    from faceflex.io.inputs import demo_image_path
    from faceflex.models.weights import WeightsError
    from faceflex.steps.edit import EditSettings, EditStep, parse_range

    args = PhotoArgs.take(kwargs)
    config = session.config(
        {
            **args.overrides(),
            "edit.attribute": attribute,
            "edit.parameter_range": list(strength_range) if strength_range else None,
            "edit.sample_size": sample_size,
            "edit.versions": _whole_numbers(versions, "--versions"),
            "edit.mode": mode,
            "edit.region": region,
            "edit.orthogonal_to": orthogonal_to,
            "edit.vectors": vectors_path,
            "edit.landmarks": landmarks_path,
            "edit.painter": painter_path,
            "edit.prototypes": prototypes_path,
            "edit.glasses": glasses,
            "edit.weights": weights,
            "edit.plot": plot,
            "edit.plot_masks": plot_masks,
            "edit.identity": identity,
        }
    )
    section = config["edit"]
    device = torch_device(config)
    try:
        vae = load_vae(section["weights"], device=device.type)
        vectors = load_vectors(section["vectors"])
        if section["versions"] is not None:
            chosen = list(section["versions"])
        elif section["sample_size"] == 0:
            chosen = None  # one row: the mean of all versions
        elif section["sample_size"] > vectors.versions:
            raise ValueError(f"sample_size {section['sample_size']} is more than the {vectors.versions} versions there are")
        else:
            chosen = sorted(np.random.default_rng(config["seed"]).choice(vectors.versions, section["sample_size"], replace=False).tolist())
        options = EditSettings(
            attribute=section["attribute"],
            strengths=tuple(parse_range(*section["parameter_range"])),
            versions=tuple(chosen) if chosen is not None else None,
            mode=section["mode"],
            region=section["region"],
            orthogonal_to=tuple(section["orthogonal_to"]),
            feather=config["paste"]["feather"],
            plot_masks=section["plot_masks"],
            identity=section["identity"],
            target=target,
            glasses=section["glasses"],
        )
        regressor = load_landmark_regressor(section["landmarks"]) if section["landmarks"] else None
        painter = load_attribute_painter(section["painter"], device.type) if section["painter"] else None
        prototypes = load_prototypes(section["prototypes"]) if section["prototypes"] else None
        step = EditStep(options, vae, vectors, regressor, painter, prototypes)
    except (FileNotFoundError, WeightsError, VectorsError, PrototypesError, UnknownAttribute, ValueError) as error:
        raise UsageProblem(str(error)) from None
    if section["vectors"] is None and section["weights"] is not None and vectors.vae_fingerprint is None:
        session.say("note: the shipped vectors were made for the shipped VAE; pass --vectors made for these weights")
    sheets: list[str] = []

    def collect_sheets(record: dict) -> None:
        sheets.extend(o["path"] for o in record["outputs"] if o["product"].endswith(".sheet"))

    default = section["image_filename"] or str(demo_image_path())
    try:
        run_photos(
            session,
            args,
            config,
            step,
            default_inputs=[default],
            sheet=step.attribute,
            on_record=collect_sheets if section["plot"] else None,
        )
    finally:
        if section["plot"] and sheets:
            _show(sheets, session)


def _whole_numbers(text: str | None, option: str) -> list[int] | None:
    """'0,3' -> [0, 3]; None stays None; anything else is a usage error."""
    from faceflex.config import comma_list

    if text is None:
        return None
    try:
        return [int(v) for v in comma_list(text)]
    except ValueError:
        raise UsageProblem(f"{option}: {text!r} is not a comma-separated list of whole numbers") from None


def _show(paths: list[str], session: Session) -> None:
    """Show contact sheets on screen when a display and an interactive terminal exist; otherwise say why not."""
    if not (
        sys.stdout.isatty() and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32"))
    ):
        session.say("--plot: no display or not interactive; the contact sheets are in the output folder")
        return
    import matplotlib.pyplot as plt
    from PIL import Image

    for path in paths:
        sheet = Image.open(path)
        plt.figure(figsize=(sheet.width / 100, sheet.height / 100))
        plt.imshow(sheet)
        plt.axis("off")
    plt.show()
