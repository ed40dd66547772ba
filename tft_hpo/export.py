"""The best trial as a model to use: export its params, config and checkpoint, or load it ready for ``predict``."""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from tft_hpo.artifacts import RANGE_TEST_PNG, save_trial_range_test_plot
from tft_hpo.config import default_storage_url
from tft_hpo.errors import StorageError, UserError
from tft_hpo.output import install_warning_filters
from tft_hpo.results import best_trial
from tft_hpo.storage import find_study, open_storage, redacted_url, stored_config

BEST_TRIAL_JSON = "best_trial.json"
CONFIG_JSON = "config.json"
CHECKPOINT = "best.ckpt"

if TYPE_CHECKING:
    from pytorch_forecasting import TemporalFusionTransformer


@dataclass(frozen=True)
class BestTrial:
    """A study's best completed trial and its checkpoint file."""

    study: optuna.Study
    trial: FrozenTrial
    checkpoint: Path


def find_best(name: str, storage: str | None = None) -> BestTrial:
    """The best trial of study ``name`` (default storage ``sqlite:///studies/<name>.db``) with its checkpoint."""
    url = storage or default_storage_url(name)
    study = find_study(open_storage(url, must_exist=True), name)
    if study is None:
        raise StorageError(f"study {name!r} does not exist in {redacted_url(url)}")
    trial = best_trial(study)
    if trial is None:
        raise StorageError(f"study {name!r} has no completed trial yet")
    checkpoint = trial.user_attrs.get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_file():
        raise StorageError(
            f"study {name!r}: the checkpoint of best trial {trial.number} is missing ({checkpoint or 'none recorded'})"
        )
    return BestTrial(study, trial, Path(checkpoint))


def export_best(name: str, out_dir: Path, storage: str | None = None) -> list[Path]:
    """Write the best trial's ``best_trial.json``, the study's ``config.json``, ``best.ckpt`` and range-test plot.

    Returns the files written.
    """
    best = find_best(name, storage)
    config = stored_config(best.study)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--export: {out_dir} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--export: cannot create {out_dir}: {error.strerror}") from None
    written = [out_dir / BEST_TRIAL_JSON, out_dir / CONFIG_JSON, out_dir / CHECKPOINT]
    written[0].write_text(json.dumps(_trial_record(best), indent=2) + "\n")
    written[1].write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    shutil.copyfile(best.checkpoint, written[2])
    plot = out_dir / RANGE_TEST_PNG
    if save_trial_range_test_plot(best.trial.number, best.trial.params, best.trial.user_attrs, plot):
        written.append(plot)
    return written


def load_best(name: str, storage: str | None = None, map_location: str = "cpu") -> TemporalFusionTransformer:
    """The best trial's trained TemporalFusionTransformer, in eval mode, ready for ``predict``.

    ``storage`` is a SQLAlchemy URL (default ``sqlite:///studies/<name>.db``). Predict on datasets built
    from the study's stored config (``tft_hpo.data.build_datasets(config.data)``): the model carries
    the training set's encoders and normalizers.
    """
    best = find_best(name, storage)
    from pytorch_forecasting import TemporalFusionTransformer  # heavy: load only once the study is found

    with warnings.catch_warnings():
        install_warning_filters()
        model = TemporalFusionTransformer.load_from_checkpoint(best.checkpoint, map_location=map_location)
    return model.eval()


def _trial_record(best: BestTrial) -> dict[str, Any]:
    trial = best.trial
    return {
        "study": best.study.study_name,
        "trial": trial.number,
        "value": trial.value,
        "direction": best.study.direction.name.lower(),
        "params": trial.params,
        "user_attrs": trial.user_attrs,
        "checkpoint": CHECKPOINT,
        "source_checkpoint": str(best.checkpoint),
    }
