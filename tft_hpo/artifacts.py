"""Per-trial artifacts: the range-test plot (PNG) and curve (CSV) in Optuna's artifact store, and the trial's note.

Optuna attaches an artifact only to a live trial, so :class:`RecordingObjective` wraps the objective and
records while the trial is still running, whatever its outcome (complete, pruned or failed).
"""

from __future__ import annotations

import logging
import tempfile
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState
from optuna_dashboard import save_note

from tft_hpo.errors import StorageError
from tft_hpo.notes import trial_note
from tft_hpo.plots import save_range_test_plot, write_curve_csv

RANGE_TEST_PNG = "range_test.png"
RANGE_TEST_CSV = "range_test.csv"

_logger = logging.getLogger(__name__)


def open_artifact_store(path: Path) -> FileSystemArtifactStore:
    """A file-system artifact store at ``path``, created if missing."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(f"study.artifact_dir: cannot create the artifact folder {path}: {error.strerror}") from None
    return FileSystemArtifactStore(path)


def range_test_curve(attrs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The recorded (lr, loss) curve of a trial's range test (missing losses as NaN), or ``None``."""
    finder = attrs.get("lr_finder") or {}
    curve = finder.get("curve") or {}
    lrs, losses = curve.get("lr") or [], curve.get("loss") or []
    if not lrs or len(lrs) != len(losses):
        return None
    return np.asarray(lrs, dtype=float), np.asarray([np.nan if x is None else x for x in losses], dtype=float)


def save_trial_range_test_plot(number: int, params: Mapping[str, Any], attrs: Mapping[str, Any], path: Path) -> bool:
    """Plot a trial's recorded range test into ``path`` (PNG); ``False`` when the trial has no curve."""
    curve = range_test_curve(attrs)
    if curve is None:
        return False
    finder = attrs["lr_finder"]
    source = finder.get("source", finder.get("heuristic", "?"))
    suggestion = float(finder["suggestion"])
    used = attrs.get("learning_rate")
    lines = [f"trial {number}: LR range test, {finder.get('steps', len(curve[0]))} steps ({source})"]
    factor = params.get("lr_factor")
    used_text = f"trained at {used:.2e}" if used is not None else "not trained"
    lines.append(f"suggestion {suggestion:.2e}, {used_text}" + (f" (x{factor:.3g})" if factor is not None else ""))
    if finder.get("fallback"):
        lines.append(f"no answer from {finder['fallback']}")
    if finder.get("cached_from") is not None:
        lines.append(f"curve reused from trial {finder['cached_from']}'s range test")
    title = "\n".join(textwrap.shorten(line, 90, placeholder="...") for line in lines)
    label = "fallback_lr" if source == "fallback_lr" else f"suggestion ({source})"
    save_range_test_plot(*curve, suggestion, path, note=title, used_lr=used, suggestion_label=label)
    return True


def write_trial_artifacts(
    number: int, params: Mapping[str, Any], attrs: Mapping[str, Any], directory: Path
) -> list[Path]:
    """Write a trial's ``range_test.png`` and ``range_test.csv`` into ``directory``; none without a curve."""
    png, csv = directory / RANGE_TEST_PNG, directory / RANGE_TEST_CSV
    if not save_trial_range_test_plot(number, params, attrs, png):
        return []
    lrs, losses = range_test_curve(attrs)  # type: ignore[misc]  # not None: the plot was saved
    write_curve_csv(lrs, losses, csv)
    return [png, csv]


class RecordingObjective:
    """Wraps an objective: once it returns or raises, uploads the trial's range-test files and saves its note."""

    def __init__(self, objective: Callable[[optuna.Trial], float], store: FileSystemArtifactStore) -> None:
        self._objective = objective
        self._store = store

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            value = self._objective(trial)
        except optuna.TrialPruned:
            steps = _intermediate_values(trial)
            last = max(steps, default=None)
            self._record(trial, f"pruned after epoch {last}", steps.get(last))
            raise
        except Exception:
            self._record(trial, "failed", None)
            raise
        self._record(trial, "complete", value)
        return value

    def _record(self, trial: optuna.Trial, outcome: str, value: float | None) -> None:
        try:
            attrs, params = trial.user_attrs, trial.params
            with tempfile.TemporaryDirectory(prefix="tft-hpo-artifacts-") as folder:
                for path in write_trial_artifacts(trial.number, params, attrs, Path(folder)):
                    upload_artifact(artifact_store=self._store, file_path=str(path), study_or_trial=trial)
            save_note(trial, trial_note(trial.number, outcome, value, params, attrs))
        except Exception as error:  # the files only show a trial: failing to write them must not change its outcome
            _logger.warning("trial %d: could not record its artifacts and note: %r", trial.number, error)


def _intermediate_values(trial: optuna.Trial) -> dict[int, float]:
    for frozen in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number == trial.number:
            return frozen.intermediate_values
    return {}
