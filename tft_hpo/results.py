"""Reading stored studies: counts by state, best values, the best trial's record."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tft_hpo.errors import StorageError
from tft_hpo.storage import find_study


def study_rows(storage: RDBStorage) -> list[dict[str, Any]]:
    """One row per study in ``storage``: name, counts by trial state, best value and trial."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        best = best_trial(study)
        rows.append(
            {
                "name": summary.study_name,
                "counts": Counter(t.state.name for t in trials),
                "best_value": best.value if best else None,
                "best_trial": best.number if best else None,
            }
        )
    return rows


def best_record(storage: RDBStorage, name: str) -> dict[str, Any]:
    """The best trial of study ``name``: value, params, learning rate, checkpoint and range test answer."""
    study = find_study(storage, name)
    if study is None:
        raise StorageError(f"study {name!r} does not exist in this storage")
    best = best_trial(study)
    if best is None:
        raise StorageError(f"study {name!r} has no completed trial yet")
    lr_finder = best.user_attrs.get("lr_finder") or {}
    return {
        "study": name,
        "trial": best.number,
        "value": best.value,
        "params": best.params,
        "learning_rate": best.user_attrs.get("learning_rate"),
        "lr_suggestion": lr_finder.get("suggestion"),
        "best_epoch": best.user_attrs.get("best_epoch"),
        "checkpoint": best.user_attrs.get("checkpoint"),
    }


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial, or ``None`` before the first one."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    return study.best_trial
