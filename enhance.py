"""The classic Face Flex entry point: ``python enhance.py [--out_dir DIR] [--plot_landmarks]``.

A thin wrapper over ``faceflex edit``: it edits the config's ``edit.image_filename`` (by default
the embedded demo face) with the config's ``edit.attribute``, ``edit.parameter_range`` and
``edit.sample_size``, reading configs/default.yaml and ``--config FILE`` as every command does.
"""

from __future__ import annotations

import argparse

from faceflex.cli import cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", default="out", help="folder for the outputs (default: out)")
    parser.add_argument("--plot_landmarks", action="store_true", help="also save each aligned face with its landmarks and mask")
    parser.add_argument("--config", help="YAML config file overriding configs/default.yaml")
    args = parser.parse_args(argv)
    command = ["--config", args.config] if args.config else []
    command += ["edit", "--out-dir", args.out_dir]
    if args.plot_landmarks:
        command.append("--plot-masks")
    cli.main(command, prog_name="enhance.py")


if __name__ == "__main__":
    main()
