"""The objective: one trial = suggest, build, range-test, train with pruning, record, return best val_loss."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from tft_hpo.config import LRFinderSection, StudyConfig
from tft_hpo.data import Datasets
from tft_hpo.lr_heuristics import choose_lr, downsample
from tft_hpo.model import build_model
from tft_hpo.range_test import run_range_test
from tft_hpo.range_test_cache import CACHE_KEY, CACHED_FROM, cache_key, find_cached
from tft_hpo.search_space import Architecture, suggest_architecture
from tft_hpo.signals import Interrupted
from tft_hpo.training import MONITOR, EpochRecorder, fit

_SEED_STRIDE = 1_000_003


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The seed a trial's model, range test and training use: a function of the study seed and trial number."""
    return (study_seed * _SEED_STRIDE + trial_number) % 2**31


def trial_dir(config: StudyConfig, trial_number: int) -> Path:
    """Where a trial's checkpoint goes: ``<output_dir>/<name>/trials/<number>/``."""
    return config.study.study_dir / "trials" / str(trial_number)


class Objective:
    """The Optuna objective for one study config; datasets are built once and shared by every trial."""

    def __init__(
        self, config: StudyConfig, datasets: Datasets, callbacks: Sequence[Callback] = (), verbose: bool = False
    ) -> None:
        self._config = config
        self._datasets = datasets
        self._callbacks = list(callbacks)
        self._verbose = verbose

    def __call__(self, trial: optuna.Trial) -> float:
        directory = trial_dir(self._config, trial.number)
        try:
            return self._run(trial, directory)
        except optuna.TrialPruned:
            raise
        except Interrupted:
            _discard_checkpoint(trial, directory, "interrupted")
            raise
        except Exception as error:
            _discard_checkpoint(trial, directory, f"{error.__class__.__name__}: {error}")
            raise

    def _run(self, trial: optuna.Trial, directory: Path) -> float:
        config = self._config
        original = _retried_trial_number(trial)
        seed = trial_seed(config.study.seed, trial.number if original is None else original)
        if original is not None:
            trial.set_user_attr("retry_of", original)
        trial.set_user_attr("seed", seed)
        pl.seed_everything(seed, verbose=False)

        architecture = suggest_architecture(trial, config.search_space)
        settings = config.lr_finder
        model = build_model(self._datasets.training, architecture, learning_rate=settings.fallback_lr)
        if settings.mode == "off":
            learning_rate = trial.suggest_float("learning_rate", settings.min_lr, settings.max_lr, log=True)
            trial.set_user_attr("lr_finder", None)
        else:
            factor = 1.0
            if settings.mode == "window":
                factor = trial.suggest_float("lr_factor", 1 / settings.window, settings.window, log=True)
            record = self._range_test(trial, model, architecture, settings)
            trial.set_user_attr("lr_finder", record)
            learning_rate = min(max(record["suggestion"] * factor, settings.min_lr), settings.max_lr)
        trial.set_user_attr("learning_rate", learning_rate)
        model.hparams.learning_rate = learning_rate
        return self._train(trial, model, architecture.gradient_clip_val, directory)

    def _range_test(
        self, trial: optuna.Trial, model: pl.LightningModule, architecture: Architecture, settings: LRFinderSection
    ) -> dict[str, Any]:
        """The trial's range-test record: from the study's cache when allowed and present, else a fresh sweep."""
        key = cache_key(architecture, self._datasets.fingerprint, self._config.trainer.precision, settings)
        if settings.cache:
            started = time.perf_counter()
            cached = find_cached(trial.study, key, trial.number)
            if cached is not None:
                number, record = cached
                return {**record, "seconds": round(time.perf_counter() - started, 3), CACHED_FROM: number}
        result = run_range_test(
            model,
            self._datasets.train_loader,
            self._datasets.val_loader,
            settings,
            self._config.trainer,
            architecture.gradient_clip_val,
        )
        choice = choose_lr(result.lrs, result.losses, settings.chain, settings.fallback_lr)
        return {
            "suggestion": choice.lr,
            "heuristic": settings.heuristic,
            "source": choice.source,
            "at_edge": choice.at_edge,
            "fallback": choice.fallback,
            "steps": result.steps,
            "seconds": round(result.seconds, 3),
            "stop_reason": result.stop_reason,
            "curve": downsample(result.lrs, result.losses),
            CACHE_KEY: key,
            CACHED_FROM: None,
        }

    def _train(
        self, trial: optuna.Trial, model: pl.LightningModule, gradient_clip_val: float, directory: Path
    ) -> float:
        config = self._config
        mode = "min" if config.study.direction == "minimize" else "max"
        recorder = EpochRecorder()
        checkpoint = ModelCheckpoint(
            dirpath=directory, filename="best", monitor=MONITOR, mode=mode, save_top_k=1, save_weights_only=True
        )
        started = time.perf_counter()
        try:
            fit(
                model,
                self._datasets,
                config.trainer,
                gradient_clip_val,
                recorder,
                callbacks=[PyTorchLightningPruningCallback(trial, monitor=MONITOR), checkpoint, *self._callbacks],
                root_dir=directory,
                verbose=self._verbose,
            )
        finally:
            _record_training(trial, recorder.values, checkpoint, time.perf_counter() - started, mode)
        if not recorder.values:
            raise RuntimeError("training ended before the first validation epoch")
        return min(recorder.values) if mode == "min" else max(recorder.values)


def _record_training(
    trial: optuna.Trial, values: list[float], checkpoint: ModelCheckpoint, seconds: float, mode: str
) -> None:
    best = min if mode == "min" else max
    trial.set_user_attr("epochs_trained", len(values))
    trial.set_user_attr("best_epoch", values.index(best(values)) if values else None)
    trial.set_user_attr("train_seconds", round(seconds, 3))
    path = checkpoint.best_model_path
    trial.set_user_attr("checkpoint", path if path and Path(path).is_file() else None)


def _discard_checkpoint(trial: optuna.Trial, directory: Path, reason: str) -> None:
    """A trial that did not finish: record why, delete its folder, and leave no pointer to it."""
    trial.set_user_attr("fail_reason", reason)
    shutil.rmtree(directory, ignore_errors=True)
    trial.set_user_attr("checkpoint", None)


def _retried_trial_number(trial: optuna.Trial) -> int | None:
    """The number of the stale trial this one re-runs (set by Optuna's RetryFailedTrialCallback), if any."""
    for frozen in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number == trial.number:
            return frozen.system_attrs.get("failed_trial")
    return None
