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
    report_summary(result, "images", quiet=True)
    sys.exit(result.exit_code)


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
