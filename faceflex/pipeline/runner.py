"""The batch runner every command uses: inputs -> one job per input -> outputs and one manifest.

It owns everything that must behave the same in every command: the progress bar, one line per
bad input while the batch goes on, stable output names, atomic writes with the input's alpha and
the configured quality, no partial outputs (a failed input's files are removed), a lock on the
output folder, the manifest written as the batch goes (:mod:`faceflex.pipeline.manifest`),
``--skip-existing``, Ctrl-C/SIGTERM, and the exit code (0 all succeeded, 1 some inputs failed,
130/143 interrupted).

The jobs themselves run where the settings say (:mod:`faceflex.pipeline.executors`): in this
process, in a pool of local worker processes (``--workers``) or on Ray actors (``--backend ray``).
Each input's job runs whole in one place (:func:`execute`); this process keeps the output names,
the manifest, the messages and the counts, taking the outcomes in input order, so a batch writes
the same files and the same manifest whichever way it ran.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from faceflex.io.files import FolderLock, InputFiles, OutputError, describe_os_error, remove_stale_temps
from faceflex.io.inputs import InputError, InputItem
from faceflex.pipeline.manifest import Manifest
from faceflex.pipeline.outputs import OutputNames, Outputs


class Interrupted(BaseException):
    """The run was stopped by a signal (SIGTERM) or Ctrl-C."""

    def __init__(self, name: str, exit_code: int) -> None:
        super().__init__(name)
        self.name, self.exit_code = name, exit_code

    def __reduce__(self):  # picklable, so that a worker process can report it
        return (Interrupted, (self.name, self.exit_code))


@dataclass(frozen=True)
class RunSettings:
    """How a batch writes: where, in which manifest format, and how it reports."""

    out_dir: Path
    manifest: str  # a file path, or "-" for stdout
    manifest_format: str = "json"
    skip_existing: bool = False
    jpeg_quality: int = 95
    quiet: bool = False
    verbose: bool = False
    workers: int = 1  # processes running jobs at once (1: in this process)
    backend: str = "local"  # local | ray (faceflex.pipeline.executors)


@dataclass
class RunResult:
    """What a batch did."""

    succeeded: int = 0
    skipped: int = 0
    faces: int = 0
    outputs: int = 0
    failures: list[InputError] = field(default_factory=list)
    interrupted: Interrupted | None = None
    manifest_error: OutputError | None = None  # the manifest could not be written (disk full, ...)
    manifest_path: Path | None = None

    @property
    def exit_code(self) -> int:
        """0 when every input succeeded, 1 when any failed or the manifest failed, 130/143 when interrupted."""
        if self.interrupted is not None:
            return self.interrupted.exit_code
        return 1 if self.failures or self.manifest_error else 0

    def summary(self) -> dict:
        total = self.succeeded + self.skipped + len(self.failures)
        return {
            "inputs": total,
            "succeeded": self.succeeded,
            "failed": len(self.failures),
            "skipped": self.skipped,
            "faces": self.faces,
            "outputs": self.outputs,
        }


Job = Callable[[InputItem, Outputs], dict]


@dataclass(frozen=True)
class Task:
    """One input for a job, with everything needed to write its outputs anywhere (picklable)."""

    item: InputItem
    stem: Path  # the output stem the batch fixed for it (:class:`OutputNames`)
    jpeg_quality: int
    verbose: bool = False


@dataclass(frozen=True)
class Outcome:
    """What running a job on one input gave (picklable: it may come back from another process)."""

    record: dict | None  # the job's record; None when it failed
    written: list[dict] = field(default_factory=list)  # the files written ({"path", "product", ...})
    cause: str | None = None  # why it failed, in one line
    trace: str | None = None  # the traceback of an unexpected error (printed with --verbose)


def execute(job: Job, task: Task, inputs: InputFiles) -> Outcome:
    """Run ``job`` on one input and close its outputs (none may replace one of the batch's
    ``inputs``); on failure remove every file it wrote and return the cause (interrupts propagate)."""
    names = OutputNames(task.stem.parent)
    names.fix(task.item, task.stem)
    outputs = Outputs(task.item, names, task.jpeg_quality, inputs)
    try:
        record = job(task.item, outputs)
        outputs.finish()
    except BaseException as error:
        outputs.discard()
        if isinstance(error, (KeyboardInterrupt, Interrupted, SystemExit)):
            raise
        trace = traceback.format_exc() if task.verbose and not isinstance(error, (InputError, OutputError)) else None
        return Outcome(None, cause=_as_input_error(task.item, error).cause, trace=trace)
    return Outcome(record, outputs.written)


class Reporter(Protocol):
    """Where a run's messages go: progress lines (silenced by --quiet), error lines, a progress bar."""

    def say(self, message: str) -> None: ...

    def error(self, message: str) -> None: ...

    def progress(self, items: list[InputItem], label: str) -> contextlib.AbstractContextManager[Iterable[InputItem]]: ...


class StderrReporter:
    """Plain lines on stderr and no progress bar (the CLI passes one with a bar)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)

    def error(self, message: str) -> None:
        print(message, file=sys.stderr)

    @contextlib.contextmanager
    def progress(self, items: list[InputItem], label: str) -> Iterator[Iterable[InputItem]]:
        yield items


class Runner:
    """Runs a job over a batch of inputs with one manifest (see the module docstring)."""

    def __init__(
        self,
        header: dict,
        settings: RunSettings,
        writes_files: bool,
        reporter: Reporter | None = None,
        on_record: Callable[[dict], None] | None = None,
    ) -> None:
        """``on_record`` is called with each succeeded input's manifest record, in input order."""
        self.header, self.settings, self.writes_files = header, settings, writes_files
        self.reporter = reporter or StderrReporter(settings.quiet)
        self.on_record = on_record

    def say(self, message: str) -> None:
        self.reporter.say(message)

    def run(self, items: list[InputItem], missing: Iterable[InputError], job: Job) -> RunResult:
        """Run ``job`` on every input; raises :class:`OutputError` before any work when the outputs
        cannot be written (a usage problem)."""
        settings = self.settings
        result = RunResult(failures=list(missing))
        protected = InputFiles(item.path for item in items)
        manifest = Manifest(settings.manifest, settings.manifest_format, dict(self.header), protected)
        folders = {settings.out_dir} if self.writes_files else set()
        if manifest.path is not None:
            folders.add(manifest.path.parent)
        locks = [FolderLock(folder) for folder in sorted(folders)]
        acquired: list[FolderLock] = []
        try:
            for lock in locks:
                acquired.append(lock.acquire())
                if remove_stale_temps(lock.folder):
                    self.say(f"removed temporary files left in {lock.folder} by an interrupted run")
            previous = manifest.previous_records() if settings.skip_existing else {}
            if manifest.journal_path is not None and manifest.journal_path.is_file() and not settings.skip_existing:
                self.say(f"note: {manifest.journal_path} is left from an interrupted run; starting over (--skip-existing resumes it)")
            manifest.open()
            with _signals_as_interrupts():
                self._loop(items, job, manifest, previous, result, protected)
        finally:
            for lock in acquired:
                lock.release()
        return result

    def _loop(self, items, job: Job, manifest: Manifest, previous: dict, result: RunResult, protected: InputFiles) -> None:
        from faceflex.pipeline.executors import open_executor

        settings = self.settings
        names = OutputNames(settings.out_dir)
        for item in items:  # names are fixed in input order, so a resumed run names files as the first did
            names.stem(item)
        for failure in result.failures:
            self._report(failure)
            manifest.add({"file": failure.path, "status": "failed", "error": failure.cause})
        done_before = {}
        for item in items:
            done = previous.get(str(item.path))
            if done and done.get("status") == "ok" and all(Path(o["path"]).is_file() for o in done.get("outputs", [])):
                done_before[item.path] = done
        tasks = [Task(item, names.stem(item), settings.jpeg_quality, settings.verbose) for item in items if item.path not in done_before]
        try:
            with (
                open_executor(job, protected, settings.backend, min(settings.workers, max(1, len(tasks)))) as executor,
                self.reporter.progress(items, str(self.header.get("command", ""))) as bar,
            ):
                outcomes = executor.map(tasks)
                for item in bar:
                    done = done_before.get(item.path)
                    if done is not None:
                        result.skipped += 1
                        result.faces += int(done.get("face_count", 0))
                        result.outputs += len(done.get("outputs", []))
                        manifest.add({**done, "skipped": True})
                        continue
                    manifest.add(self._account(item, next(outcomes), result))
        except Interrupted as stop:
            result.interrupted = stop
        except KeyboardInterrupt:
            result.interrupted = Interrupted("SIGINT", 130)
        except OutputError as error:  # the journal itself cannot be written: stop, say why
            result.manifest_error = error
            self.reporter.error(f"error: {error}; stopping the batch")
            return
        if result.interrupted is not None:
            self.say(f"interrupted ({result.interrupted.name}): the manifest lists the {result.succeeded + result.skipped} inputs finished")
        try:
            result.manifest_path = manifest.finish(
                result.summary(), complete=result.interrupted is None, interrupted=result.interrupted.name if result.interrupted else None
            )
        except OutputError as error:
            result.manifest_error = error
            self.reporter.error(f"error: {error}")

    def _account(self, item: InputItem, outcome: Outcome, result: RunResult) -> dict:
        """Count an input's outcome, say what needs saying, and return its manifest record."""
        if outcome.record is None:
            failure = InputError(item.path, outcome.cause or "failed")
            if outcome.trace:
                print(outcome.trace, file=sys.stderr, end="")
            result.failures.append(failure)
            self._report(failure)
            return {"file": str(item.path), "status": "failed", "error": failure.cause}
        record = {"file": str(item.path), "status": "ok", **outcome.record, "outputs": outcome.written}
        result.succeeded += 1
        result.faces += int(record.get("face_count", 0))
        result.outputs += len(outcome.written)
        if record.get("note"):
            self.say(f"{item.path}: note: {record['note']}")
        for warning in record.get("warnings", []):
            self.reporter.error(f"{item.path}: warning: {warning}")
        if record.get("face_count", 1) == 0:
            self.say(f"{item.path}: no face found" + ("; nothing written" if self.writes_files and not outcome.written else ""))
        elif self.settings.verbose:
            self.say(f"{item.path}: {record.get('face_count')} face(s), {len(outcome.written)} file(s) written")
        if self.on_record is not None:
            self.on_record(record)
        return record

    def _report(self, error: InputError) -> None:
        self.reporter.error(f"error: {error}")

    def report_summary(self, result: RunResult, noun: str = "inputs") -> None:
        """Closing lines: counts, the manifest's path, and every failed input listed again."""
        total = result.succeeded + result.skipped + len(result.failures)
        skipped = f" ({result.skipped} done before, skipped)" if result.skipped else ""
        faces, files = f"face{'s' * (result.faces != 1)}", f"file{'s' * (result.outputs != 1)}"
        self.say(f"{result.faces} {faces} in {total} {noun}{skipped}; {result.outputs} {files} written")
        if result.manifest_path is not None:
            self.say(f"manifest: {result.manifest_path}")
        if result.failures:
            self.reporter.error(f"{len(result.failures)} of {total} {noun} failed:")
            for failure in result.failures:
                self.reporter.error(f"  {failure.path}: {failure.cause}")


def _as_input_error(item: InputItem, error: BaseException) -> InputError:
    if isinstance(error, InputError):
        return error
    if isinstance(error, OutputError):
        return InputError(item.path, f"cannot write an output: {error}")
    if isinstance(error, OSError) and error.filename is not None:
        return InputError(item.path, f"cannot write {error.filename}: {describe_os_error(error)}")
    if isinstance(error, MemoryError):
        return InputError(item.path, "out of memory")
    return InputError(item.path, f"unexpected error: {type(error).__name__}: {error}")


class _signals_as_interrupts:
    """Within the block, SIGTERM raises :class:`Interrupted` (so outputs in progress are removed and
    the manifest is finished); the previous handler is restored after. Main thread only."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame) -> None:
        raise Interrupted("SIGTERM", 128 + signum)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
