"""Terminal output while a study runs: one line per finished trial and an overall progress line."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from tft_hpo.results import best_trial

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def range_test_seconds(trial: FrozenTrial) -> float:
    """Seconds the trial's LR range test took (0 when it ran none)."""
    record: dict[str, Any] | None = trial.user_attrs.get("lr_finder")
    return float(record["seconds"]) if record else 0.0


def format_trial(trial: FrozenTrial) -> str:
    """``trial 3  COMPLETE  val_loss 0.41270  lr 2.15e-03  range test 1.4s  took 6.2s`` (with a reason on FAIL)."""
    value = f"val_loss {trial.value:.5f}" if trial.value is not None else _last_value(trial)
    lr = trial.user_attrs.get("learning_rate")
    duration = trial.duration.total_seconds() if trial.duration else 0.0
    parts = [
        f"trial {trial.number:>3}",
        f"{trial.state.name:<8}",
        value,
        f"lr {lr:.2e}" if lr is not None else "lr -",
        _range_test_text(trial),
        f"took {duration:.1f}s",
    ]
    if trial.state == TrialState.FAIL:
        parts.append(
            f"reason: {trial.user_attrs.get('fail_reason') or trial.system_attrs.get('fail_reason', 'unknown')}"
        )
    return "  ".join(parts)


def _range_test_text(trial: FrozenTrial) -> str:
    record = trial.user_attrs.get("lr_finder") or {}
    if record.get("cached_from") is not None:
        return f"range test cached from trial {record['cached_from']}"
    return f"range test {range_test_seconds(trial):.1f}s"


def _last_value(trial: FrozenTrial) -> str:
    if trial.intermediate_values:
        step = max(trial.intermediate_values)
        return f"val_loss {trial.intermediate_values[step]:.5f} @ epoch {step}"
    return "val_loss -"


class ProgressReporter:
    """An Optuna study callback printing each finished trial and where the study stands."""

    def __init__(self, n_trials: int, out: TextIO | None = None) -> None:
        self._n_trials = n_trials
        self._out = out or sys.stdout
        self._started = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        best = best_trial(study)
        best_text = f"best {best.value:.5f} (trial {best.number})" if best else "no completed trial yet"
        elapsed = time.perf_counter() - self._started
        print(format_trial(trial), file=self._out, flush=True)
        print(
            f"[{finished}/{self._n_trials} finished] {best_text} | elapsed {_clock(elapsed)}",
            file=self._out,
            flush=True,
        )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
