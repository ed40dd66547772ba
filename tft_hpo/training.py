"""Training one model: a Lightning fit on the study's data that records the monitored loss of every epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from tft_hpo.config import TrainerSection
from tft_hpo.data import Datasets
from tft_hpo.finite import NonFiniteLoss, NonFiniteLossCheck

MONITOR = "val_loss"


class EpochRecorder(Callback):
    """Records the monitored loss of every validation epoch; a non-finite one ends the fit."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or MONITOR not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[MONITOR])
        self.values.append(value)
        if not math.isfinite(value):
            raise NonFiniteLoss(f"{MONITOR} is {value} at epoch {trainer.current_epoch}")


def fit(
    model: pl.LightningModule,
    datasets: Datasets,
    settings: TrainerSection,
    gradient_clip_val: float,
    recorder: EpochRecorder,
    callbacks: Sequence[Callback] = (),
    root_dir: Path | None = None,
    verbose: bool = False,
) -> list[float]:
    """Train ``model`` with the trial budget of ``settings``; the monitored loss of every epoch, in order.

    ``recorder`` keeps the values recorded so far when the fit ends early (pruned, diverged, interrupted).
    """
    trainer = pl.Trainer(
        max_epochs=settings.max_epochs,
        limit_train_batches=settings.limit_train_batches,
        accelerator=settings.accelerator,
        devices=settings.devices,
        precision=settings.precision,
        gradient_clip_val=gradient_clip_val,
        callbacks=[recorder, NonFiniteLossCheck(), *callbacks],
        logger=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        num_sanity_val_steps=0,
        enable_progress_bar=verbose,
        enable_model_summary=verbose,
        default_root_dir=root_dir,
    )
    trainer.fit(model, train_dataloaders=datasets.train_loader, val_dataloaders=datasets.val_loader)
    return recorder.values
