"""``faceflex evaluate ...``: measure the models on held-out data; JSON reports on stdout (and --out)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from faceflex.choices import ANONYMIZE_METHODS, CLASSIFIER_TASKS, EDIT_MODES
from faceflex.cli.app import Session, UsageProblem, cli, torch_device, verbosity_options
from faceflex.cli.training import faces_and_vae, task_data, vae_and_cache_options


@cli.group()
@verbosity_options
def evaluate() -> None:
    """Measure faceflex's models on held-out data."""


def _report(report: dict, out_path: str | None) -> None:
    from faceflex.io.files import write_text

    text = json.dumps(report, indent=1)
    if out_path:
        write_text(text + "\n", out_path)
    click.echo(text)


@evaluate.command("vae")
@vae_and_cache_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N held-out faces.")
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), help="Also write a grid PNG of originals and reconstructions here.")
@verbosity_options
@click.pass_obj
def evaluate_vae(session: Session, weights, cache, limit, out_dir) -> None:
    """PSNR and SSIM of reconstructions of the held-out CelebA-HQ faces, and timing."""
    from faceflex.evaluation.reconstruction import evaluate_reconstruction

    faces, vae = faces_and_vae(session, cache, weights)
    grid = Path(out_dir) / "vae_reconstructions.png" if out_dir else None
    _report(evaluate_reconstruction(vae, faces, limit=limit, grid_path=grid), None)


@evaluate.command("unmask")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), help="Unmasking weights (default: the shipped data/unmask.pt).")
@click.option("--detail-weights", type=click.Path(dir_okay=False, exists=True), help="A detail stage over them (default: none).")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (default from configs/train_unmask.yaml).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N held-out faces.")
@click.option(
    "--photos",
    type=click.Path(file_okay=False),
    default="../shared/data/photos/masked",
    show_default=True,
    help="Folder of real *.masked.jpg photos (with *.unmasked.jpg beside them for the sheet); skipped when absent.",
)
@click.option(
    "--frame",
    type=click.Choice(["all", "upper"]),
    default="all",
    show_default=True,
    help="Held-out faces as cached (aligned on all 68 points) or re-aligned on the brows, nose bridge and eyes, as unmask aligns photos.",
)
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), help="Also write the real photos' before/after sheet here.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Also write the JSON report here.")
@verbosity_options
@click.pass_obj
def evaluate_unmask(session: Session, weights, detail_weights, cache, limit, photos, frame, out_dir, out_path) -> None:
    """Unmasking on held-out CelebA-HQ faces with fixed synthetic masks, and on real masked photos."""
    from faceflex.evaluation.unmasking import IDENTITY_FACES, held_out_figures, real_photos, summary
    from faceflex.inference.unmasking import load_unmasker
    from faceflex.models.weights import WeightsError
    from faceflex.train.cache import open_cache

    config = session.config({"train_unmask.cache": cache})
    try:
        unmasker = load_unmasker(weights, torch_device(config).type, detail_weights)
        faces = open_cache(config["train_unmask"]["cache"])
    except (FileNotFoundError, WeightsError) as error:
        raise UsageProblem(str(error)) from None
    rows = faces.split("test")[:limit]
    with session.progress(len(rows), "unmasking held-out faces") as bar:
        report = {"held_out": summary(held_out_figures(unmasker, faces, rows, IDENTITY_FACES, progress=bar.update, frame=frame))}
    report["held_out"]["frame"] = frame
    if Path(photos).is_dir():
        sheet = Path(out_dir) / "unmask_real_photos.jpg" if out_dir else None
        report["real_photos"] = real_photos(unmasker, Path(photos), sheet)
    _report(report, out_path)


@evaluate.command("anonymize")
@click.option(
    "--weights", type=click.Path(dir_okay=False, exists=True), help="Anonymizer weights (default: the shipped data/anonymizer.pt)."
)
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (default from configs/train_anonymize.yaml).")
@click.option("--limit", type=click.IntRange(min=2), default=500, show_default=True, help="Use the first N held-out faces (ids 28001-).")
@click.option("--method", "methods", type=click.Choice(ANONYMIZE_METHODS), multiple=True, help="Methods to measure (default: all three).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated identities.")
@click.option("--normalise-shape", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True, help="As anonymize's.")
@click.option("--keep-tone/--new-tone", default=True, show_default=True, help="As anonymize's.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Also write the JSON report here.")
@verbosity_options
@click.pass_obj
def evaluate_anonymize(session: Session, weights, cache, limit, methods, seed, normalise_shape, keep_tone, out_path) -> None:
    """Re-identification, detection, landmark error, expression kept, sharpness, colour cast and time per face, per method,
    on held-out CelebA-HQ faces (docs/ANONYMIZE.md)."""
    from faceflex.evaluation.anonymizing import METHODS, held_out_figures, summary
    from faceflex.inference.anonymizing import load_anonymizer
    from faceflex.models.weights import WeightsError
    from faceflex.train.cache import open_cache

    config = session.config({"train_anonymize.cache": cache})
    methods = methods or METHODS
    try:
        anonymizer = load_anonymizer(weights, torch_device(config).type) if "generate" in methods else None
        faces = open_cache(config["train_anonymize"]["cache"])
    except (FileNotFoundError, WeightsError) as error:
        raise UsageProblem(str(error)) from None
    rows = faces.split("test")[:limit]
    with session.progress(len(rows) * len(methods), "anonymizing held-out faces") as bar:
        figures = held_out_figures(
            anonymizer, faces, rows, methods, seed, progress=bar.update, normalise_shape=normalise_shape, keep_tone=keep_tone
        )
    settings = {"weights": str(weights or "shipped"), "seed": seed, "normalise_shape": normalise_shape, "keep_tone": keep_tone}
    _report({**settings, **summary(figures)}, out_path)


@evaluate.command("classifier")
@click.option("--task", type=click.Choice((*CLASSIFIER_TASKS, "gender-age")), required=True, help="Which model to measure.")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), help="Weight file (default: the shipped one).")
@click.option("--data", type=click.Path(file_okay=False), help="Folder with celeba_hq/, fer2013/, utkface/, ckplus/.")
@verbosity_options
@click.pass_obj
def evaluate_classifier(session: Session, task, weights, data) -> None:
    """Accuracy of a classifier on its untouched test part (and CK+ for expression), as JSON; for the
    shipped attribute model also the attributes as `classify` reports them (blended with the face
    model); for the gender-and-age network (on CelebA-HQ and UTKFace) also the gender as `classify`
    reports it."""
    from faceflex.inference.classifiers import load_gender_age_model, load_task_model
    from faceflex.models.weights import WeightsError
    from faceflex.train.classifier_trainer import TASKS, evaluate_part, reported_attributes_part, reported_gender_part
    from faceflex.train.face_sets import ckplus_set, face_set_dlib_stages
    from faceflex.train.gender_age_trainer import gender_age_metrics, gender_age_outputs, known_rows

    config = session.config({"train_classifier.data": data})
    section = config["train_classifier"]
    device = torch_device(config)
    try:
        model, meta = load_gender_age_model(weights, device) if task == "gender-age" else load_task_model(task, weights, device)
    except (FileNotFoundError, WeightsError) as error:
        raise UsageProblem(str(error)) from None
    labelled = task_data(session, "face" if task == "gender-age" else task, section)
    report: dict = {"task": task, "weights": str(weights or "shipped")}
    if task == "gender-age":
        cache = Path(section["cache"])
        with session.progress(len(labelled.split), "dlib features of every face (cached once)") as bar:
            stages = face_set_dlib_stages(cache / "celeba_hq", Path(section["data"]) / "utkface", cache, model.config.tap, bar.update)
        rows = known_rows(labelled, stages, "test")
        outputs = gender_age_outputs(model, stages, rows, device)
        targets = {k: v[rows] for k, v in labelled.targets.items()}
        report["test"] = gender_age_metrics(outputs, targets, meta.get("temperatures", {}).get("male"))
        report["test"]["dlib_missed"] = int(len(labelled.rows("test")) - len(rows))
        if weights is None:  # the shipped network is classify's
            report["gender_as_classify_reports"] = reported_gender_part(labelled, "test", device, stages)
        _report(report, None)
        return
    report["test"] = evaluate_part(TASKS[task], model, labelled, "test", device, meta.get("temperatures"))
    if task == "attributes" and weights is None:
        report["as_classify_reports"] = reported_attributes_part(labelled, "test", device)
    if task == "expression":
        ck_dir = Path(section["data"]) / "ckplus"
        if (ck_dir / "ckplus48.zip").is_file():
            for reframe, key in ((False, "ckplus_as_given"), (True, "ckplus_reframed")):
                ck = ckplus_set(ck_dir, reframe)
                report[key] = {**evaluate_part(TASKS[task], model, ck, "test", device), "dlib_missed": ck.notes["dlib_missed"]}
    _report(report, None)


@evaluate.command("edit")
@click.option("--attributes", default="Smiling,Male,Young,Mustache,Eyeglasses", show_default=True, help="Comma-separated attributes.")
@click.option(
    "--strengths", default="1,2,3,4", show_default=True, help="Comma-separated strengths (applied with the sign that adds or removes)."
)
@click.option(
    "--per-side", type=click.IntRange(min=1), default=40, show_default=True, help="Held-out faces lacking / having each attribute."
)
@click.option(
    "--modes",
    default="residual,replace,warp,hybrid,prototype",
    show_default=True,
    help="Comma-separated modes (auto: each attribute's own).",
)
@click.option("--versions", help="Comma-separated vector versions whose mean is the direction (default: all).")
@vae_and_cache_options
@click.option(
    "--vectors",
    "vectors_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Attribute vectors made for those weights (default: shipped).",
)
@click.option(
    "--landmarks",
    "landmarks_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Latent-landmark regressor made for those weights (default: shipped).",
)
@click.option(
    "--painter",
    "painter_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Attribute painter weights for mode paint (default: shipped).",
)
@click.option(
    "--prototypes",
    "prototypes_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Attribute prototypes for mode prototype (default: shipped).",
)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Also write the JSON report here.")
@verbosity_options
@click.pass_obj
def evaluate_edit(
    session: Session,
    attributes,
    strengths,
    per_side,
    modes,
    versions,
    weights,
    vectors_path,
    landmarks_path,
    painter_path,
    prototypes_path,
    cache,
    out_path,
) -> None:
    """Edit success (what classify reports crosses 0.5) and identity kept (dlib descriptor < 0.6) on held-out faces."""
    from faceflex.config import comma_list
    from faceflex.evaluation.edits import evaluate_edits
    from faceflex.inference.attribute_painting import load_attribute_painter
    from faceflex.inference.attribute_prototypes import PrototypesError, load_prototypes
    from faceflex.inference.attribute_vectors import UnknownAttribute, VectorsError, load_vectors
    from faceflex.inference.classifiers import load_classifiers
    from faceflex.inference.latent_landmarks import load_landmark_regressor
    from faceflex.models.weights import WeightsError

    faces, vae = faces_and_vae(session, cache, weights)
    try:
        vectors = load_vectors(vectors_path)
        vectors.check_vae(vae.fingerprint)
        names = [vectors.resolve(n) for n in comma_list(attributes)]
        values = [float(v) for v in comma_list(strengths)]
        mode_list = comma_list(modes)
        if any(m not in EDIT_MODES for m in mode_list):
            raise ValueError(f"modes must be among {', '.join(EDIT_MODES)}, not {modes!r}")
        chosen = [int(v) for v in comma_list(versions)] if versions else None
        judge = load_classifiers(vae.device.type)  # what `classify` reports
        regressor = load_landmark_regressor(landmarks_path) if landmarks_path else None
        painter = load_attribute_painter(painter_path, vae.device.type) if painter_path else None
        prototypes = load_prototypes(prototypes_path) if prototypes_path else None
    except (FileNotFoundError, UnknownAttribute, ValueError, WeightsError, VectorsError, PrototypesError) as error:
        raise UsageProblem(str(error)) from None
    with session.progress(len(names) * len(mode_list) * 2 * per_side, "editing held-out faces") as bar:
        report = evaluate_edits(
            vae,
            vectors,
            judge,
            faces,
            names,
            values,
            per_side,
            mode_list,
            chosen,
            progress=bar.update,
            regressor=regressor,
            painter=painter,
            prototypes=prototypes,
        )
    _report(report, out_path)
