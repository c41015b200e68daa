"""Training throughput with 1 process and with 2 DistributedDataParallel processes (gloo, CPU).

    python benchmarks/bench_ddp.py [--steps 30] [--task expression]

Trains the task's network as configured in configs/train_classifier.yaml (same batch size, the
global batch split across the processes) on random images of the task's input size (throughput
does not depend on the pixels), and prints images per second after 3 warm-up steps: one process
with all cores as threads, then two processes with half the cores each, as
``torchrun --nproc_per_node=2 $(which faceflex) train classifier --task TASK`` runs them.
Record in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

import numpy as np
import torch

from faceflex.config import load_config
from faceflex.pipeline.executors import machine_cores, threads_per_worker
from faceflex.train.classifier_trainer import TASKS, ClassifierSettings, ClassifierTrainer
from faceflex.train.face_sets import LabelledSet

WARMUP = 3


def random_set(task: str, rows: int) -> LabelledSet:
    spec = TASKS[task]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (rows, spec.image_size, spec.image_size, spec.in_channels), dtype=np.uint8)
    if task == "expression":
        targets = {"expression": rng.integers(0, 7, rows)}
    else:
        targets = {
            "attributes": rng.integers(0, 2, (rows, 10)).astype(np.float32),
            "age": rng.uniform(1, 90, rows).astype(np.float32),
            "race": rng.integers(0, 5, rows),
            "source": rng.integers(0, 2, rows),
        }
    return LabelledSet(images, targets, np.zeros(rows, np.int8))


def measure(rank: int, world: int, port: int, task: str, steps: int, result_file: str) -> None:
    from faceflex.train import distributed

    torch.set_num_threads(threads_per_worker(world))
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    distributed.start(torch.device("cpu"))
    section = dict(load_config(None)["train_classifier"][task])
    section.pop("descriptor_weight", None)  # a training-only target the random set does not have
    settings = ClassifierSettings(**{**section, "epochs": 1})
    data = random_set(task, settings.batch_size * (steps + WARMUP))
    with tempfile.TemporaryDirectory() as out:
        trainer = ClassifierTrainer(TASKS[task], data, settings, out, torch.device("cpu"))
        generator = torch.Generator().manual_seed(0)
        autocast = torch.bfloat16
        for step in range(steps + WARMUP):
            if step == WARMUP:
                distributed.barrier()
                start = time.perf_counter()
            rows = np.arange(step * settings.batch_size, (step + 1) * settings.batch_size)[rank::world]
            with torch.autocast("cpu", dtype=autocast):
                loss, _ = trainer.step_loss(rows, generator)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()
        distributed.barrier()
        seconds = time.perf_counter() - start
    if rank == 0:
        with open(result_file, "w") as handle:
            handle.write(f"{steps * settings.batch_size / seconds:.1f}")
    if world > 1:
        torch.distributed.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--task", default="expression", choices=sorted(TASKS))
    args = parser.parse_args()
    print(f"{machine_cores()} cores; task {args.task}")
    with tempfile.TemporaryDirectory() as temp:
        result = os.path.join(temp, "rate")
        measure(0, 1, 0, args.task, args.steps, result)
        one = float(open(result).read())
        print(f"1 process x {threads_per_worker(1)} threads: {one:.1f} images/s")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        torch.multiprocessing.spawn(measure, args=(2, port, args.task, args.steps, result), nprocs=2, join=True)
        two = float(open(result).read())
        print(f"2 DDP processes x {threads_per_worker(2)} threads: {two:.1f} images/s ({two / one:.2f}x)")


if __name__ == "__main__":
    main()
