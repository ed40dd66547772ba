"""Where a trial's time goes: training steps/s from each data loader, and per-trial time outside the steps.

First, for pytorch-forecasting's dataloaders ("plain") and the in-memory batches ("memory"): the time
to draw one training batch alone, and the training steps/s of the search space's middle architecture
(one epoch of ``limit_train_batches``, the loaders alternating, medians of ``--rounds``). Then real
trials of the study file (a throwaway SQLite study in a temporary folder) with each loader, with the
medians per trial of: wall time, range test, training steps (and the share spent fetching batches),
validation, and the overhead: what is left (model build, Trainer set-up, checkpoint writes, storage
calls, epoch hooks), inside and outside ``Trainer.fit``.

    PYTHONPATH=$PWD .venv/bin/python scripts/profile_trial.py studies/stallion.toml --trials 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from io import StringIO
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
import torch
from lightning.pytorch.callbacks import Callback

from tft_hpo.config import StudyConfig, config_from_dict, load_study_file
from tft_hpo.data import Datasets, build_datasets
from tft_hpo.model import build_model
from tft_hpo.output import configure_output
from tft_hpo.progress import range_test_seconds
from tft_hpo.runner import run_study
from tft_hpo.search_space import default_architecture

MODES = ("plain", "memory")


class StepClock(Callback):
    """Per fit: seconds in training steps, in fetching their batches, in validation, and in the whole fit."""

    def __init__(self) -> None:
        self.fits: list[dict[str, float]] = []
        self._mark = self._started = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()
        self.fits.append({"steps": 0, "step_s": 0.0, "fetch_s": 0.0, "val_s": 0.0, "fit_s": 0.0})

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        now = time.perf_counter()
        self.fits[-1]["fetch_s"] += now - self._mark
        self._mark = now

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        now = time.perf_counter()
        self.fits[-1]["step_s"] += now - self._mark
        self.fits[-1]["steps"] += 1
        self._mark = now

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fits[-1]["val_s"] += time.perf_counter() - self._val_started

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fits[-1]["fit_s"] = time.perf_counter() - self._started


def with_loader(config: StudyConfig, mode: str, **study: Any) -> StudyConfig:
    """``config`` with ``mode``'s data loader and ``study`` fields replaced."""
    raw = config.to_dict()
    raw["study"].update(study)
    raw["study"]["storage"] = None  # a throwaway SQLite file under output_dir
    raw["data"]["materialize"] = mode == "memory"
    return config_from_dict(raw, "profile")


def seconds_per_batch(datasets: Datasets, batches: int) -> float:
    """Seconds to draw one training batch, with no model."""
    started = time.perf_counter()
    for drawn, _ in enumerate(datasets.train_loader, start=1):
        if drawn == batches:
            break
    return (time.perf_counter() - started) / drawn


def steps_per_second(config: StudyConfig, datasets: Datasets) -> float:
    """Training steps/s (batch fetch included) in one epoch of the middle architecture."""
    architecture = default_architecture(config.search_space)
    pl.seed_everything(config.study.seed, verbose=False)
    model = build_model(datasets.training, architecture, learning_rate=config.lr_finder.fallback_lr)
    clock = StepClock()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=config.trainer.limit_train_batches,
        limit_val_batches=1,  # TFT's ReduceLROnPlateau reads val_loss at the epoch's end
        num_sanity_val_steps=0,
        accelerator=config.trainer.accelerator,
        gradient_clip_val=architecture.gradient_clip_val,
        callbacks=[clock],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=datasets.train_loader, val_dataloaders=datasets.val_loader)
    fit = clock.fits[-1]
    return fit["steps"] / (fit["step_s"] + fit["fetch_s"])


def throughput(config: StudyConfig, rounds: int) -> dict[str, dict[str, float]]:
    """Per loader: seconds to build the datasets, to draw a batch, and training steps/s (medians)."""
    results: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        started = time.perf_counter()
        datasets = build_datasets(with_loader(config, mode).data)
        results[mode] = {"datasets_s": time.perf_counter() - started, "batch_s": [], "steps_per_s": []}
    for _ in range(rounds):
        for mode in MODES:
            datasets = build_datasets(with_loader(config, mode).data)
            results[mode]["batch_s"].append(seconds_per_batch(datasets, 30))
            results[mode]["steps_per_s"].append(steps_per_second(config, datasets))
    return {
        mode: {key: statistics.median(value) if isinstance(value, list) else value for key, value in row.items()}
        for mode, row in results.items()
    }


def trial_split(config: StudyConfig, trials: int, folder: Path) -> dict[str, dict[str, float]]:
    """Per loader, the medians of ``trials`` real trials' time split (the loaders take turns, trial by trial)."""
    clocks = {mode: StepClock() for mode in MODES}
    for total in range(1, trials + 1):
        for mode in MODES:
            study = with_loader(config, mode, name=f"profile-{mode}", n_trials=total, output_dir=str(folder))
            run_study(study, callbacks=[clocks[mode]], out=StringIO())
    results = {}
    for mode, clock in clocks.items():
        study = with_loader(config, mode, name=f"profile-{mode}", output_dir=str(folder)).study
        stored = optuna.load_study(study_name=study.name, storage=study.storage_url)
        rows = [_split(trial, fit) for trial, fit in zip(stored.get_trials(deepcopy=False), clock.fits, strict=True)]
        results[mode] = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    return results


def _split(trial: optuna.trial.FrozenTrial, fit: dict[str, float]) -> dict[str, float]:
    wall = trial.duration.total_seconds()
    range_test = range_test_seconds(trial)
    train = fit["step_s"] + fit["fetch_s"]
    return {
        "wall_s": wall,
        "range_test_s": range_test,
        "train_s": train,
        "fetch_share": fit["fetch_s"] / train,
        "steps_per_s": fit["steps"] / train,
        "val_s": fit["val_s"],
        "in_fit_overhead_s": fit["fit_s"] - train - fit["val_s"],
        "outside_fit_s": wall - range_test - fit["fit_s"],
        "overhead_s": wall - range_test - train - fit["val_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_file", type=Path, nargs="?", default=Path("studies/stallion.toml"))
    parser.add_argument("--rounds", type=int, default=3, help="throughput measurements per loader")
    parser.add_argument("--trials", type=int, default=3, help="trials per loader (0: throughput only)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    configure_output(verbose=False)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_study_file(args.study_file)
    print(f"{args.study_file}: {torch.get_num_threads()} torch thread(s)")
    _print_table("throughput", throughput(config, args.rounds))
    if args.trials:
        with tempfile.TemporaryDirectory() as folder:
            _print_table(f"median of {args.trials} trials", trial_split(config, args.trials, Path(folder)))


def _print_table(title: str, results: dict[str, dict[str, float]]) -> None:
    print(f"{title:<20}" + "".join(f"{mode:>12}" for mode in results))
    for key in next(iter(results.values())):
        print(f"{key:<20}" + "".join(f"{results[mode][key]:>12.4f}" for mode in results))


if __name__ == "__main__":
    main()
