"""The ``faceflex`` command line: a thin layer over the Python API.

Heavy modules (numpy, Pillow, dlib, torch) are imported inside the commands, so that
``faceflex --help`` starts fast.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import click

from faceflex import __version__


class UsageProblem(click.ClickException):
    """A usage or configuration error: exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@dataclass
class Session:
    """Global options shared by every command."""

    config_file: str | None
    device: str | None
    seed: int | None
    quiet: bool
    verbose: bool

    def config(self, overrides: dict[str, Any] | None = None) -> dict:
        """Effective config: defaults < --config file < global flags < the command's flags."""
        from faceflex.config import ConfigError, load_config

        merged = {"device": self.device, "seed": self.seed, **(overrides or {})}
        try:
            return load_config(self.config_file, merged)
        except ConfigError as error:
            raise UsageProblem(str(error)) from None

    def say(self, message: str) -> None:
        """A progress message on stderr, silenced by --quiet."""
        if not self.quiet:
            click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceflex")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file (overrides configs/default.yaml).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"], case_sensitive=False), help="Where models run.")
@click.option("--seed", type=int, help="Seed for anything random.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bar.")
@click.option("-v", "--verbose", is_flag=True, help="Per-file details and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, config_file, device, seed, quiet, verbose) -> None:
    """faceflex: find, align, edit and classify faces in photos, one photo or a folder of thousands."""
    if quiet and verbose:
        raise UsageProblem("--quiet and --verbose cannot be used together")
    ctx.obj = Session(config_file, device, seed, quiet, verbose)


def _set_quiet(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.find_object(Session).quiet = True


def _set_verbose(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.find_object(Session).verbose = True


def _input_options(command):
    """Options every batch command shares: inputs, recursion, and -q/-v also after the command."""
    command = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_quiet, help="As the global --quiet.")(command)
    command = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_set_verbose, help="As the global --verbose.")(command)
    command = click.option("-r", "--recursive", is_flag=True, default=None, help="Descend into sub-folders.")(command)
    return click.argument("paths", nargs=-1, type=click.Path())(command)


@cli.command()
@_input_options
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), help="Folder for outputs (default ./out when plotting).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True), help="Write the JSON here ('-' for stdout).")
@click.option("--plot-landmarks", is_flag=True, help="Save each photo with boxes and numbered landmarks as PNG.")
@click.option("--detector", type=click.Choice(["hog", "cnn"], case_sensitive=False), help="dlib detector.")
@click.option("--upsample", type=int, help="Extra dlib upsampling of the working copy (0-3).")
@click.option("--min-face", type=float, help="Smallest face box side kept, in photo pixels.")
@click.option("--threshold", type=float, help="Minimum detection score.")
@click.option("--max-side", type=int, help="Large photos are searched at this long side.")
@click.pass_obj
def detect(session: Session, paths, recursive, out_dir, json_path, plot_landmarks, detector, upsample, min_face, threshold, max_side):
    """Find every face and its 68 landmarks; print or write them as JSON.

    PATHS are image files, folders or glob patterns; with none, the demo face
    (matplotlib's grace_hopper.jpg) is used.
    """
    from pathlib import Path

    from faceflex.batch import BatchResult, OutputNames, collect_inputs, report_summary, run_batch
    from faceflex.face.detect import detect_faces
    from faceflex.io import demo_image_path, load_image, save_image, write_text
    from faceflex.viz import draw_landmarks

    config = session.config(
        {
            "input.recursive": recursive,
            "output.out_dir": out_dir,
            "detect.detector": detector,
            "detect.upsample": upsample,
            "detect.min_face": min_face,
            "detect.threshold": threshold,
            "detect.max_side": max_side,
        }
    )
    settings = _detect_settings(config)
    items, missing = collect_inputs(paths or [str(demo_image_path())], config["input"]["recursive"])
    out_folder = Path(config["output"]["out_dir"] or "out")
    names = OutputNames(out_folder)
    protected = [item.path for item in items]
    if json_path is None:
        json_path = str(out_folder / "detections.json") if config["output"]["out_dir"] else "-"
    records: list[dict] = []

    def process(item) -> None:
        image = load_image(item.path, config["input"]["max_pixels"])
        faces = detect_faces(image.rgb, settings)
        record = {"path": str(item.path), "width": image.size[0], "height": image.size[1], "faces": []}
        for index, face in enumerate(faces):
            record["faces"].append({"index": index, **face.to_dict()})
        if plot_landmarks:
            target = names.path(item, "landmarks", "png")
            save_image(draw_landmarks(image.rgb, faces), target, protected=protected)
            record["outputs"] = [str(target)]
        records.append(record)
        if not faces:
            session.say(f"{item.path}: no face found")
        elif session.verbose:
            session.say(f"{item.path}: {len(faces)} face{'s' * (len(faces) != 1)}")

    result = run_batch(items, process, label="detecting", quiet=session.quiet, verbose=session.verbose, result=BatchResult(failures=missing))
    document = {
        "faceflex": __version__,
        "command": "detect",
        "settings": vars(settings),
        "images": records,
        "failed": [{"path": f.path, "error": f.cause} for f in result.failures],
    }
    text = json.dumps(document, indent=1)
    if json_path == "-":
        click.echo(text)
    else:
        write_text(text + "\n", json_path, protected=protected)
        session.say(f"wrote {json_path}")
    faces_found = sum(len(r["faces"]) for r in records)
    session.say(f"{faces_found} face{'s' * (faces_found != 1)} in {len(records)} image{'s' * (len(records) != 1)}")
    report_summary(result, "images")
    sys.exit(result.exit_code)


@cli.command()
@_input_options
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True, help="Output format.")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True, help="Where to write the records ('-' for stdout).")
@click.option("--annotate", "annotate_dir", type=click.Path(file_okay=False), help="Also write each photo (and video) with boxes and labels drawn, into this folder.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, help="Videos: classify every Nth frame.")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Videos: folder for the per-frame JSON lines (default ./out).")
@click.option("--detector", type=click.Choice(["hog", "cnn"], case_sensitive=False), help="dlib detector.")
@click.option("--min-face", type=float, help="Smallest face box side kept, in photo pixels.")
@click.option("--threshold", type=float, help="Minimum detection score.")
@click.pass_obj
def classify(session: Session, paths, recursive, fmt, out_path, annotate_dir, every, out_dir, detector, min_face, threshold):
    """Gender, age, expression, smiling, occlusion, makeup, pose and illumination of every face.

    PATHS are images, videos (mp4, avi, mov, mkv, webm), folders or globs; with none, the demo
    face. One record per face, with its file and index; a photo without faces adds none.
    """
    from pathlib import Path

    from faceflex.batch import BatchResult, OutputNames, collect_inputs, report_summary, run_batch
    from faceflex.classify import load_classifier
    from faceflex.face.detect import detect_faces
    from faceflex.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, demo_image_path, load_image, save_image, write_text
    from faceflex.viz import draw_classifications

    config = session.config(
        {"input.recursive": recursive, "output.out_dir": out_dir, "detect.detector": detector, "detect.min_face": min_face, "detect.threshold": threshold}
    )
    settings = _detect_settings(config)
    items, missing = collect_inputs(paths or [str(demo_image_path())], config["input"]["recursive"], IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
    protected = [item.path for item in items]
    annotations = OutputNames(Path(annotate_dir)) if annotate_dir else None
    video_names = OutputNames(Path(config["output"]["out_dir"] or "out"))
    try:
        classifier = load_classifier(config["device"])
    except FileNotFoundError as error:
        raise UsageProblem(str(error)) from None
    records: list[dict] = []
    videos: list[dict] = []

    def classify_image(item) -> None:
        image = load_image(item.path, config["input"]["max_pixels"])
        faces = classifier.classify(image.rgb, detect_faces(image.rgb, settings))
        records.extend({"file": str(item.path), **face} for face in faces)
        if annotations:
            save_image(draw_classifications(image.rgb, faces), annotations.path(item, "classified", "jpg"), protected=protected)
        if session.verbose:
            session.say(f"{item.path}: {len(faces)} face{'s' * (len(faces) != 1)}")

    def classify_video(item) -> None:
        from faceflex.video import VideoWriter, iter_frames

        writer = VideoWriter(annotations.path(item, "classified", "mp4"), 25.0 / every) if annotations else None
        lines: list[str] = []
        face_count = 0
        try:
            for frame in iter_frames(item.path, every):
                faces = classifier.classify(frame.rgb, detect_faces(frame.rgb, settings))
                face_count += len(faces)
                lines.append(json.dumps({"file": str(item.path), "frame": frame.index, "time": round(frame.time, 3), "faces": faces}))
                if writer:
                    writer.write(draw_classifications(frame.rgb, faces))
            target = video_names.path(item, "classified", "jsonl")
            write_text("".join(line + "\n" for line in lines), target, protected=protected)
            if writer:
                writer.close()
        except BaseException:
            if writer:
                writer.abort()
            raise
        videos.append({"file": str(item.path), "frames": len(lines), "faces": face_count, "records": str(target)})

    def process(item) -> None:
        (classify_video if item.path.suffix.lower() in VIDEO_EXTENSIONS else classify_image)(item)

    result = run_batch(items, process, label="classifying", quiet=session.quiet, verbose=session.verbose, result=BatchResult(failures=missing))
    failed = [{"file": f.path, "error": f.cause} for f in result.failures]
    if fmt == "json":
        text = json.dumps({"faceflex": __version__, "command": "classify", "faces": records, "videos": videos, "failed": failed}, indent=1) + "\n"
    else:
        text = _csv_text(records)
    if out_path == "-":
        click.echo(text, nl=False)
    else:
        write_text(text, out_path, protected=protected)
        session.say(f"wrote {out_path}")
    session.say(f"{len(records)} face{'s' * (len(records) != 1)} in {result.succeeded} input{'s' * (result.succeeded != 1)}")
    report_summary(result, "inputs")
    sys.exit(result.exit_code)


def _csv_text(records: list[dict]) -> str:
    import csv
    import io

    from faceflex.classify import flatten_record

    rows = [flatten_record(record) for record in records]
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["file", "index"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@cli.command()
@_input_options
@click.option("-a", "--attribute", help="CelebA attribute to change (case-insensitive), e.g. Smiling, Young, Male, Mustache.")
@click.option("--range", "strength_range", nargs=3, type=float, metavar="START END STEP", help="Strengths; END included when reached.")
@click.option("--sample-size", type=int, help="How many vector versions to render (rows), chosen with the seed.")
@click.option("--versions", help="Explicit comma-separated version numbers, e.g. 0,3 (instead of --sample-size).")
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), help="Folder for the outputs (default ./out).")
@click.option("--plot/--no-plot", default=None, help="Show the contact sheet on screen (only with a display).")
@click.option("--plot-landmarks", is_flag=True, default=None, help="Also save each aligned face with its landmarks, mask and masked face.")
@click.option("--faces", "which_faces", type=click.Choice(["all", "largest"]), help="Edit every face, or only the largest.")
@click.option("--mode", type=click.Choice(["residual", "replace"]), help="residual keeps the photo's detail; replace pastes the decoded face.")
@click.option("--region", type=click.Choice(["auto", "face", "mouth", "eyes", "upper-lip"]), help="Mask region (auto: per attribute).")
@click.option("--orthogonal-to", help="Comma-separated attributes whose directions are projected out, e.g. Male,Eyeglasses.")
@click.option("--vectors", "vectors_path", type=click.Path(dir_okay=False), help="Attribute-vector file (default: the shipped one).")
@click.pass_obj
def edit(session: Session, paths, recursive, attribute, strength_range, sample_size, versions, out_dir, plot, plot_landmarks,
         which_faces, mode, region, orthogonal_to, vectors_path):
    """Change an attribute of every face: encode, move along the attribute vector, decode, blend back.

    PATHS are images, folders or globs; with none, the config's edit.image_filename (by default the
    embedded demo face). Writes one image per input x version x strength, a contact sheet per
    input and OUT_DIR/edits.json listing everything written.
    """
    from pathlib import Path

    import numpy as np

    from faceflex.batch import BatchResult, OutputNames, collect_inputs, report_summary, run_batch
    from faceflex.edit import auto_region, edit_photo, parse_range, strength_name
    from faceflex.face.detect import detect_faces
    from faceflex.io import demo_image_path, load_image, save_image, write_text
    from faceflex.vae import load_vae
    from faceflex.vectors import UnknownAttribute, load_vectors
    from faceflex.viz import contact_sheet, faces_crop, mask_panels

    config = session.config(
        {
            "input.recursive": recursive, "output.out_dir": out_dir, "edit.attribute": attribute,
            "edit.parameter_range": list(strength_range) if strength_range else None, "edit.sample_size": sample_size,
            "edit.versions": _int_csv(versions, "--versions"),
            "edit.plot": plot, "edit.plot_landmarks": plot_landmarks, "edit.faces": which_faces, "edit.mode": mode,
            "edit.region": region, "edit.orthogonal_to": orthogonal_to, "edit.vectors": vectors_path,
        }
    )
    settings, detect_settings = config["edit"], _detect_settings(config)
    try:
        vectors = load_vectors(settings["vectors"])
        name = vectors.resolve(settings["attribute"])
        against = [vectors.resolve(n) for n in settings["orthogonal_to"]]
        strengths = parse_range(*settings["parameter_range"])
        if settings["versions"] is not None:
            chosen = list(settings["versions"])
        elif settings["sample_size"] > vectors.versions:
            raise ValueError(f"sample_size {settings['sample_size']} is more than the {vectors.versions} versions there are")
        else:
            chosen = sorted(np.random.default_rng(config["seed"]).choice(vectors.versions, settings["sample_size"], replace=False).tolist())
        directions = {k: vectors.direction(name, [k], against) for k in chosen}
    except (UnknownAttribute, ValueError, FileNotFoundError) as error:
        raise UsageProblem(str(error)) from None
    mask_region = auto_region(name) if settings["region"] == "auto" else settings["region"]
    vae = load_vae(device=config["device"])
    default_input = settings["image_filename"] or str(demo_image_path())
    items, missing = collect_inputs(paths or [default_input], config["input"]["recursive"])
    out_folder = Path(config["output"]["out_dir"] or "out")
    names = OutputNames(out_folder)
    protected = [item.path for item in items]
    manifest: list[dict] = []
    sheets: list[np.ndarray] = []

    def process(item) -> None:
        image = load_image(item.path, config["input"]["max_pixels"])
        faces = detect_faces(image.rgb, detect_settings)
        faces = faces[:1] if settings["faces"] == "largest" else faces
        record = {"file": str(item.path), "faces": len(faces), "outputs": [], "sheet": None, "plots": []}
        if not faces:
            session.say(f"{item.path}: no face found; nothing written")
            manifest.append(record)
            return
        ext = item.path.suffix.lower().lstrip(".") if item.path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp") else "png"
        x0, y0, x1, y1 = faces_crop(image.rgb.shape, faces)
        cells, titles = [], []
        for k in chosen:
            outputs, edits = edit_photo(image.rgb, faces, vae, directions[k], strengths, settings["mode"], mask_region, config["paste"]["feather"])
            for strength, output in zip(strengths, outputs):
                target = save_image(output, names.path(item, f"{name}.v{k}.{strength_name(strength)}", ext), protected=protected)
                record["outputs"].append({"version": k, "strength": strength, "path": str(target)})
            cells.append([o[y0:y1, x0:x1] for o in outputs])
            titles.append([f"{name}, {strength_name(s)}" + (f" (v{k})" if len(chosen) > 1 else "") for s in strengths])
            if settings["plot_landmarks"] and k == chosen[0]:
                for i, face_edit in enumerate(edits):
                    target = names.path(item, f"face{i}.mask", "png")
                    save_image(mask_panels(face_edit.aligned, face_edit.landmarks, face_edit.mask), target, protected=protected)
                    record["plots"].append(str(target))
        sheet = contact_sheet(cells, titles)
        record["sheet"] = str(save_image(sheet, names.path(item, f"{name}.sheet", "png"), protected=protected))
        manifest.append(record)
        if settings["plot"]:
            sheets.append(sheet)

    result = run_batch(items, process, label="editing", quiet=session.quiet, verbose=session.verbose, result=BatchResult(failures=missing))
    document = {
        "faceflex": __version__, "command": "edit", "attribute": name, "strengths": strengths, "versions": chosen,
        "mode": settings["mode"], "region": mask_region, "orthogonal_to": against, "images": manifest,
        "failed": [{"file": f.path, "error": f.cause} for f in result.failures],
    }
    target = write_text(json.dumps(document, indent=1) + "\n", out_folder / "edits.json", protected=protected)
    written = sum(len(r["outputs"]) for r in manifest)
    session.say(f"wrote {written} edited image{'s' * (written != 1)} and {target}")
    report_summary(result, "images")
    if sheets:
        _show(sheets, session)
    sys.exit(result.exit_code)


def _int_csv(text: str | None, option: str) -> list[int] | None:
    """'0,3' -> [0, 3]; None stays None; anything else is a usage error."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageProblem(f"{option}: {text!r} is not a comma-separated list of whole numbers") from None


def _show(sheets, session: Session) -> None:
    """Show contact sheets on screen when a display and an interactive terminal exist; otherwise say why not."""
    import os

    if not (sys.stdout.isatty() and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32"))):
        session.say("--plot: no display or not interactive; the contact sheets are in the output folder")
        return
    import matplotlib.pyplot as plt

    for sheet in sheets:
        plt.figure(figsize=(sheet.shape[1] / 100, sheet.shape[0] / 100))
        plt.imshow(sheet)
        plt.axis("off")
    plt.show()


@cli.group()
def train() -> None:
    """Train faceflex's models from labelled faces (see configs/train_*.yaml)."""


@train.command("prepare")
@click.option("--source", type=click.Path(file_okay=False), help="CelebA-HQ folder (shards) or CelebA folder (img_align_celeba/).")
@click.option("--cache", type=click.Path(file_okay=False), help="Where to write the aligned face cache.")
@click.pass_obj
def train_prepare(session: Session, source, cache) -> None:
    """Align every labelled face with faceflex's alignment and write a memory-mappable cache."""
    from pathlib import Path

    from faceflex.train.cache import build_cache, detect_source

    config = session.config({"train_vae.source": source, "train_vae.cache": cache})["train_vae"]
    source_dir, cache_dir = Path(config["source"]), Path(config["cache"])
    try:
        _, total, _ = detect_source(source_dir)(source_dir)
    except FileNotFoundError as error:
        raise UsageProblem(str(error)) from None
    with _progress(session, total, "aligning") as bar:
        meta = build_cache(source_dir, cache_dir, progress=lambda n: bar.update(n))
    session.say(f"cached {meta['faces']} aligned faces in {cache_dir} ({len(meta['skipped_no_face'])} without a face skipped)")


def _training_options(command):
    """--epochs, --resume and --max-hours, shared by every training command."""
    command = click.option("--max-hours", type=float, help="Stop after the epoch that passes this many hours.")(command)
    command = click.option("--resume", type=click.Path(dir_okay=False, exists=True), help="Checkpoint to continue from.")(command)
    return click.option("--epochs", type=int, help="Train up to this many epochs in all.")(command)


@train.command("vae")
@_training_options
@click.option("--out", type=click.Path(file_okay=False), help="Folder for checkpoints, grids and weights.")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (built first if missing).")
@click.pass_obj
def train_vae(session: Session, epochs, resume, out, cache, max_hours) -> None:
    """Train the face VAE on the CelebA-HQ training split (held-out ids 28001-30000 never seen)."""
    from pathlib import Path

    from faceflex.device import resolve_device
    from faceflex.models.vae import VAEConfig
    from faceflex.train.cache import build_cache, open_cache
    from faceflex.train.vae import Trainer, TrainSettings

    config = session.config({"train_vae.epochs": epochs, "train_vae.out": out, "train_vae.cache": cache, "train_vae.max_hours": max_hours})
    section = config["train_vae"]
    cache_dir = Path(section["cache"])
    if not (cache_dir / "meta.json").is_file():
        session.say(f"no face cache in {cache_dir}: building it from {section['source']}")
        build_cache(Path(section["source"]), cache_dir)
    device = resolve_device(config["device"])
    settings = TrainSettings(
        epochs=section["epochs"], batch_size=section["batch_size"], lr=section["lr"], beta=section["beta"],
        kl_warmup_epochs=section["kl_warmup_epochs"], flip=section["flip"], max_hours=section["max_hours"], seed=config["seed"],
    )
    trainer = Trainer(open_cache(cache_dir), VAEConfig(latent=config["vae"]["latent"], channels=config["vae"]["channels"]), settings, Path(section["out"]), device)
    if resume:
        _resume(session, trainer, Path(resume), settings.epochs)

    def progress_factory(epoch: int, steps: int):
        bar = _progress(session, steps, f"epoch {epoch + 1}/{settings.epochs}")
        return _LossBar(bar)

    def on_epoch(record: dict) -> None:
        click.echo(json.dumps(record), err=True)

    trainer.run(on_epoch=on_epoch, progress_factory=progress_factory)
    session.say(f"weights: {Path(section['out']) / 'vae.pt'}")


@train.command("vectors")
@click.option("--attributes", default="all", show_default=True, help="'all' or comma-separated CelebA attribute names.")
@click.option("--samples-per-version", type=click.IntRange(min=1), default=200, show_default=True, help="Faces per side in each version.")
@click.option("--versions", type=click.IntRange(min=1), default=25, show_default=True, help="Disjoint versions per attribute.")
@click.option("--orthogonal-to", default="", help="Comma-separated attributes whose directions are projected out of every vector.")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), help="VAE weights (default: the shipped data/vae.pt).")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (default from configs/train_vae.yaml).")
@click.option("--out", type=click.Path(dir_okay=False), default="data/attribute_vectors.npz", show_default=True, help="Where to write the vectors.")
@click.pass_obj
def train_vectors(session: Session, attributes, samples_per_version, versions, orthogonal_to, weights, cache, out) -> None:
    """Attribute vectors from the CelebA-HQ training split's mean latents (held-out ids never used)."""
    from faceflex.train.cache import open_cache
    from faceflex.train.vectors import compute_vectors, encode_rows, orthogonal_versions
    from faceflex.vae import load_vae
    from faceflex.vectors import AttributeVectors, UnknownAttribute, resolve_attribute

    config = session.config({"train_vae.cache": cache})
    try:
        faces = open_cache(config["train_vae"]["cache"])
    except FileNotFoundError as error:
        raise UsageProblem(str(error)) from None
    known = faces.attribute_names
    try:
        names = known if attributes.strip().lower() == "all" else [resolve_attribute(n, known) for n in attributes.split(",") if n.strip()]
        against = [resolve_attribute(n, known) for n in orthogonal_to.split(",") if n.strip()]
    except UnknownAttribute as error:
        raise UsageProblem(str(error)) from None
    rows = faces.split("train")
    vae = load_vae(weights, device=config["device"])
    with _progress(session, len(rows), "encoding") as bar:
        latents = encode_rows(vae, faces, rows, progress=bar.update)
    columns = [faces.attribute_names.index(n) for n in dict.fromkeys(names + against)]
    full = compute_vectors(latents, faces.attributes[rows][:, columns], [faces.attribute_names[c] for c in columns], versions, samples_per_version, config["seed"])
    keep = [full.names.index(n) for n in names]
    vectors = orthogonal_versions(full, against)[keep]
    meta = {**full.meta, "orthogonal_to": against, "vae": str(weights or "shipped data/vae.pt"), "vae_epochs": vae.meta.get("epochs"),
            "command": "faceflex " + " ".join(sys.argv[1:])}
    result = AttributeVectors(names, vectors, full.samples[keep], meta).save(out)
    session.say(f"wrote {len(names)} attributes x {versions} versions to {result}")


@train.command("classifier")
@click.option("--task", type=click.Choice(["attributes", "expression", "age"]), required=True, help="Which model to train.")
@_training_options
@click.option("--out", type=click.Path(file_okay=False), help="Folder for checkpoints and weights (default runs/classifier/TASK).")
@click.option("--data", type=click.Path(file_okay=False), help="Folder with celeba_hq/, fer2013/, utkface/.")
@click.pass_obj
def train_classifier(session: Session, task, epochs, resume, out, data, max_hours) -> None:
    """Train a mini-Xception classifier on its data's training part (test parts never seen)."""
    from pathlib import Path

    from faceflex.device import resolve_device
    from faceflex.train.classifier import TASKS, ClassifierTrainer

    config = session.config({f"train_classifier.{task}.epochs": epochs, "train_classifier.data": data, "train_classifier.max_hours": max_hours})
    section = config["train_classifier"]
    data_set = _task_data(session, task, section)
    settings = _classifier_settings(config, task)
    out_dir = Path(out or Path(section["out"]) / task)
    trainer = ClassifierTrainer(TASKS[task], data_set, settings, out_dir, resolve_device(config["device"]))
    if resume:
        _resume(session, trainer, Path(resume), settings.epochs)

    def progress_factory(epoch: int, steps: int):
        return _LossBar(_progress(session, steps, f"epoch {epoch + 1}/{settings.epochs}"))

    trainer.run(on_epoch=lambda record: click.echo(json.dumps(record), err=True), progress_factory=progress_factory, max_hours=section["max_hours"])
    session.say(f"weights: {out_dir / (task + '.pt')}")


def _resume(session: Session, trainer, path, epochs: int) -> None:
    """Load a checkpoint into a trainer; say so, and say when the schedule's length changed."""
    try:
        saved = trainer.load_checkpoint(path)
    except (ValueError, KeyError, RuntimeError) as error:
        raise UsageProblem(f"cannot resume from {path}: {error}") from None
    session.say(f"resumed from {path} after epoch {trainer.epoch}")
    if saved.get("epochs") != epochs:
        session.say(f"note: the learning-rate schedule now spans {epochs} epochs (the checkpoint's spanned {saved.get('epochs')})")


def _task_data(session: Session, task: str, section: dict):
    from faceflex.train.face_sets import task_set

    session.say(f"reading the {task} data from {section['data']} (caches in {section['cache']})")
    try:
        return task_set(task, section["data"], section["cache"])
    except FileNotFoundError as error:
        raise UsageProblem(str(error)) from None


def _classifier_settings(config: dict, task: str):
    from faceflex.train.classifier import ClassifierSettings

    return ClassifierSettings(**config["train_classifier"][task], seed=config["seed"])


@cli.group()
def evaluate() -> None:
    """Measure faceflex's models on held-out data."""


@evaluate.command("vae")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), help="Weight file (default: the shipped data/vae.pt).")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache holding the held-out faces.")
@click.option("--limit", type=int, default=None, help="Use only the first N held-out faces.")
@click.option("--out-dir", "out_dir", type=click.Path(file_okay=False), help="Where to write the side-by-side grid PNG.")
@click.pass_obj
def evaluate_vae(session: Session, weights, cache, limit, out_dir) -> None:
    """PSNR and SSIM of reconstructions of the held-out CelebA-HQ faces, and timing."""
    from pathlib import Path

    from faceflex.evaluation_vae import evaluate_reconstruction
    from faceflex.train.cache import open_cache
    from faceflex.vae import load_vae

    config = session.config({"train_vae.cache": cache, "output.out_dir": out_dir})
    try:
        faces = open_cache(config["train_vae"]["cache"])
    except FileNotFoundError as error:
        raise UsageProblem(str(error)) from None
    vae = load_vae(weights, device=config["device"])
    report = evaluate_reconstruction(vae, faces, limit=limit, grid_path=Path(config["output"]["out_dir"] or "out") / "vae_reconstructions.png")
    click.echo(json.dumps(report, indent=1))


@evaluate.command("classifier")
@click.option("--task", type=click.Choice(["attributes", "expression", "age"]), required=True, help="Which model to measure.")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), help="Weight file (default: the shipped one).")
@click.option("--data", type=click.Path(file_okay=False), help="Folder with celeba_hq/, fer2013/, utkface/, ckplus/.")
@click.pass_obj
def evaluate_classifier(session: Session, task, weights, data) -> None:
    """Accuracy of a classifier on its untouched test part (and CK+ for expression), as JSON."""
    from pathlib import Path

    from faceflex.classify import load_task_model
    from faceflex.device import resolve_device
    from faceflex.train.classifier import TASKS, evaluate_part
    from faceflex.train.face_sets import ckplus_set

    config = session.config({"train_classifier.data": data})
    section = config["train_classifier"]
    device = resolve_device(config["device"])
    model = load_task_model(task, weights, device)
    report = {"task": task, "weights": str(weights or "shipped"), "test": evaluate_part(TASKS[task], model, _task_data(session, task, section), "test", device)}
    if task == "expression":
        ck_dir = Path(section["data"]) / "ckplus"
        if (ck_dir / "ckplus48.zip").is_file():
            for reframe, key in ((False, "ckplus_as_given"), (True, "ckplus_reframed")):
                ck = ckplus_set(ck_dir, reframe)
                report[key] = {**evaluate_part(TASKS[task], model, ck, "test", device), "dlib_missed": ck.notes["dlib_missed"]}
    click.echo(json.dumps(report, indent=1))


@evaluate.command("edit")
@click.option("--attributes", default="Smiling,Male,Young,Mustache,Eyeglasses", show_default=True, help="Comma-separated attributes.")
@click.option("--strengths", default="1,2,3,4", show_default=True, help="Comma-separated strengths (applied with the sign that adds or removes).")
@click.option("--faces", "faces_per_side", type=click.IntRange(min=1), default=40, show_default=True, help="Held-out faces lacking / having each attribute.")
@click.option("--modes", default="residual,replace", show_default=True, help="Comma-separated modes.")
@click.option("--version", type=int, default=None, help="One vector version (default: the mean of all versions).")
@click.option("--vectors", "vectors_path", type=click.Path(dir_okay=False, exists=True), help="Attribute-vector file (default: shipped).")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache holding the held-out faces.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Also write the JSON report here.")
@click.pass_obj
def evaluate_edit(session: Session, attributes, strengths, faces_per_side, modes, version, vectors_path, cache, out_path) -> None:
    """Edit success (classifier crosses 0.5) and identity kept (dlib descriptor < 0.6) on held-out faces."""
    from faceflex.classify import load_task_model
    from faceflex.device import resolve_device
    from faceflex.evaluation_edit import evaluate_edits
    from faceflex.io import write_text
    from faceflex.train.cache import open_cache
    from faceflex.vae import load_vae
    from faceflex.vectors import UnknownAttribute, load_vectors

    config = session.config({"train_vae.cache": cache})
    try:
        faces = open_cache(config["train_vae"]["cache"])
        vectors = load_vectors(vectors_path)
        names = [vectors.resolve(n) for n in attributes.split(",") if n.strip()]
        values = [float(v) for v in strengths.split(",") if v.strip()]
        mode_list = [m.strip() for m in modes.split(",") if m.strip()]
        if any(m not in ("residual", "replace") for m in mode_list):
            raise ValueError(f"modes must be residual and/or replace, not {modes!r}")
    except (FileNotFoundError, UnknownAttribute, ValueError) as error:
        raise UsageProblem(str(error)) from None
    device = resolve_device(config["device"])
    with _progress(session, len(names) * len(mode_list) * 2 * faces_per_side, "editing held-out faces") as bar:
        report = evaluate_edits(
            load_vae(device=config["device"]), vectors, load_task_model("attributes", None, device), faces, names, values,
            faces_per_side, mode_list, version, progress=bar.update,
        )
    text = json.dumps(report, indent=1)
    if out_path:
        write_text(text + "\n", out_path)
    click.echo(text)


class _LossBar:
    """A progress bar that shows the running loss."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, n: int, values: dict) -> None:
        self.bar.label = " ".join(f"{k} {v:.1f}" for k, v in values.items())
        self.bar.update(n)


def _progress(session: Session, length: int, label: str):
    show = not session.quiet and sys.stdout.isatty() and sys.stderr.isatty()
    return click.progressbar(length=length, label=label, file=sys.stderr, hidden=not show, show_pos=True)


def _detect_settings(config: dict):
    from faceflex.face.detect import DetectSettings

    try:
        return DetectSettings(**config["detect"])
    except ValueError as error:
        raise UsageProblem(f"detect: {error}") from None


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="faceflex")


if __name__ == "__main__":
    main()
