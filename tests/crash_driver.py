"""Run a study and SIGKILL this very process at a chosen point of trial 1 (used by test_crash.py).

``python tests/crash_driver.py STUDY_FILE PHASE`` with PHASE one of:

- ``range_test``: at the third step of trial 1's LR range test;
- ``training``: at the second batch of trial 1's second epoch (its first checkpoint is on disk);
- ``checkpoint``: while trial 1's first checkpoint is being written (written to a temporary file,
  not yet moved into place).

Trial 0 finishes first, so the next run must keep it intact while it recovers trial 1.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import lightning.pytorch as pl
import torch
from pytorch_forecasting import TemporalFusionTransformer

from tft_hpo.config import load_study_file
from tft_hpo.runner import run_study


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillDuringTrialOne(pl.Callback):
    """Counts trainings (the range test's trainer does not carry this callback) and kills in trial 1."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.trainings = 0
        self.range_test_steps = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainings += 1

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.phase == "training" and self.trainings == 2 and trainer.current_epoch == 1 and batch_idx == 1:
            _kill()

    def forward_hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        """A global forward hook: trial 1's range test follows trial 0's training; its trainer has no validation."""
        if (
            self.phase == "range_test"
            and self.trainings == 1
            and isinstance(module, TemporalFusionTransformer)
            and module.training
            and module.trainer.limit_val_batches == 0
        ):
            self.range_test_steps += 1
            if self.range_test_steps == 3:
                _kill()

    def audit_hook(self, event: str, args: tuple[Any, ...]) -> None:
        """Lightning writes a checkpoint to a temporary file, then moves it into the trial's folder."""
        if self.phase == "checkpoint" and event == "shutil.move" and str(args[1]).endswith("/trials/1/best.ckpt"):
            _kill()


def main(study_file: str, phase: str) -> None:
    killer = KillDuringTrialOne(phase)
    torch.nn.modules.module.register_module_forward_hook(killer.forward_hook)
    sys.addaudithook(killer.audit_hook)
    run_study(load_study_file(study_file), callbacks=[killer])
    sys.exit("the run ended without being killed")


if __name__ == "__main__":
    main(*sys.argv[1:])
