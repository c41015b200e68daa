"""``faceflex train ...``: prepare the aligned cache, train the VAE and the classifiers, make the attribute vectors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from faceflex.choices import CLASSIFIER_TASKS, PAINTED_ATTRIBUTES, PROTOTYPES_BALANCED
from faceflex.cli.app import Session, UsageProblem, cli, torch_device, verbosity_options


@cli.group()
@verbosity_options
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train faceflex's models from labelled faces (see configs/train_*.yaml).

    vae, unmask, anonymize, painter and classifier also run data-parallel under torchrun
    (torchrun --nproc_per_node=N $(which faceflex) train ...); the other commands are not gradient
    training and run on rank 0 only.
    """
    from faceflex.train import distributed

    if distributed.launched() and ctx.invoked_subcommand not in TRAINER_COMMANDS and int(os.environ.get("RANK", "0")):
        ctx.exit(0)


TRAINER_COMMANDS = (
    "vae",
    "unmask",
    "unmask-detail",
    "anonymize",
    "painter",
    "classifier",
)  # the commands on the shared Trainer (DDP under torchrun)


def training_device(config: dict):
    """The device this process trains on; under torchrun, first join the process group."""
    from faceflex.train import distributed

    return distributed.start(torch_device(config))[1]


@train.command("prepare")
@click.option("--source", type=click.Path(file_okay=False), help="CelebA-HQ folder (shards) or CelebA folder (img_align_celeba/).")
@click.option("--cache", type=click.Path(file_okay=False), help="Where to write the aligned face cache.")
@verbosity_options
@click.pass_obj
def train_prepare(session: Session, source, cache) -> None:
    """Align every labelled face with faceflex's alignment and write a memory-mappable cache."""
    from faceflex.train.cache import build_cache, detect_source

    config = session.config({"train_vae.source": source, "train_vae.cache": cache})["train_vae"]
    source_dir, cache_dir = Path(config["source"]), Path(config["cache"])
    try:
        _, total, _ = detect_source(source_dir)(source_dir)
    except FileNotFoundError as error:
        raise UsageProblem(str(error)) from None
    with session.progress(total, "aligning") as bar:
        meta = build_cache(source_dir, cache_dir, progress=lambda n: bar.update(n))
    session.say(f"cached {meta['faces']} aligned faces in {cache_dir} ({len(meta['skipped_no_face'])} without a face skipped)")


def vae_and_cache_options(command):
    """--weights (a VAE weight file) and --cache (the aligned face cache), for the commands that read
    latents of the CelebA-HQ faces (:func:`faces_and_vae` opens both)."""
    command = click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (default from configs/train_vae.yaml).")(
        command
    )
    return click.option("--weights", type=click.Path(dir_okay=False, exists=True), help="VAE weights (default: the shipped data/vae.pt).")(
        command
    )


def training_options(command):
    """--epochs, --resume and --max-hours (and -q/-v), shared by every training command."""
    command = click.option("--max-hours", type=float, help="Stop after the epoch that passes this many hours.")(command)
    command = click.option("--resume", type=click.Path(dir_okay=False, exists=True), help="Checkpoint to continue from.")(command)
    command = click.option("--epochs", type=int, help="Train up to this many epochs in all.")(command)
    return verbosity_options(command)


def _train(session: Session, trainer, resume: str | None, max_hours: float) -> None:
    """Resume if asked, then train with a loss-showing progress bar and one JSON line per epoch
    (under torchrun, rank 0 alone reports)."""
    main = trainer.ranks.main
    if resume:
        try:
            saved = trainer.load_checkpoint(Path(resume))
        except (ValueError, KeyError, RuntimeError) as error:
            raise UsageProblem(f"cannot resume from {resume}: {error}") from None
        if main:
            within = f", step {trainer.within_epoch['step']} of {trainer.steps_per_epoch}" if trainer.within_epoch else ""
            session.say(f"resumed from {resume} after epoch {trainer.epoch}{within}")
        if main and saved.get("epochs") != trainer.settings.epochs:
            session.say(
                f"note: the learning-rate schedule now spans {trainer.settings.epochs} epochs "
                f"(the checkpoint's spanned {saved.get('epochs')})"
            )

    def progress_factory(epoch: int, steps: int):
        return _LossBar(session.progress(steps, f"epoch {epoch + 1}/{trainer.settings.epochs}"))

    trainer.run(
        on_epoch=lambda record: click.echo(json.dumps(record), err=True),
        progress_factory=progress_factory if main else None,
        max_hours=max_hours,
    )
    if main:
        session.say(f"weights: {trainer.out / (trainer.name + '.pt')}")


@train.command("vae")
@training_options
@click.option("--out", type=click.Path(file_okay=False), help="Folder for checkpoints, grids and weights.")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (built first if missing).")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), help="Warm start from a VAE weight file (e.g. data/vae.pt).")
@click.option("--decoder-only", is_flag=True, default=None, help="Train the decoder alone (latents and attribute vectors stay valid).")
@click.pass_obj
def train_vae(session: Session, epochs, resume, out, cache, max_hours, init, decoder_only) -> None:
    """Train the face VAE on the CelebA-HQ training split (held-out ids 28001-30000 never seen)."""
    from faceflex.models.face_vae import VAEConfig
    from faceflex.train.cache import build_cache, open_cache
    from faceflex.train.vae_trainer import TrainSettings, VAETrainer

    config = session.config(
        {
            "train_vae.epochs": epochs,
            "train_vae.out": out,
            "train_vae.cache": cache,
            "train_vae.max_hours": max_hours,
            "train_vae.init": init,
            "train_vae.decoder_only": decoder_only,
        }
    )
    section = config["train_vae"]
    device = training_device(config)
    cache_dir = Path(section["cache"])
    if not (cache_dir / "meta.json").is_file():
        session.say(f"no face cache in {cache_dir}: building it from {section['source']}")
        build_cache(Path(section["source"]), cache_dir)
    fields = (
        "epochs",
        "batch_size",
        "lr",
        "beta",
        "kl_warmup_epochs",
        "flip",
        "max_hours",
        "init",
        "decoder_only",
        "ssim_weight",
        "laplacian_weight",
        "adversarial_weight",
        "adversarial_start",
        "critic_lr",
    )
    settings = TrainSettings(**{key: section[key] for key in fields}, seed=config["seed"])
    trainer = VAETrainer(
        open_cache(cache_dir),
        VAEConfig(**{key: config["vae"][key] for key in ("latent", "channels", "spatial", "res_blocks")}),
        settings,
        Path(section["out"]),
        device,
    )
    if trainer.init_note:
        session.say(trainer.init_note)
    _train(session, trainer, resume, section["max_hours"])


def _face_training_config(session: Session, name: str, epochs, out, cache, max_hours, init, more=None) -> tuple[dict, dict, Path]:
    """(config, its ``name`` section, the aligned face cache folder) for a trainer on the CelebA-HQ
    face cache, the flags (and ``more`` of the section's) applied; the cache is built first when it is missing."""
    from faceflex.train.cache import build_cache

    flags = {"epochs": epochs, "out": out, "cache": cache, "max_hours": max_hours, "init": init, **(more or {})}
    config = session.config({f"{name}.{key}": value for key, value in flags.items()})
    section = config[name]
    cache_dir = Path(section["cache"])
    if not (cache_dir / "meta.json").is_file():
        session.say(f"no face cache in {cache_dir}: building it from {config['train_vae']['source']}")
        build_cache(Path(config["train_vae"]["source"]), cache_dir)
    return config, section, cache_dir


def _section_settings(settings_class, section: dict, seed: int):
    """A trainer's settings dataclass filled from its config ``section`` (every field but the seed) and the global ``seed``."""
    return settings_class(**{key: section[key] for key in settings_class.__dataclass_fields__ if key != "seed"}, seed=seed)


@train.command("unmask")
@training_options
@click.option("--out", type=click.Path(file_okay=False), help="Folder for checkpoints, grids and weights.")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (built first if missing).")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), help="Warm start from an unmasking weight file.")
@click.pass_obj
def train_unmask(session: Session, epochs, resume, out, cache, max_hours, init) -> None:
    """Train the unmasking network on the CelebA-HQ training split with synthetic masks drawn on the fly."""
    from faceflex.models.face_unet import FaceUNetConfig
    from faceflex.train.cache import open_cache
    from faceflex.train.unmask_trainer import UnmaskSettings, UnmaskTrainer

    config, section, cache_dir = _face_training_config(session, "train_unmask", epochs, out, cache, max_hours, init)
    settings = _section_settings(UnmaskSettings, section, config["seed"])
    network = FaceUNetConfig(tuple(config["unmask_net"]["channels"]), config["unmask_net"]["bottleneck_blocks"])
    trainer = UnmaskTrainer(
        open_cache(cache_dir),
        network,
        settings,
        Path(section["out"]),
        training_device(config),
        init=section["init"],
        utk_cache=cache_dir.parent,
    )
    _train(session, trainer, resume, section["max_hours"])


@train.command("unmask-detail")
@training_options
@click.option("--out", type=click.Path(file_okay=False), help="Folder for checkpoints, grids and weights.")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (built first if missing).")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), help="Warm start from a detail-stage weight file.")
@click.option("--base", type=click.Path(dir_okay=False, exists=True), help="The unmasking network it refines (frozen).")
@click.pass_obj
def train_unmask_detail(session: Session, epochs, resume, out, cache, max_hours, init, base) -> None:
    """Train the unmasking detail stage: fine detail drawn over the frozen unmasking network's faces."""
    from faceflex.models.face_unet import FaceUNetConfig
    from faceflex.train.cache import open_cache
    from faceflex.train.unmask_trainer import UnmaskDetailSettings, UnmaskDetailTrainer

    config, section, cache_dir = _face_training_config(session, "train_unmask_detail", epochs, out, cache, max_hours, init, {"base": base})
    settings = _section_settings(UnmaskDetailSettings, section, config["seed"])
    net = config["unmask_detail_net"]
    network = FaceUNetConfig(tuple(net["channels"]), net["bottleneck_blocks"], in_channels=4, mask_head=False, detail_output=True)
    trainer = UnmaskDetailTrainer(
        open_cache(cache_dir),
        network,
        settings,
        Path(section["out"]),
        training_device(config),
        init=section["init"],
        utk_cache=cache_dir.parent,
    )
    _train(session, trainer, resume, section["max_hours"])


@train.command("anonymize")
@training_options
@click.option("--out", type=click.Path(file_okay=False), help="Folder for checkpoints, grids and weights.")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (built first if missing).")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), help="Warm start from an unmasking or anonymizer weight file.")
@click.pass_obj
def train_anonymize(session: Session, epochs, resume, out, cache, max_hours, init) -> None:
    """Train the anonymizer: paint each CelebA-HQ training face back from its surroundings, its
    landmarks drawn as lines and its dlib descriptor (the identity a random code replaces at use)."""
    from faceflex.train.anonymizer_trainer import CODE_SIZE, AnonymizerTrainer

    _train_painter(session, "anonymizer_net", "train_anonymize", AnonymizerTrainer, CODE_SIZE, epochs, resume, out, cache, max_hours, init)


@train.command("painter")
@training_options
@click.option("--attribute", type=click.Choice(PAINTED_ATTRIBUTES), help="The target's attribute.")
@click.option("--direction", type=click.Choice(["add", "remove"]), help="add: learn from faces with it; remove: from faces without it.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for checkpoints, grids and weights.")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (built first if missing).")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), help="Warm start: the anonymizer whose encoder every target shares.")
@click.pass_obj
def train_painter(session: Session, epochs, resume, attribute, direction, out, cache, max_hours, init) -> None:
    """Train one target of the attribute painter (`faceflex edit --mode paint`): repaint the
    attribute's region (eyes, upper lip, mouth) of CelebA-HQ training faces that show the outcome
    (to add glasses: faces wearing them), from the rest of the face, its landmarks and its dlib
    descriptor. Pack the targets with `faceflex train pack-painter`."""
    from faceflex.train.anonymizer_trainer import CODE_SIZE
    from faceflex.train.attribute_painter_trainer import AttributePainterTrainer

    target = {"attribute": attribute, "direction": direction}
    trainer = AttributePainterTrainer
    _train_painter(session, "painter_net", "train_paint", trainer, CODE_SIZE, epochs, resume, out, cache, max_hours, init, target)


@train.command("pack-painter")
@click.argument("targets", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default="data/attribute_painter.pt", show_default=True, help="The packed file.")
@verbosity_options
@click.pass_obj
def train_pack_painter(session: Session, targets, out) -> None:
    """Pack target weight files (`faceflex train painter` exports, one encoder shared) into one attribute painter file."""
    from faceflex.inference.attribute_painting import AttributePainter, pack_targets
    from faceflex.models.weights import WeightsError

    try:
        path = pack_targets(list(targets), out)
    except WeightsError as error:
        raise UsageProblem(str(error)) from None
    painter = AttributePainter.from_file(path, "cpu")
    click.echo(json.dumps({"out": str(path), "targets": painter.targets, "bytes": path.stat().st_size}))


def _train_painter(
    session: Session, net_name: str, name: str, trainer_class, code_size: int, epochs, resume, out, cache, max_hours, init, flags=None
):
    """Train a face painter (the anonymizer or the attribute painter) from config sections ``net_name`` and ``name``."""
    from faceflex.models.face_unet import FaceUNetConfig
    from faceflex.train.anonymizer_trainer import IN_CHANNELS
    from faceflex.train.cache import open_cache

    config, section, cache_dir = _face_training_config(session, name, epochs, out, cache, max_hours, init, flags)
    settings = _section_settings(trainer_class.settings_class, section, config["seed"])
    net = config[net_name]
    network = FaceUNetConfig(
        tuple(net["channels"]), net["bottleneck_blocks"], in_channels=IN_CHANNELS, mask_head=False, code_size=code_size
    )
    if trainer_class.uses_identity:
        session.say("reading the training faces' dlib descriptors (computed once, 6-10 ms a face, and cached beside the face cache)")
    trainer = trainer_class(
        open_cache(cache_dir), cache_dir, network, settings, Path(section["out"]), training_device(config), init=section["init"]
    )
    if trainer.init_note:
        session.say(trainer.init_note)
    _train(session, trainer, resume, section["max_hours"])


@train.command("mask-detector")
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (default from configs/train_vae.yaml).")
@click.option("--count", type=click.IntRange(min=10), default=2000, show_default=True, help="Synthetic masked faces to train on.")
@click.option("--max-minutes", type=click.IntRange(min=1), default=30, show_default=True, help="Cap on dlib's training time.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Where to write the detector [default: data/masked_face_detector.svm; --part upper: data/upper_face_detector.svm].",
)
@click.option(
    "--part",
    type=click.Choice(["face", "upper"]),
    default="face",
    show_default=True,
    help="face: the masked face's whole box; upper: its top half (brows, eyes, nose bridge).",
)
@verbosity_options
@click.pass_obj
def train_mask_detector(session: Session, cache, count, max_minutes, out, part) -> None:
    """A HOG face detector for masked faces, from synthetic masks on the CelebA-HQ training split."""
    out = out or ("data/upper_face_detector.svm" if part == "upper" else "data/masked_face_detector.svm")
    from faceflex.train.cache import open_cache
    from faceflex.train.masked_detector import train_masked_detector

    config = session.config({"train_vae.cache": cache})
    try:
        faces = open_cache(config["train_vae"]["cache"])
    except FileNotFoundError as error:
        raise UsageProblem(str(error)) from None
    with session.progress(count, "drawing masked faces") as bar:
        report = train_masked_detector(
            faces, Path(out), count, config["seed"], max_minutes * 60, progress=bar.update, upper=part == "upper"
        )
    click.echo(json.dumps({"out": out, **report}))


@train.command("vectors")
@click.option("--attributes", default="all", show_default=True, help="'all' or comma-separated CelebA attribute names.")
@click.option("--samples-per-version", type=click.IntRange(min=1), default=200, show_default=True, help="Faces per side in each version.")
@click.option("--version-count", type=click.IntRange(min=1), default=25, show_default=True, help="Disjoint versions per attribute.")
@click.option("--orthogonal-to", default="", help="Comma-separated attributes whose directions are projected out of every vector.")
@vae_and_cache_options
@click.option(
    "--out", type=click.Path(dir_okay=False), default="data/attribute_vectors.npz", show_default=True, help="Where to write the vectors."
)
@verbosity_options
@click.pass_obj
def train_vectors(session: Session, attributes, samples_per_version, version_count, orthogonal_to, weights, cache, out) -> None:
    """Attribute vectors from the CelebA-HQ training split's mean latents (held-out ids never used)."""
    from faceflex.inference.attribute_vectors import AttributeVectors
    from faceflex.train.attribute_vectors import compute_vectors, encode_rows, orthogonal_versions

    faces, vae = faces_and_vae(session, cache, weights)
    names, against = attribute_lists(faces.attribute_names, attributes, orthogonal_to)
    rows = faces.split("train")
    with session.progress(len(rows), "encoding") as bar:
        latents = encode_rows(vae, faces, rows, progress=bar.update)
    columns = [faces.attribute_names.index(n) for n in dict.fromkeys(names + against)]
    full = compute_vectors(
        latents,
        faces.attributes[rows][:, columns],
        [faces.attribute_names[c] for c in columns],
        version_count,
        samples_per_version,
        session.config()["seed"],
    )
    keep = [full.names.index(n) for n in names]
    vectors = orthogonal_versions(full, against)[keep]
    meta = {
        **full.meta,
        "orthogonal_to": against,
        "vae": str(weights or "shipped data/vae.pt"),
        "vae_epochs": vae.meta.get("epochs"),
        "vae_fingerprint": vae.fingerprint,
        "command": "faceflex " + " ".join(sys.argv[1:]),
    }
    result = AttributeVectors(names, vectors, full.samples[keep], meta).save(out)
    session.say(f"wrote {len(names)} attributes x {version_count} versions to {result} (for VAE weights {vae.fingerprint})")


@train.command("landmarks")
@vae_and_cache_options
@click.option(
    "--out", type=click.Path(dir_okay=False), default="data/latent_landmarks.npz", show_default=True, help="Where to write the regressor."
)
@verbosity_options
@click.pass_obj
def train_landmarks(session: Session, weights, cache, out) -> None:
    """The latent -> 68 landmarks ridge regression that moves a face's shape in warp edits."""
    import numpy as np

    from faceflex.train.attribute_vectors import encode_rows
    from faceflex.train.latent_landmarks import fit_landmark_regressor

    faces, vae = faces_and_vae(session, cache, weights)
    rows = np.arange(len(faces.ids))
    with session.progress(len(rows), "encoding") as bar:
        latents = encode_rows(vae, faces, rows, progress=bar.update)
    meta = {
        "vae": str(weights or "shipped data/vae.pt"),
        "vae_fingerprint": vae.fingerprint,
        "command": "faceflex " + " ".join(sys.argv[1:]),
    }
    regressor = fit_landmark_regressor(latents, np.asarray(faces.landmarks), faces.split("train"), faces.split("test"), meta)
    regressor.save(out)
    session.say(f"wrote {out}: held-out error {regressor.meta['held_out_error']} (mean shape: {regressor.meta['mean_shape_error']})")


@train.command("prototypes")
@click.option("--attributes", default="all", show_default=True, help="'all' or comma-separated CelebA attribute names.")
@click.option(
    "--balance",
    default=",".join(PROTOTYPES_BALANCED),
    show_default=True,
    help="Attributes made equally common in both groups of every other attribute (comma-separated).",
)
@click.option("--cache", type=click.Path(file_okay=False), help="Aligned face cache (default from configs/train_vae.yaml).")
@click.option(
    "--out", type=click.Path(dir_okay=False), default="data/attribute_prototypes.npz", show_default=True, help="Where to write them."
)
@verbosity_options
@click.pass_obj
def train_prototypes(session: Session, attributes, balance, cache, out) -> None:
    """Attribute prototypes (shape, colour, texture of the average faces with and without each attribute)
    from the CelebA-HQ training split (held-out ids never used): what `faceflex edit --mode prototype` applies."""
    from faceflex.train.attribute_prototypes import build_prototypes
    from faceflex.train.cache import open_cache

    config = session.config({"train_vae.cache": cache})
    try:
        faces = open_cache(config["train_vae"]["cache"])
    except FileNotFoundError as error:
        raise UsageProblem(str(error)) from None
    names, balanced = attribute_lists(faces.attribute_names, attributes, balance)
    rows = faces.split("train")
    meta = {"command": "faceflex " + " ".join(sys.argv[1:])}
    with session.progress(len(rows), "averaging") as bar:
        prototypes = build_prototypes(faces, rows, names, meta, balanced, progress=bar.update)
    prototypes.save(out)
    session.say(f"wrote the prototypes of {len(names)} attributes from {len(rows)} training faces to {out}")


@train.command("gender-age")
@training_options
@click.option("--out", type=click.Path(file_okay=False), help="Folder for checkpoints and weights (default runs/classifier/gender_age).")
@click.option("--data", type=click.Path(file_okay=False), help="Folder with celeba_hq/ and utkface/ (default from the config).")
@click.pass_obj
def train_gender_age(session: Session, epochs, resume, out, data, max_hours) -> None:
    """Fine-tune a copy of dlib's top blocks for gender and age (what classify reports) on CelebA-HQ and UTKFace."""
    from faceflex.face.dlib_models import face_descriptor_net
    from faceflex.train.face_sets import face_set_dlib_stages
    from faceflex.train.gender_age_trainer import GenderAgeSettings, GenderAgeTrainer

    config = session.config(
        {"train_classifier.gender_age.epochs": epochs, "train_classifier.data": data, "train_classifier.max_hours": max_hours}
    )
    section = config["train_classifier"]
    faces = task_data(session, "face", section)
    cache = Path(section["cache"])
    settings = GenderAgeSettings(**section["gender_age"], seed=config["seed"])
    with session.progress(len(faces.split), "dlib features of every face (cached once)") as bar:
        stages = face_set_dlib_stages(cache / "celeba_hq", Path(section["data"]) / "utkface", cache, settings.from_block - 1, bar.update)
    out = Path(out or Path(section["out"]) / "gender_age")
    trainer = GenderAgeTrainer(faces, stages, face_descriptor_net(), settings, out, training_device(config))
    _train(session, trainer, resume, section["max_hours"])


@train.command("classifier")
@click.option("--task", type=click.Choice(CLASSIFIER_TASKS), required=True, help="Which model to train.")
@training_options
@click.option("--out", type=click.Path(file_okay=False), help="Folder for checkpoints and weights (default runs/classifier/TASK).")
@click.option("--data", type=click.Path(file_okay=False), help="Folder with celeba_hq/, fer2013/, utkface/.")
@click.pass_obj
def train_classifier(session: Session, task, epochs, resume, out, data, max_hours) -> None:
    """Train a classifier on its data's training part (test parts never seen)."""
    from faceflex.train.classifier_trainer import TASKS, ClassifierSettings, ClassifierTrainer

    config = session.config(
        {f"train_classifier.{task}.epochs": epochs, "train_classifier.data": data, "train_classifier.max_hours": max_hours}
    )
    section = config["train_classifier"]
    device = training_device(config)
    settings = ClassifierSettings(**section[task], seed=config["seed"])
    data_set = task_data(session, task, section, descriptors=task == "face" and settings.descriptor_weight > 0)
    trainer = ClassifierTrainer(TASKS[task], data_set, settings, Path(out or Path(section["out"]) / task), device)
    _train(session, trainer, resume, section["max_hours"])


@train.command("ensemble")
@click.option("--task", type=click.Choice(CLASSIFIER_TASKS), required=True, help="The task the weight files were trained for.")
@click.argument("members", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Where to write the ensemble's weights.")
@click.option("--data", type=click.Path(file_okay=False), help="Folder with the task's data (for the validation part).")
@click.option(
    "--flip-average/--no-flip-average",
    default=None,
    help="Also average each member over the mirror image (twice the cost); default: as the members.",
)
@verbosity_options
@click.pass_obj
def train_ensemble(session: Session, task, members, out, data, flip_average) -> None:
    """Combine classifier weight files of one architecture into one ensemble (outputs averaged,
    temperatures fitted on the validation part)."""
    from faceflex.inference.classifiers import load_task_model
    from faceflex.models.weights import WeightsError, save_weights
    from faceflex.train.classifier_trainer import TASKS, combine_members

    config = session.config({"train_classifier.data": data})
    device = torch_device(config)
    try:
        loaded = [load_task_model(task, path, device) for path in members]
        ensemble, meta = combine_members(TASKS[task], loaded, task_data(session, task, config["train_classifier"]), device, flip_average)
    except (WeightsError, ValueError) as error:
        raise UsageProblem(str(error)) from None
    meta["member_files"] = [Path(path).name for path in members]
    save_weights(out, ensemble, ensemble.config.to_dict(), meta)
    session.say(f"weights: {out} ({len(members)} members; temperatures {meta['temperatures']})")


def attribute_lists(known: list[str], chosen: str, *others: str) -> tuple[list[str], ...]:
    """Canonical attribute names: ``chosen`` ('all' or comma-separated), then each of ``others``
    (comma-separated, possibly empty); an unknown name is a usage error."""
    from faceflex.config import comma_list
    from faceflex.inference.attribute_vectors import UnknownAttribute, resolve_attribute

    try:
        names = known if chosen.strip().lower() == "all" else [resolve_attribute(n, known) for n in comma_list(chosen)]
        return (names, *([resolve_attribute(n, known) for n in comma_list(other)] for other in others))
    except UnknownAttribute as error:
        raise UsageProblem(str(error)) from None


def faces_and_vae(session: Session, cache: str | None, weights: str | None):
    """The aligned face cache (``--cache`` or the config's) and a VAE (``--weights`` or the shipped
    one) on the configured device; a missing or unusable file is a usage error."""
    from faceflex.inference.vae_codec import load_vae
    from faceflex.models.weights import WeightsError
    from faceflex.train.cache import open_cache

    config = session.config({"train_vae.cache": cache})
    device = torch_device(config)
    try:
        return open_cache(config["train_vae"]["cache"]), load_vae(weights, device=device.type)
    except (FileNotFoundError, WeightsError) as error:
        raise UsageProblem(str(error)) from None


def task_data(session: Session, task: str, section: dict, descriptors: bool = False):
    """A task's labelled set (train/val/test parts), read from the shared data folder (``descriptors``:
    with the face task's dlib descriptor targets, computed once into the cache folder)."""
    from faceflex.train.face_sets import task_set

    session.say(f"reading the {task} data from {section['data']} (caches in {section['cache']})")
    try:
        return task_set(task, section["data"], section["cache"], descriptors=descriptors)
    except FileNotFoundError as error:
        raise UsageProblem(str(error)) from None


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
