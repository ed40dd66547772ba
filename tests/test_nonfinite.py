"""Non-finite losses, for real: a trial whose training loss turns NaN fails with the reason and the study goes
on; a range test whose every loss is non-finite falls back to the configured LR and says so on the trial."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import optuna
import torch
from optuna.trial import TrialState

from tft_hpo.config import load_study_file
from tft_hpo.runner import run_study
from tft_hpo.synthetic import make_demand_panel

from .conftest import FILE_ROLES, assert_no_dangling_checkpoint

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class _PoisonFirstTraining(pl.Callback):
    """Sets every weight of the first trial's model to NaN in its second epoch (after a checkpoint exists)."""

    def __init__(self) -> None:
        self.trainings = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainings += 1

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.trainings == 1 and trainer.current_epoch == 1:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(math.nan)


def test_a_nan_training_loss_fails_the_trial_with_the_reason_and_the_study_goes_on(
    study_file: Callable[..., Path], workdir: Path
) -> None:
    changes = {
        "study": {"n_trials": 2, "pruner": {"type": "none"}},
        "trainer": {"max_epochs": 2, "limit_train_batches": 2},
    }
    config = load_study_file(study_file("nan", changes))
    summary = run_study(config, callbacks=[_PoisonFirstTraining()])
    trials = optuna.load_study(study_name="nan", storage=f"sqlite:///{workdir}/studies/nan.db").get_trials()
    first = trials[0]
    assert first.state == TrialState.FAIL
    assert first.user_attrs["fail_reason"] == "NonFiniteLoss: training loss is not finite at epoch 1, step 2"
    assert first.user_attrs["checkpoint"] is None and first.intermediate_values  # epoch 0 was fine
    assert not (workdir / "studies" / "nan" / "trials" / "0").exists()  # its epoch-0 checkpoint is gone
    assert summary.ran == 2 and trials[1].state in FINISHED  # the study went on
    assert_no_dangling_checkpoint(trials)


def test_a_range_test_whose_every_loss_is_non_finite_falls_back_to_the_configured_lr(
    study_file: Callable[..., Path], workdir: Path
) -> None:
    # Targets near float32's largest value: every quantile loss overflows to infinity from the first step.
    panel = make_demand_panel(2, 2, 30, 1)
    panel["volume"] = panel["volume"] / panel["volume"].max() * 1e38 + 1.5e38
    panel.to_csv(workdir / "huge.csv", index=False)
    data = {**FILE_ROLES, "path": "huge.csv", "target_normalizer": "none"}
    changes = {"study": {"n_trials": 1}, "data": data, "lr_finder": {"mode": "suggest", "fallback_lr": 2e-3}}
    summary = run_study(load_study_file(study_file("inf", changes)))
    (trial,) = optuna.load_study(study_name="inf", storage=f"sqlite:///{workdir}/studies/inf.db").get_trials()
    record = trial.user_attrs["lr_finder"]
    assert record["stop_reason"] == "non-finite loss at step 1" and record["steps"] == 1
    assert record["fallback"]  # the reason the curve gave no answer
    assert record["suggestion"] == trial.user_attrs["learning_rate"] == 2e-3
    assert trial.state == TrialState.FAIL  # its training cannot take a finite step either
    assert trial.user_attrs["fail_reason"].startswith("NonFiniteLoss: training loss is not finite")
    assert summary.finished == 0 and not (workdir / "studies" / "inf" / "trials" / "0").exists()
