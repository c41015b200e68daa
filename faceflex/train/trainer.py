"""The trainer every faceflex model shares: seeded epochs, bf16/fp16 autocast, a cosine schedule,
checkpoints every epoch (and every ``checkpoint_seconds`` within one) with exact resume, fp16 weight export and a per-epoch history.

A subclass supplies the model, the training rows, one step's loss (:meth:`Trainer.step_loss`),
the per-epoch evaluation (:meth:`Trainer.evaluate`) and what goes into the exported weights'
metadata. CPU: channels_last + bf16 autocast where the CPU has native bfloat16, else fp32; CUDA: fp16
autocast with a gradient scaler.
Under ``torchrun`` the model trains in ``DistributedDataParallel`` (:mod:`faceflex.train.distributed`):
each process takes its share of every batch; rank 0 alone evaluates and writes files. Subclasses
run training forward passes through :attr:`Trainer.net` (the wrapped model) and everything else
through :attr:`Trainer.model`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from faceflex.device import cpu_has_bf16
from faceflex.io.files import write_atomic
from faceflex.models.weights import save_weights
from faceflex.train import distributed


def mixed_precision(device: torch.device) -> bool:
    """Whether training on ``device`` runs under autocast: always on CUDA (fp16), on a CPU only where
    it computes bfloat16 natively (:func:`~faceflex.device.cpu_has_bf16`); elsewhere bf16 is emulated
    and a step takes about 15 times as long as in fp32 (the anonymizer on a 2-core AMD EPYC without
    AVX512-BF16: 60 s against 4 s)."""
    return device.type != "cpu" or cpu_has_bf16()


class Trainer:
    """Owns model, optimiser, schedule and history; ``run`` trains epoch by epoch from ``self.epoch``.

    Subclasses call :meth:`setup` from their ``__init__`` once the model and rows exist.
    """

    name = "model"  # the exported weights are <out>/<name>.pt
    checkpoint_seconds = 600.0  # a checkpoint within an epoch this often (one process): a stopped run loses at most this much

    def setup(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        train_rows: np.ndarray,
        settings,
        out: Path,
        device: torch.device,
        warmup_steps: int = 0,
    ) -> None:
        self.model, self.optimizer, self.train_rows = model, optimizer, train_rows
        self.settings, self.out, self.device = settings, Path(out), device
        self.ranks = distributed.current()
        self.net = distributed.wrap(model, self.ranks, device)  # training forward passes go through this
        self.steps_per_epoch = max(1, len(train_rows) // settings.batch_size)
        total = max(1, self.steps_per_epoch * settings.epochs)

        def schedule(step: int) -> float:  # linear warm-up, then cosine from 1 to 0.01
            warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
            return warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        self.epoch = 0
        self.history: list[dict] = []
        self.adversarial = None  # a generating trainer's AdversarialTerm (its critic is checkpointed too)
        self.within_epoch: dict | None = None  # where a checkpoint taken within an epoch left it (train_epoch goes on from there)

    # -- what a subclass provides ------------------------------------------------------------
    def step_loss(self, rows: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one batch of training rows (under autocast), and the values to log."""
        raise NotImplementedError

    def evaluate(self) -> dict:
        """Held-out figures recorded after each epoch."""
        return {}

    def architecture(self) -> dict:
        """The model's config as a plain dict (stored in checkpoints and weights)."""
        return self.model.config.to_dict()

    def export_meta(self) -> dict:
        return {}

    def shipped_model(self) -> torch.nn.Module:
        """The network the exported weights hold (by default the trained model itself)."""
        return self.model

    def after_epoch(self) -> None:
        """Extra per-epoch files (e.g. a grid of reconstructions)."""

    def frozen_modules(self) -> list[torch.nn.Module]:
        """Parts of the model kept in eval mode while training (their batch statistics frozen; their
        parameters should not require gradients)."""
        return []

    # -- checkpoints -------------------------------------------------------------------------
    def settings_record(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.settings).items()}

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "settings": self.settings_record(),
            "config": self.architecture(),
            **(self.adversarial.state() if self.adversarial else {}),
            **self.checkpoint_extra(),
        }

    def checkpoint_extra(self) -> dict:
        """What else a subclass keeps in its checkpoints (plain values; :meth:`restore_extra` reads it back)."""
        return {}

    def restore_extra(self, state: dict) -> None:
        """Restore what :meth:`checkpoint_extra` kept (absent from checkpoints written before it was)."""

    def save_checkpoint(self, within_epoch: dict | None = None) -> Path:
        """Everything :meth:`load_checkpoint` restores, in ``<out>/checkpoint.pt`` (atomically);
        ``within_epoch`` (the next step, the data generator's state, the sums logged so far): a
        checkpoint taken part of the way through epoch ``self.epoch``."""
        state = self.state() if within_epoch is None else {**self.state(), "within_epoch": within_epoch}
        return write_atomic(self.out / "checkpoint.pt", lambda handle: torch.save(state, handle))

    def load_checkpoint(self, path: Path) -> dict:
        """Restore everything saved each epoch; returns the checkpoint's settings."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        saved = type(self.model.config).from_dict(state["config"]).to_dict()  # fields added since: their defaults
        if saved != self.architecture():
            raise ValueError(f"{path}: checkpoint architecture {state['config']} differs from the config's")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.within_epoch = state.get("within_epoch")
        self.restore_extra(state)
        if self.adversarial:
            self.adversarial.load_state(state)
        return dict(state["settings"])

    def export(self, path: Path | None = None) -> Path:
        """The shippable fp16 weights with their architecture and training record."""
        meta = {"epochs": self.epoch, "history": self.history, "settings": self.settings_record(), **self.export_meta()}
        model = self.shipped_model()
        return save_weights(path or self.out / f"{self.name}.pt", model, model.config.to_dict(), meta)

    # -- training ----------------------------------------------------------------------------
    def seconds_before_resume(self) -> float:
        """Seconds the epoch under way had run when its within-epoch checkpoint was taken (0 at an epoch's start)."""
        return float(self.within_epoch.get("seconds", 0.0)) if self.within_epoch is not None else 0.0

    def train_epoch(self, progress: Callable[[int, dict], None] | None = None) -> dict:
        """One epoch; data order, augmentation and noise depend only on (seed, epoch) [and the rank:
        under torchrun each process takes every world-th row of each batch and draws its own
        augmentation]. A run of one process checkpoints every :attr:`checkpoint_seconds` within the
        epoch too, and an epoch resumed from such a checkpoint goes on from its step as if never
        stopped. Returns mean logged values (over all processes)."""
        s = self.settings
        generator = torch.Generator().manual_seed(s.seed * 100_003 + self.epoch)
        order = self.train_rows[torch.randperm(len(self.train_rows), generator=generator).numpy()]
        if self.ranks.rank:
            generator.manual_seed(s.seed * 100_003 + self.epoch + 1_000_003 * self.ranks.rank)
        first, totals, began = 0, {}, time.perf_counter()
        if self.within_epoch is not None:  # resumed from a checkpoint taken within this epoch
            first, totals = int(self.within_epoch["step"]), dict(self.within_epoch["totals"])
            generator.set_state(self.within_epoch["generator"])
            began -= self.seconds_before_resume()
            self.within_epoch = None
            if progress:
                progress(first, {})
        saved = time.perf_counter()
        self.model.train()
        for module in self.frozen_modules():
            module.eval()
        autocast_dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        mixed = mixed_precision(self.device)
        for i in range(first, self.steps_per_epoch):
            rows = order[i * s.batch_size : (i + 1) * s.batch_size][self.ranks.rank :: self.ranks.world]
            with torch.autocast(self.device.type, dtype=autocast_dtype, enabled=mixed):
                loss, logged = self.step_loss(rows, generator)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            values = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in logged.items()}}
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value
            if progress:
                progress(1, values)
            if self.ranks.world == 1 and i + 1 < self.steps_per_epoch and time.perf_counter() - saved >= self.checkpoint_seconds:
                elapsed = time.perf_counter() - began
                self.save_checkpoint({"step": i + 1, "generator": generator.get_state(), "totals": totals, "seconds": elapsed})
                saved = time.perf_counter()
        self.epoch += 1
        return distributed.mean_over_ranks({key: value / self.steps_per_epoch for key, value in totals.items()})

    def run(
        self, on_epoch: Callable[[dict], None] | None = None, progress_factory=None, max_hours: float = 0.0, stop_after: int | None = None
    ) -> None:
        """Train until ``epochs`` (or past ``max_hours``, or ``stop_after`` epochs in this call),
        checkpointing, exporting and recording after each epoch; with nothing left to train, export."""
        start = time.perf_counter()
        last = self.settings.epochs if stop_after is None else min(self.settings.epochs, self.epoch + stop_after)
        if self.epoch >= last and self.ranks.main:  # a finished run, resumed: its weights exported again (as today's export makes them)
            self.export()
        while self.epoch < last:
            epoch_start = time.perf_counter() - self.seconds_before_resume()  # an epoch's seconds count its run before a resume
            with progress_factory(self.epoch, self.steps_per_epoch) if progress_factory else contextlib.nullcontext() as bar:
                means = self.train_epoch(bar)
            if self.ranks.main:
                self.save_checkpoint()  # the epoch is kept before its evaluation runs (which may fail)
            record = {
                "epoch": self.epoch,
                **{k: round(v, 4) for k, v in means.items()},
                **(self.evaluate() if self.ranks.main else {}),
                "seconds": round(time.perf_counter() - epoch_start, 1),
            }
            self.history.append(record)
            if self.ranks.main:
                self.after_epoch()
                self.save_checkpoint()
                self.export()
                write_atomic(self.out / "history.json", lambda h: h.write(json.dumps(self.history, indent=1).encode()))
                if on_epoch:
                    on_epoch(record)
            distributed.barrier()
            hours = (time.perf_counter() - start) / 3600
            if distributed.agree(bool(max_hours) and hours * (1 + 1 / max(1, len(self.history))) > max_hours):
                break
