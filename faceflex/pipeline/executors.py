"""Where the runner's jobs run: in this process, in a pool of local worker processes, or on Ray actors.

Every executor takes the batch's :class:`~faceflex.pipeline.runner.Task` list and yields one
:class:`~faceflex.pipeline.runner.Outcome` per task, **in task order**, by calling
:func:`~faceflex.pipeline.runner.execute` on it somewhere; so outputs and manifest are the same
whichever runs the batch. The job (its step with the models loaded) is pickled once per worker,
which therefore loads the models once. Workers split the machine's cores: each sets torch to
``cores // workers`` threads (at least 1).

- ``local``, 1 worker: in this process.
- ``local``, N workers: a ``spawn`` process pool (no fork of a process that already runs torch
  threads); at most ``2 N`` inputs are handed out ahead of the one the batch waits for, so memory
  stays flat over any number of inputs. A worker that dies (killed for memory, a crash) fails
  only the input it was working on (tried twice): the pool is started again for the rest. On Ctrl-C or SIGTERM
  the workers are stopped with SIGTERM, which each turns into an interrupt that removes the
  outputs of the input it was writing (no partial outputs).
- ``ray``: stateful Ray actors (one CPU each) in an ``ActorPool``; ``ray.init()`` joins the
  cluster ``RAY_ADDRESS`` names, or starts a local Ray. Workers read inputs and write outputs at
  the paths given, so on a cluster those must be on a file system every node sees.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from faceflex.choices import BACKENDS
from faceflex.pipeline.runner import Interrupted, Job, Outcome, Task, execute

_worker_job: Job | None = None  # the job of this worker process (set by _start_worker)
_worker_busy = False  # whether this worker process is running a task


def machine_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """torch threads for each of ``workers`` processes so that workers x threads <= cores (at least 1)."""
    return max(1, (cores or machine_cores()) // max(1, workers))


def resolve_workers(value: int | str, inputs: int) -> int:
    """``--workers``: a positive count, or ``auto`` (the machine's cores; 1 for a single input)."""
    if value == "auto":
        return 1 if inputs <= 1 else machine_cores()
    count = int(value)
    if count < 1:
        raise ValueError(f"workers must be a positive whole number or auto, not {value!r}")
    return count


class InProcess:
    """Runs each task here, one after another."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def map(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        return (execute(self.job, task) for task in tasks)


def _start_worker(job: Job, threads: int) -> None:
    """Initialiser of a pool process: keep the job and split the cores. Ctrl-C is the batch's to
    handle (it stops the workers with SIGTERM). SIGTERM interrupts a job while it runs (its outputs
    are then removed); at any other moment it is ignored, so a finished input's outcome always
    reaches the batch, which removes the files of the ones it does not record."""
    global _worker_job
    import torch

    torch.set_num_threads(threads)
    _worker_job = job

    def interrupt(signum, frame) -> None:
        if _worker_busy:
            raise Interrupted("SIGTERM", 128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, interrupt)
    _end_with_parent()


def _end_with_parent() -> None:
    """Linux: have the kernel kill this process when the batch's process dies (kill -9 included),
    so no worker outlives it."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _job_marked_busy(item, outputs) -> dict:
    global _worker_busy
    if _worker_job is None:
        raise RuntimeError("worker started without a job")
    _worker_busy = True
    try:
        return _worker_job(item, outputs)
    finally:
        _worker_busy = False


def _run_in_worker(task: Task) -> Outcome:
    return execute(_job_marked_busy, task)


class ProcessPool:
    """Runs the tasks in ``workers`` local processes (see the module docstring)."""

    def __init__(self, job: Job, workers: int) -> None:
        import multiprocessing

        self.job, self.workers = job, workers
        self.context = multiprocessing.get_context("spawn")
        self.threads = threads_per_worker(workers)
        self.pool = self._new_pool()
        self.pending: deque[tuple[Task, Future]] = deque()  # handed out, not yet taken by the batch

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self.context, initializer=_start_worker, initargs=(self.job, self.threads))

    def map(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        window = 2 * self.workers
        pending = self.pending
        queue = deque(tasks)
        retried: set[int] = set()
        while queue or pending:
            while queue and len(pending) < window:
                task = queue.popleft()
                pending.append((task, self.pool.submit(_run_in_worker, task)))
            task, future = pending[0]
            try:
                outcome = future.result()
            except BrokenProcessPool:
                # A worker died. Start a new pool and hand it every input not finished, this one
                # again once: an input that breaks a worker twice fails, alone.
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()
                if id(task) in retried:
                    pending.popleft()
                    outcome = Outcome(None, cause="the worker process running it stopped unexpectedly (out of memory?)")
                else:
                    retried.add(id(task))
                    for i, (waiting, result) in enumerate(pending):
                        if not result.done() or result.exception() is not None:
                            pending[i] = (waiting, self.pool.submit(_run_in_worker, waiting))
                    continue
            else:
                pending.popleft()
            yield outcome

    def close(self, interrupted: bool = False) -> None:
        """Wait for the workers to finish. ``interrupted``: first stop them (each removes the outputs
        of the input it was writing), then remove the outputs of inputs finished but not yet taken
        by the batch, so only inputs in the manifest have files."""
        if interrupted:
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGTERM)
        self.pool.shutdown(wait=True, cancel_futures=True)
        if interrupted:
            for _, future in self.pending:
                if future.done() and not future.cancelled() and future.exception() is None:
                    for entry in future.result().written:
                        Path(entry["path"]).unlink(missing_ok=True)
            self.pending.clear()


class _RayWorker:
    """A Ray actor holding the job (models loaded once)."""

    def __init__(self, job: Job, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.job = job

    def run(self, task: Task) -> Outcome:
        return execute(self.job, task)


class RayActors:
    """Runs the tasks on ``workers`` Ray actors (see the module docstring)."""

    def __init__(self, job: Job, workers: int) -> None:
        try:
            import ray
            from ray.util import ActorPool
        except ImportError:
            raise ImportError("--backend ray needs Ray: pip install 'faceflex[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), logging_level="ERROR", log_to_driver=False)
        cores = int(ray.cluster_resources().get("CPU", 1))
        worker = ray.remote(num_cpus=1)(_RayWorker)
        shared = ray.put(job)
        self.actors = [worker.remote(shared, 1) for _ in range(min(workers, max(1, cores)))]
        self.pool = ActorPool(self.actors)

    def map(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        return self.pool.map(lambda actor, task: actor.run.remote(task), list(tasks))

    def close(self, interrupted: bool = False) -> None:
        """Release the actors (an interrupted batch kills them mid-input)."""
        for actor in self.actors:
            self.ray.kill(actor)


@contextlib.contextmanager
def open_executor(job: Job, backend: str = "local", workers: int = 1) -> Iterator[InProcess | ProcessPool | RayActors]:
    """The executor for ``backend`` with ``workers`` workers; stopped on an interrupt, closed after."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "local" and workers <= 1:
        yield InProcess(job)
        return
    executor = RayActors(job, workers) if backend == "ray" else ProcessPool(job, workers)
    try:
        yield executor
    except BaseException:
        executor.close(interrupted=True)
        raise
    executor.close()
