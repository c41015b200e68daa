"""Run one job over many inputs: progress, per-file error reports, output names, a summary.

Every command uses this loop, so every command treats bad files the same way: one line naming
the file and the cause, and the batch goes on.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import click

from faceflex.io import IMAGE_EXTENSIONS, InputError, InputItem, iter_inputs


@dataclass
class BatchResult:
    """What a batch did: how many inputs succeeded, and each failure."""

    succeeded: int = 0
    failures: list[InputError] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every input succeeded, 1 when any failed."""
        return 1 if self.failures else 0


class OutputNames:
    """Stable output paths: ``<out_dir>/<relative parent>/<stem>.<tag>.<ext>``.

    ``relative`` is the input's path inside a folder input (its name for a file input). When two
    inputs would get the same name, the later one (in input order) gets ``-2``, ``-3``, ... added
    to its stem.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self._stems: dict[Path, Path] = {}
        self._taken: set[Path] = set()

    def stem(self, item: InputItem) -> Path:
        """The output stem of an input, without tag or extension (fixed on first use)."""
        if item.path not in self._stems:
            base = self.out_dir / item.relative.parent / item.relative.stem
            stem, n = base, 1
            while stem in self._taken:
                n += 1
                stem = base.with_name(f"{base.name}-{n}")
            self._taken.add(stem)
            self._stems[item.path] = stem
        return self._stems[item.path]

    def path(self, item: InputItem, tag: str, ext: str) -> Path:
        """Output path for one product (``tag``) of an input."""
        stem = self.stem(item)
        return stem.with_name(f"{stem.name}.{tag}.{ext.lstrip('.')}")


def collect_inputs(
    specs: Iterable[str], recursive: bool, extensions: frozenset[str] = IMAGE_EXTENSIONS
) -> tuple[list[InputItem], list[InputError]]:
    """All inputs named by ``specs`` (folders: files with ``extensions``), and the specs that named nothing."""
    items: list[InputItem] = []
    missing: list[InputError] = []
    for entry in iter_inputs(specs, recursive=recursive, extensions=extensions):
        (missing if isinstance(entry, InputError) else items).append(entry)
    return items, missing


def run_batch(
    items: list[InputItem],
    process: Callable[[InputItem], None],
    *,
    label: str,
    quiet: bool = False,
    verbose: bool = False,
    result: BatchResult | None = None,
) -> BatchResult:
    """Call ``process`` on each input; report failures on stderr and keep going.

    ``process`` raises :class:`InputError` for a bad input; any other exception is reported as
    an unexpected error for that file (with a traceback under ``verbose``) and the batch goes on.
    A progress bar is drawn on stderr when both stdout and stderr are terminals and not ``quiet``.
    """
    result = result or BatchResult()
    for failure in result.failures:
        report_failure(failure)
    show_bar = not quiet and len(items) > 1 and sys.stdout.isatty() and sys.stderr.isatty()
    with click.progressbar(items, label=label, file=sys.stderr, hidden=not show_bar, show_pos=True) as bar:
        for item in bar:
            try:
                process(item)
            except InputError as error:
                result.failures.append(error)
                report_failure(error)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # one bad file must not end the batch
                failure = InputError(item.path, f"unexpected error: {type(error).__name__}: {error}")
                result.failures.append(failure)
                report_failure(failure)
                if verbose:
                    traceback.print_exc()
            else:
                result.succeeded += 1
    return result


def report_failure(error: InputError) -> None:
    """One line on stderr naming the file and the cause."""
    click.echo(f"error: {error}", err=True)


def report_summary(result: BatchResult, noun: str) -> None:
    """The closing lines when anything failed: the count, and every failed input listed again."""
    if result.failures:
        click.echo(f"{len(result.failures)} of {result.succeeded + len(result.failures)} {noun} failed:", err=True)
        for failure in result.failures:
            click.echo(f"  {failure.path}: {failure.cause}", err=True)
