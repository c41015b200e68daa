"""Where the runner's jobs run: in this process, in a pool of local worker processes, or on Ray actors.

Every executor takes the batch's :class:`~faceflex.pipeline.runner.Task` list and yields one
:class:`~faceflex.pipeline.runner.Outcome` per task, **in task order**, by calling
:func:`~faceflex.pipeline.runner.execute` on it somewhere; so outputs and manifest are the same
whichever runs the batch. The job (its step with the models loaded) and the batch's
:class:`~faceflex.io.files.InputFiles` are pickled once per worker, which therefore loads the
models once. Workers split the machine's cores: each runs torch and the BLAS libraries on
``cores // workers`` threads (at least 1).

- ``local``, 1 worker: in this process, numpy's BLAS on one thread for the batch (:func:`one_blas_thread`).
- ``local``, N workers: a ``spawn`` process pool (no fork of a process that already runs torch
  threads). ``2 N`` inputs are in the workers' hands at a time, and a worker that finishes takes
  the next input even while an earlier, slower one (a group photo) still runs: up to ``AHEAD``
  finished inputs wait for their turn in the manifest (only their outcomes are kept: their files
  are written), so memory stays flat over any number of inputs. A worker that dies (killed for
  memory, a crash) fails only the input it was working on (tried twice): the pool is started
  again for the rest. On Ctrl-C or SIGTERM the workers are stopped with SIGTERM, which each turns
  into an interrupt that removes the outputs of the input it was writing (no partial outputs).
- ``ray``: stateful Ray actors (one CPU each), each running one input at a time and taking the
  next as soon as it is done (outcomes put back in order as above); an actor that dies is
  replaced and its input tried once more. ``ray.init()`` joins the cluster ``RAY_ADDRESS`` names,
  or starts a local Ray. Workers read inputs and write outputs at the paths given, so on a
  cluster those must be on a file system every node sees.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from faceflex.choices import BACKENDS
from faceflex.io.files import InputFiles
from faceflex.pipeline.runner import Interrupted, Job, Outcome, Task, execute

AHEAD = 64  # finished inputs that may wait for an earlier one before no new input is handed out

_worker_job: Job | None = None  # the job of this worker process (set by _start_worker)
_worker_inputs = InputFiles()  # the batch's inputs (set by _start_worker)
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
    """Runs each task here, one after another, with numpy's BLAS on one thread (:func:`one_blas_thread`)."""

    def __init__(self, job: Job, inputs: InputFiles) -> None:
        self.job, self.inputs = job, inputs

    def map(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        with one_blas_thread():
            for task in tasks:
                yield execute(self.job, task, self.inputs)


def one_blas_thread() -> contextlib.AbstractContextManager:
    """numpy's BLAS (OpenBLAS) on one thread until the context ends; torch keeps its threads.
    The flow's matrices are small (landmarks, spline systems), and OpenBLAS's other threads, woken
    by a product or a solve, then spin beside torch's and the main thread's work: on this 2-core
    CPU a 1024-px prototype edit took 20 % longer with them (``benchmarks/bench_edit.py``).
    Switching per call does not help (each switch back wakes the threads), so a whole batch runs
    under one limit."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` threads in this process: torch's, and those of the BLAS/OpenMP
    libraries numpy and others load (OpenBLAS threads spinning beside another worker's made
    numpy's least squares 25 times slower), including libraries loaded later."""
    import torch
    from threadpoolctl import threadpool_limits

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def _start_worker(job: Job, inputs: InputFiles, threads: int) -> None:
    """Initialiser of a pool process: keep the job and split the cores. Ctrl-C is the batch's to
    handle (it stops the workers with SIGTERM). SIGTERM interrupts a job while it runs (its outputs
    are then removed); at any other moment it is ignored, so a finished input's outcome always
    reaches the batch, which removes the files of the ones it does not record."""
    global _worker_job, _worker_inputs
    limit_threads(threads)
    _worker_job, _worker_inputs = job, inputs

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
    return execute(_job_marked_busy, task, _worker_inputs)


class ProcessPool:
    """Runs the tasks in ``workers`` local processes (see the module docstring)."""

    def __init__(self, job: Job, inputs: InputFiles, workers: int) -> None:
        import multiprocessing

        self.job, self.inputs, self.workers = job, inputs, workers
        self.context = multiprocessing.get_context("spawn")
        self.threads = threads_per_worker(workers)
        self.pool = self._new_pool()
        self.pending: deque[tuple[Task, Future]] = deque()  # handed out, not yet taken by the batch

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers, mp_context=self.context, initializer=_start_worker, initargs=(self.job, self.inputs, self.threads)
        )

    def map(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        in_hand = 2 * self.workers
        pending = self.pending
        queue = deque(tasks)
        retried: set[int] = set()
        while queue or pending:
            running = [result for _, result in pending if not result.done()]
            while queue and len(pending) < AHEAD + in_hand and len(running) < in_hand:
                task = queue.popleft()
                pending.append((task, self.pool.submit(_run_in_worker, task)))
                running.append(pending[-1][1])
            task, future = pending[0]
            if not future.done():
                wait(running, return_when=FIRST_COMPLETED)
                continue
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

    def __init__(self, job: Job, inputs: InputFiles, threads: int) -> None:
        limit_threads(threads)
        self.job, self.inputs = job, inputs

    def run(self, task: Task) -> Outcome:
        return execute(self.job, task, self.inputs)


class RayActors:
    """Runs the tasks on ``workers`` Ray actors (see the module docstring)."""

    def __init__(self, job: Job, inputs: InputFiles, workers: int) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("--backend ray needs Ray: pip install 'faceflex[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), logging_level="ERROR", log_to_driver=False)
        cores = int(ray.cluster_resources().get("CPU", 1))
        self.worker = ray.remote(num_cpus=1)(_RayWorker)
        self.refs = (ray.put(job), ray.put(inputs))
        self.actors = [self.worker.remote(*self.refs, 1) for _ in range(min(workers, max(1, cores)))]
        self.running: dict = {}  # object ref -> (task index, task, actor)
        self.finished: dict[int, Outcome] = {}  # outcomes waiting for an earlier input

    def map(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        """Each actor runs one input at a time and takes the next as soon as it is done; outcomes
        come back in task order (at most ``AHEAD`` wait for an earlier input)."""
        ray, running, finished = self.ray, self.running, self.finished
        queue = deque(enumerate(tasks))
        idle = list(self.actors)
        retried: set[int] = set()
        head = 0
        while queue or running or finished:
            while queue and idle and len(running) + len(finished) < AHEAD + len(self.actors):
                index, task = queue.popleft()
                actor = idle.pop()
                running[actor.run.remote(task)] = (index, task, actor)
            if head in finished:
                yield finished.pop(head)
                head += 1
                continue
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                index, task, actor = running.pop(ref)
                try:
                    finished[index] = ray.get(ref)
                    idle.append(actor)
                except ray.exceptions.RayActorError as error:  # the actor died: a new one; this input again, once
                    if getattr(error, "actor_init_failed", False):
                        raise RuntimeError(f"a Ray worker could not start: {error}") from error
                    replacement = self.worker.remote(*self.refs, 1)
                    self.actors[self.actors.index(actor)] = replacement
                    idle.append(replacement)
                    if index in retried:
                        finished[index] = Outcome(None, cause="the Ray worker running it stopped unexpectedly (out of memory?)")
                    else:
                        retried.add(index)
                        queue.appendleft((index, task))

    def close(self, interrupted: bool = False) -> None:
        """Release the actors. ``interrupted``: let the inputs running finish (Ray cannot interrupt
        an actor's method), then remove their files and those of inputs finished but not yet taken
        by the batch, so only inputs in the manifest have files."""
        if interrupted:
            done, _ = self.ray.wait(list(self.running), num_returns=len(self.running), timeout=120) if self.running else ([], [])
            outcomes = list(self.finished.values())
            for ref in done:
                with contextlib.suppress(Exception):
                    outcomes.append(self.ray.get(ref))
            for outcome in outcomes:
                for entry in outcome.written:
                    Path(entry["path"]).unlink(missing_ok=True)
            self.running.clear()
            self.finished.clear()
        for actor in self.actors:
            self.ray.kill(actor)


@contextlib.contextmanager
def open_executor(job: Job, inputs: InputFiles, backend: str = "local", workers: int = 1) -> Iterator[InProcess | ProcessPool | RayActors]:
    """The executor for ``backend`` with ``workers`` workers running ``job`` (outputs never replace
    one of ``inputs``); stopped on an interrupt, closed after."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "local" and workers <= 1:
        yield InProcess(job, inputs)
        return
    executor = RayActors(job, inputs, workers) if backend == "ray" else ProcessPool(job, inputs, workers)
    try:
        yield executor
    except BaseException:
        executor.close(interrupted=True)
        raise
    executor.close()
