"""The ``faceflex`` command line: a thin layer over the pipeline and the steps.

``app`` holds the group, the shared options and the batch entry point; ``photos`` the commands that
work on photos (detect, classify, edit); ``training`` and ``evaluating`` the model commands.
"""

from faceflex.cli import evaluating, photos, training  # noqa: F401  (register the commands)
from faceflex.cli.app import cli


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="faceflex")


__all__ = ["cli", "main"]
