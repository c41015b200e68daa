"""The ``faceflex`` command group, the options every command shares, and the one batch entry point.

Heavy modules (numpy, Pillow, dlib, torch) are imported inside the commands, so that
``faceflex --help`` starts fast.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from faceflex import __version__
from faceflex.choices import BACKENDS, DETECTORS, DEVICES, FACES, MANIFEST_FORMATS


class UsageProblem(click.ClickException):
    """A usage or configuration error: one line on stderr, exit code 2."""

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

    def progress(self, length: int | None = None, label: str = "", items=None):
        """A progress bar on stderr (hidden unless both streams are terminals and not --quiet)."""
        show = not self.quiet and sys.stdout.isatty() and sys.stderr.isatty()
        return click.progressbar(items, length=length, label=label, file=sys.stderr, hidden=not show, show_pos=True)

    def error(self, message: str) -> None:
        """An error line on stderr (never silenced)."""
        click.echo(message, err=True)


def torch_device(config: dict):
    """The torch device the config asks for; ``cuda`` without a GPU is a usage error (exit 2)."""
    from faceflex.device import DeviceError, resolve_device

    try:
        return resolve_device(config["device"])
    except DeviceError as error:
        raise UsageProblem(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceflex")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file (overrides configs/default.yaml).")
@click.option("--device", type=click.Choice(DEVICES, case_sensitive=False), help="Where models run.")
@click.option("--seed", type=int, help="Seed for anything random.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bar.")
@click.option("-v", "--verbose", is_flag=True, help="Per-file details and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, config_file, device, seed, quiet, verbose) -> None:
    """faceflex: find, align, edit and classify faces in photos, one photo or a folder of thousands."""
    if quiet and verbose:
        raise UsageProblem("--quiet and --verbose cannot be used together")
    ctx.obj = Session(config_file, device, seed, quiet, verbose)


def _set_flag(name: str):
    def callback(ctx: click.Context, _param, value: bool) -> None:
        if value:
            session = ctx.find_object(Session)
            setattr(session, name, True)
            if session.quiet and session.verbose:
                raise UsageProblem("--quiet and --verbose cannot be used together")

    return callback


def verbosity_options(command):
    """-q/--quiet and -v/--verbose, also accepted after any command (same meaning as before it)."""
    command = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_flag("quiet"), help="As the global --quiet.")(
        command
    )
    return click.option(
        "-v", "--verbose", is_flag=True, expose_value=False, callback=_set_flag("verbose"), help="As the global --verbose."
    )(command)


def photo_options(command):
    """The options of every command that works on photos: inputs, outputs, manifest, detection, faces."""
    options = [
        click.argument("paths", nargs=-1, type=click.Path(readable=False, dir_okay=True, file_okay=True)),
        click.option("-r", "--recursive", is_flag=True, default=None, help="Descend into sub-folders of folder inputs."),
        click.option("-o", "--out-dir", type=click.Path(file_okay=False), help="Folder for written files (default ./out)."),
        click.option(
            "--manifest",
            metavar="FILE",
            help="Records file ('-' for stdout). Default: OUT_DIR/<command>.<format> when an output folder is set "
            "or photos are edited, else stdout.",
        ),
        click.option("--format", "manifest_format", type=click.Choice(MANIFEST_FORMATS), help="Manifest format (default json)."),
        click.option(
            "--skip-existing",
            is_flag=True,
            default=None,
            help="Resume: skip inputs the manifest already lists as done, with their outputs present.",
        ),
        click.option("--faces", "which_faces", type=click.Choice(FACES), help="Work on every face, or only the largest."),
        click.option(
            "--plot-landmarks", is_flag=True, help="Also save each photo with boxes, scores and numbered landmarks (<name>.landmarks.png)."
        ),
        click.option(
            "--detector",
            type=click.Choice(DETECTORS, case_sensitive=False),
            help="hog: dlib's, fast; cnn: dlib's CNN, slower, more poses; hog+cnn: both; hog+masked: HOG + faceflex's masked-face HOG.",
        ),
        click.option("--upsample", type=int, help="Extra dlib upsampling of the working copy (0-3), for tiny faces."),
        click.option("--min-face", type=float, help="Smallest face box side kept, in photo pixels."),
        click.option("--threshold", type=float, help="Minimum detection score."),
        click.option("--max-side", type=int, help="Large photos are searched at this long side."),
        click.option(
            "--workers",
            metavar="N|auto",
            help="Photos worked on at once, each in its own process (default auto: the CPU cores; 1 for a single input).",
        ),
        click.option(
            "--backend",
            type=click.Choice(BACKENDS),
            help="local: processes on this machine; ray: Ray actors (pip install 'faceflex[ray]'; RAY_ADDRESS joins a cluster).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return verbosity_options(command)


@dataclass(frozen=True)
class PhotoArgs:
    """The values of :func:`photo_options`, as the command received them."""

    paths: tuple[str, ...]
    recursive: bool | None
    out_dir: str | None
    manifest: str | None
    manifest_format: str | None
    skip_existing: bool | None
    which_faces: str | None
    plot_landmarks: bool
    detector: str | None
    upsample: int | None
    min_face: float | None
    threshold: float | None
    max_side: int | None
    workers: str | None
    backend: str | None

    @classmethod
    def take(cls, kwargs: dict) -> PhotoArgs:
        """Pop the shared options out of a command's keyword arguments."""
        return cls(**{name: kwargs.pop(name) for name in cls.__dataclass_fields__})

    def overrides(self) -> dict:
        return {
            "input.recursive": self.recursive,
            "output.out_dir": self.out_dir,
            "output.manifest": self.manifest,
            "output.format": self.manifest_format,
            "output.skip_existing": self.skip_existing,
            "detect.faces": self.which_faces,
            "detect.detector": self.detector,
            "detect.upsample": self.upsample,
            "detect.min_face": self.min_face,
            "detect.threshold": self.threshold,
            "detect.max_side": self.max_side,
            "run.workers": int(self.workers) if self.workers and self.workers.isdigit() else self.workers,
            "run.backend": self.backend,
        }


def run_photos(
    session: Session,
    args: PhotoArgs,
    config: dict,
    step,
    *,
    default_inputs: list[str],
    videos: bool = False,
    every: int = 1,
    sheet: str | None = None,
    on_record: Callable[[dict], None] | None = None,
) -> None:
    """Run a step over the inputs with the shared runner, report, and exit with the batch's code
    (``on_record``: called with each succeeded input's manifest record)."""
    from faceflex.face.detect import DetectSettings
    from faceflex.io.files import OutputError
    from faceflex.io.inputs import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, InputError, iter_inputs
    from faceflex.pipeline.executors import resolve_workers
    from faceflex.pipeline.jobs import PhotoJob
    from faceflex.pipeline.runner import Runner, RunSettings

    detect = dict(config["detect"])
    which = detect.pop("faces")
    try:
        detect_settings = DetectSettings(**detect)
    except ValueError as error:
        raise UsageProblem(f"detect: {error}") from None
    extensions = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS if videos else IMAGE_EXTENSIONS
    specs = list(args.paths) or default_inputs
    items, missing = [], []
    for entry in iter_inputs(specs, recursive=config["input"]["recursive"], extensions=extensions):
        (missing if isinstance(entry, InputError) else items).append(entry)
    output = config["output"]
    out_dir = Path(output["out_dir"] or "out")
    writes_files = step.writes_variants or args.plot_landmarks or bool(getattr(step, "annotate", False)) or any(i.is_video for i in items)
    manifest = output["manifest"]
    if manifest is None:
        explicit_folder = output["out_dir"] is not None
        manifest = str(out_dir / f"{step.command}.{output['format']}") if explicit_folder or step.writes_variants else "-"
    if writes_files:
        _refuse_out_dir_inside_inputs(out_dir, specs, config["input"]["recursive"])
    if output["skip_existing"] and manifest == "-":
        raise UsageProblem("--skip-existing needs a manifest file to resume from (set --manifest or --out-dir)")
    header = {
        "faceflex": __version__,
        "command": step.command,
        "settings": {**step.settings(), "faces": which, "detect": vars(detect_settings)},
    }
    run_settings = RunSettings(
        out_dir=out_dir,
        manifest=manifest,
        manifest_format=output["format"],
        skip_existing=output["skip_existing"],
        jpeg_quality=output["jpeg_quality"],
        quiet=session.quiet,
        verbose=session.verbose,
        workers=resolve_workers(config["run"]["workers"], len(items)),
        backend=config["run"]["backend"],
    )
    if run_settings.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageProblem("--backend ray needs Ray: pip install 'faceflex[ray]'")
    job = PhotoJob(step, detect_settings, which, config["input"]["max_pixels"], args.plot_landmarks, every, sheet)
    runner = Runner(header, run_settings, writes_files, reporter=_BatchReporter(session), on_record=on_record)
    try:
        result = runner.run(items, missing, job)
    except OutputError as error:
        raise UsageProblem(str(error)) from None
    runner.report_summary(result, "inputs")
    sys.exit(result.exit_code)


class _BatchReporter:
    """The runner's messages through the session: progress lines, errors, a progress bar for batches."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def say(self, message: str) -> None:
        self.session.say(message)

    def error(self, message: str) -> None:
        self.session.error(message)

    def progress(self, items, label: str):
        return self.session.progress(label=label, items=items) if len(items) > 1 else contextlib.nullcontext(items)


def _refuse_out_dir_inside_inputs(out_dir: Path, specs: list[str], recursive: bool) -> None:
    """An output folder that is an input folder (or inside one, with -r) would feed this run's
    outputs to the next run as inputs: refuse it."""
    target = os.path.realpath(out_dir)
    for spec in specs:
        if not os.path.isdir(spec):
            continue
        folder = os.path.realpath(spec)
        if target == folder or (recursive and target.startswith(folder + os.sep)):
            raise UsageProblem(
                f"--out-dir {out_dir} is {'the' if target == folder else 'inside the'} input folder {spec}: "
                "the next run would read these outputs as photos; choose another folder"
            )
