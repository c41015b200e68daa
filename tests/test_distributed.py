"""Data-parallel training (torchrun's environment, simulated): two gloo processes on the CPU keep the
same weights, split each batch, and only rank 0 writes files."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from faceflex.train.classifier_trainer import TASKS, ClassifierSettings, ClassifierTrainer
from faceflex.train.face_sets import LabelledSet, seeded_split

SETTINGS = ClassifierSettings(epochs=2, batch_size=16, lr=3e-3, widths=(8, 16), stem=4)


def tiny_expression_set(n: int = 96) -> LabelledSet:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, n)
    images = rng.integers(0, 60, (n, 48, 48, 1)).astype(np.uint8)
    images[label == 1, :, :24] += 150
    return LabelledSet(images, {"expression": label * 3}, seeded_split(n, 0))


def train_one_rank(rank: int, world: int, port: int, folder: str) -> None:
    """What ``torchrun --nproc_per_node=2 faceflex train classifier`` runs in each process."""
    from faceflex.train import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    ranks, device = distributed.start(torch.device("cpu"))
    assert ranks.rank == rank and ranks.world == world
    trainer = ClassifierTrainer(TASKS["expression"], tiny_expression_set(), SETTINGS, os.path.join(folder, f"out{rank}"), device)
    seen: list[int] = []
    step_loss = trainer.step_loss
    trainer.step_loss = lambda rows, generator: (seen.extend(int(r) for r in rows), step_loss(rows, generator))[1]
    trainer.run()
    parameters = {name: p.detach() for name, p in trainer.model.named_parameters()}  # (BN statistics are rank 0's: DDP broadcasts them)
    torch.save({"state": parameters, "rows": seen}, os.path.join(folder, f"rank{rank}.pt"))
    torch.distributed.barrier()  # neither rank tears gloo down while the other still uses it (a SIGABRT under load)
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_train_the_same_weights_on_halves_of_each_batch(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(train_one_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    zero, one = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, value in zero["state"].items():
        assert torch.equal(value, one["state"][name]), name
    first_epoch = len(zero["rows"]) // SETTINGS.epochs
    assert not set(zero["rows"][:first_epoch]) & set(one["rows"][:first_epoch])  # disjoint halves within an epoch
    assert (tmp_path / "out0" / "expression.pt").is_file() and (tmp_path / "out0" / "checkpoint.pt").is_file()
    assert not (tmp_path / "out1").exists() or not any((tmp_path / "out1").iterdir())  # rank 1 writes nothing


def test_without_a_launcher_training_is_one_process():
    from faceflex.train import distributed

    if distributed.launched():
        pytest.skip("run under a launcher")
    ranks, device = distributed.start(torch.device("cpu"))
    assert not ranks.active and ranks.main and device.type == "cpu"
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, ranks, device) is model and distributed.mean_over_ranks({"a": 1.5}) == {"a": 1.5}
