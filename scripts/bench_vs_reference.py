"""tft-hpo against pytorch-forecasting's ``optimize_hyperparameters``, side by side in one run.

On the Stallion data, with the same search ranges, number of trials, epochs per trial,
``limit_train_batches``, pruner and seeds (sampler: TPE seeded per seed), it runs three tools:

- ``reference``: ``pytorch_forecasting...tuning.optimize_hyperparameters`` with its LR finder, on the
  TimeSeriesDataSet dataloaders a user would pass it;
- ``tft-hpo``: ``run_study`` with the study file's settings (defaults);
- ``tft-hpo-off``: the same with ``lr_finder.mode = "off"`` (the sampler draws the LR).

Per tool it prints the study wall time (median over seeds), the range-test share of it, training
throughput (optimizer steps per second inside the training fits, validation included) and the best
val_loss (median and per seed; for the reference both its reported value, the last epoch's, and the
best epoch's). The datasets are built once before anything is timed. The last line is one JSON object
(keys in the README). ``--quick`` runs a small version (studies/stallion_quick.toml budget, 3 trials)
that finishes in minutes on 2 cores.

Run: ``python scripts/bench_vs_reference.py [--quick] [--seeds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
from _stallion import ROOT, stallion_path
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from pytorch_forecasting.models.temporal_fusion_transformer.tuning import optimize_hyperparameters

from tft_hpo.config import StudyConfig, config_from_dict, load_study_file
from tft_hpo.data import Datasets, build_datasets
from tft_hpo.output import configure_output, install_warning_filters
from tft_hpo.runner import run_study
from tft_hpo.sampling import build_pruner

TOOLS = ("reference", "tft-hpo", "tft-hpo-off")


class _FitTimer(pl.Callback):
    """Counts optimizer steps and seconds inside every training fit (also one a pruner ends early)."""

    def __init__(self) -> None:
        self.steps = 0
        self.seconds = 0.0
        self._started: float | None = None
        self._last = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close()
        self._started = self._last = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.steps += 1
        self._last = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.perf_counter()

    def close(self) -> None:
        """Count the fit in progress up to its last step or validation."""
        if self._started is not None:
            self.seconds += self._last - self._started
            self._started = None


class _FitStartLogger(Logger):
    """The reference's only hook for us: a logger (in place of TensorBoard, not installed) noting fit starts.

    ``optimize_hyperparameters`` replaces its trainer's callbacks with ours if we pass any, so timing
    goes through the logger: Lightning logs the hyperparameters at the start of every fit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fit_starts: list[float] = []

    @property
    def name(self) -> str:
        return "fit-start"

    @property
    def version(self) -> int:
        return 0

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.fit_starts.append(time.time())

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        return None


@dataclass(frozen=True)
class _Result:
    wall: float
    range_test: float
    steps: int
    train_seconds: float
    best: float
    best_reported: float

    @property
    def share(self) -> float:
        return self.range_test / self.wall

    @property
    def throughput(self) -> float:
        return self.steps / self.train_seconds


def _reference(config: StudyConfig, datasets: Datasets, seed: int, folder: Path) -> _Result:
    space, finder, trainer = config.search_space, config.lr_finder, config.trainer
    batch_size = config.data.batch_size
    train_loader = datasets.training.to_dataloader(train=True, batch_size=batch_size, num_workers=0)
    val_loader = datasets.validation.to_dataloader(train=False, batch_size=batch_size * 10, num_workers=0)
    logger = _FitStartLogger()
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=build_pruner(config.study.pruner, trainer.max_epochs),
    )
    pl.seed_everything(seed, verbose=False)
    started = time.perf_counter()
    with warnings.catch_warnings():
        # The reference's own calls: Optuna's deprecated suggest_uniform/suggest_loguniform.
        warnings.filterwarnings("ignore", message=r"suggest_(uniform|loguniform) has been", category=FutureWarning)
        optimize_hyperparameters(
            train_loader,
            val_loader,
            model_path=str(folder / "reference"),
            max_epochs=trainer.max_epochs,
            n_trials=config.study.n_trials,
            gradient_clip_val_range=(space.gradient_clip_val.low, space.gradient_clip_val.high),
            hidden_size_range=(space.hidden_size.low, space.hidden_size.high),
            hidden_continuous_size_range=(space.hidden_continuous_size.low, space.hidden_continuous_size.high),
            attention_head_size_range=(space.attention_head_size.low, space.attention_head_size.high),
            dropout_range=(space.dropout.low, space.dropout.high),
            learning_rate_range=(finder.min_lr, finder.max_lr),
            use_learning_rate_finder=True,
            trainer_kwargs={
                "limit_train_batches": trainer.limit_train_batches,
                "accelerator": trainer.accelerator,
                "logger": logger,
            },
            log_dir=str(folder / "reference_logs"),
            study=study,
        )
    wall = time.perf_counter() - started
    trials = study.get_trials(deepcopy=False)
    # Range test (and model build) = from a trial's start to its training fit's start; training = the rest.
    pairs = list(zip(trials, logger.fit_starts, strict=False))
    range_test = sum(fit_start - trial.datetime_start.timestamp() for trial, fit_start in pairs)
    train_seconds = sum(trial.datetime_complete.timestamp() - fit_start for trial, fit_start in pairs)
    steps = sum(_batches(trainer.limit_train_batches, len(train_loader)) * len(t.intermediate_values) for t in trials)
    finished = [t for t in trials if t.value is not None]
    return _Result(
        wall=wall,
        range_test=range_test,
        steps=steps,
        train_seconds=train_seconds,
        best=min(_best_epoch(t) for t in finished),
        best_reported=min(t.value for t in finished),
    )


def _best_epoch(trial: optuna.trial.FrozenTrial) -> float:
    return min(trial.intermediate_values.values()) if trial.intermediate_values else trial.value


def _batches(limit: int | float, available: int) -> int:
    return min(limit, available) if isinstance(limit, int) else int(limit * available)


def _tft_hpo(config: StudyConfig, seed: int, folder: Path, mode: str) -> _Result:
    data = config.to_dict()
    data["study"].update(name=f"bench-{mode}-{seed}", seed=seed, storage=f"sqlite:///{folder}/bench.db")
    data["lr_finder"]["mode"] = mode
    timer = _FitTimer()
    with open(os.devnull, "w") as quiet:
        summary = run_study(config_from_dict(data, origin="bench"), callbacks=[timer], out=quiet)
    timer.close()
    return _Result(
        wall=summary.wall_seconds,
        range_test=summary.range_test_seconds,
        steps=timer.steps,
        train_seconds=timer.seconds,
        best=summary.best.value,
        best_reported=summary.best.value,
    )


def _load(study_file: Path, quick: bool) -> StudyConfig:
    config = load_study_file(study_file)
    data = config.to_dict()
    data["data"]["path"] = str(stallion_path())
    data["trainer"]["accelerator"] = "cpu"
    if quick:
        data["study"]["n_trials"] = 3
    return config_from_dict(data, origin=str(study_file))


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study-file", type=Path, help="default: studies/stallion.toml (--quick: stallion_quick)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a small run: minutes on 2 cores")
    args = parser.parse_args(argv)
    configure_output(verbose=False)
    install_warning_filters()
    study_file = args.study_file or ROOT / "studies" / ("stallion_quick.toml" if args.quick else "stallion.toml")
    config = _load(study_file, args.quick)
    datasets = build_datasets(config.data)
    trainer = config.trainer
    print(
        f"{study_file.name}: {config.study.n_trials} trials x {trainer.max_epochs} epochs x "
        f"{trainer.limit_train_batches} batches, {args.seeds} seeds",
        flush=True,
    )
    results: dict[str, list[_Result]] = {tool: [] for tool in TOOLS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            folder = Path(tmp) / str(seed)
            folder.mkdir()
            results["reference"].append(_reference(config, datasets, seed, folder))
            results["tft-hpo"].append(_tft_hpo(config, seed, folder, config.lr_finder.mode))
            results["tft-hpo-off"].append(_tft_hpo(config, seed, folder, "off"))
            for tool in TOOLS:
                r = results[tool][-1]
                print(
                    f"  seed {seed} {tool:<12} wall {r.wall:7.1f}s  range test {r.share:5.1%}  "
                    f"{r.throughput:5.2f} steps/s  best val_loss {r.best:.4f}",
                    flush=True,
                )
    print(f"\n{'tool':<12} {'wall (s)':>9} {'LR share':>9} {'steps/s':>8} {'best val_loss (median; per seed)'}")
    for tool in TOOLS:
        rows = results[tool]
        per_seed = ", ".join(f"{r.best:.4f}" for r in rows)
        print(
            f"{tool:<12} {_median([r.wall for r in rows]):>9.1f} {_median([r.share for r in rows]):>9.1%} "
            f"{_median([r.throughput for r in rows]):>8.2f} {_median([r.best for r in rows]):.4f}; {per_seed}"
        )
    reported = ", ".join(f"{r.best_reported:.4f}" for r in results["reference"])
    print(f"reference's own reported values (last epoch of its best trial): {reported}")
    ours, ref = results["tft-hpo"], results["reference"]
    summary = {
        "wall_ratio": round(_median([r.wall for r in ours]) / _median([r.wall for r in ref]), 3),
        "throughput_ratio": round(_median([r.throughput for r in ours]) / _median([r.throughput for r in ref]), 3),
        "lr_share": round(_median([r.share for r in ours]), 4),
        "lr_share_reference": round(_median([r.share for r in ref]), 4),
        "best_val_loss": round(_median([r.best for r in ours]), 4),
        "best_val_loss_reference": round(_median([r.best for r in ref]), 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
