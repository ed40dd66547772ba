"""The LR range test (Smith): a short training run whose learning rate grows exponentially per step.

It runs on Lightning's own Trainer, on training batches only (no validation, no sanity check), stops
at the first non-finite loss or once the loss exceeds ``divergence_factor`` times the best loss seen,
and leaves the model's weights exactly as it found them.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from tft_hpo.config import LRFinderSection, TrainerSection
from tft_hpo.data import Loader
from tft_hpo.finite import NonFiniteLoss, replaced_non_finite


@dataclass(frozen=True)
class RangeTestResult:
    """The recorded curve: ``losses[i]`` is the raw training loss of the step taken at ``lrs[i]``."""

    lrs: list[float]
    losses: list[float]
    seconds: float
    stop_reason: str | None

    @property
    def steps(self) -> int:
        """Optimizer steps the sweep took."""
        return len(self.losses)


class _SweepCallback(Callback):
    """Sets each step's learning rate from the schedule and records that step's loss."""

    def __init__(self, schedule: np.ndarray, divergence_factor: float) -> None:
        self._schedule = schedule
        self._divergence_factor = divergence_factor
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.stop_reason: str | None = None
        self._best = math.inf

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The sweep sets every step's learning rate itself: drop the model's schedulers (TFT's
        # ReduceLROnPlateau would wait for a val_loss the sweep never computes), as Lightning's lr_find does.
        trainer.strategy.lr_scheduler_configs = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        lr = float(self._schedule[trainer.global_step])
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        self.lrs.append(lr)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = float(outputs["loss"]) if outputs else math.nan
        self.losses.append(loss)
        if not math.isfinite(loss):
            self.stop_reason = f"non-finite loss at step {len(self.losses)}"
        elif loss > self._divergence_factor * self._best:
            self.stop_reason = f"loss above {self._divergence_factor:g}x its best at step {len(self.losses)}"
        else:
            self._best = min(self._best, loss)
        if self.stop_reason:
            trainer.should_stop = True

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        if replaced_non_finite(loss):  # the step cannot be taken: record it and end the sweep here
            self.losses.append(math.nan)
            self.stop_reason = f"non-finite loss at step {len(self.losses)}"
            raise NonFiniteLoss(self.stop_reason)


def lr_schedule(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """``steps`` learning rates growing exponentially from ``min_lr`` to ``max_lr``."""
    return np.geomspace(min_lr, max_lr, steps)


def run_range_test(
    model: pl.LightningModule,
    train_loader: Loader,
    val_loader: Loader,
    settings: LRFinderSection,
    trainer_settings: TrainerSection,
    gradient_clip_val: float,
    extra_callbacks: Sequence[Callback] = (),
) -> RangeTestResult:
    """Sweep the learning rate over ``settings.num_training`` training steps on ``model``, then restore it."""
    sweep = _SweepCallback(
        lr_schedule(settings.min_lr, settings.max_lr, settings.num_training), settings.divergence_factor
    )
    trainer = pl.Trainer(
        max_steps=settings.num_training,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=gradient_clip_val,
        accelerator=trainer_settings.accelerator,
        devices=trainer_settings.devices,
        precision=trainer_settings.precision,
        callbacks=[sweep, *extra_callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    weights = copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    try:
        # The validation loader is passed only so that Lightning knows validation is skipped on purpose
        # (limit_val_batches=0): no validation batch is ever drawn during the sweep.
        trainer.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
    except NonFiniteLoss:
        pass  # the sweep's last point, recorded with its stop reason
    finally:
        model.load_state_dict(weights)
    return RangeTestResult(
        lrs=sweep.lrs[: len(sweep.losses)],
        losses=sweep.losses,
        seconds=time.perf_counter() - started,
        stop_reason=sweep.stop_reason,
    )
