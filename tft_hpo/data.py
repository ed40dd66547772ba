"""The data stage: load a frame, check it against the column roles, cut training and validation sets.

Datasets and dataloaders are built once per process for a given data config and shared by every
trial (:func:`build_datasets` caches them). With ``data.materialize`` the loaders serve batches
collated once into memory (:mod:`tft_hpo.batches`) instead of pytorch-forecasting's dataloaders.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from pytorch_forecasting import TimeSeriesDataSet
from pytorch_forecasting.data import EncoderNormalizer, GroupNormalizer, TorchNormalizer
from torch.utils.data import DataLoader

from tft_hpo.batches import InMemoryLoader, MaterializeError, estimate_nbytes, materialize
from tft_hpo.config import STALLION_SPECIAL_DAYS, DataSection
from tft_hpo.errors import DataError
from tft_hpo.synthetic import make_demand_panel

#: What trials and range tests train on: pytorch-forecasting's dataloader or the in-memory batches.
Loader = DataLoader | InMemoryLoader

#: Environment variable that points ``source = "stallion"`` at a local copy of stallion.parquet.
STALLION_ENV = "TFT_HPO_STALLION"
_VALIDATION_BATCH_FACTOR = 10
_MB = 2**20
#: Fields that change how batches are served, never which: left out of the data fingerprint.
_SERVING_FIELDS = {"materialize", "materialize_max_mb"}

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Datasets:
    """Training and validation sets of one data config, with their dataloaders (in memory or not)."""

    training: TimeSeriesDataSet
    validation: TimeSeriesDataSet
    train_loader: Loader
    val_loader: Loader
    fingerprint: str


def build_datasets(data: DataSection) -> Datasets:
    """Datasets for ``data``, built on the first call and shared by later calls in this process."""
    return _build_cached(data.model_dump_json())


@lru_cache(maxsize=4)
def _build_cached(data_json: str) -> Datasets:
    data = DataSection.model_validate_json(data_json)
    frame = load_frame(data)
    check_frame(frame, data)
    training, validation = _cut(frame, data)
    fingerprint = hashlib.sha256(
        data.model_dump_json(exclude=_SERVING_FIELDS).encode()
        + pd.util.hash_pandas_object(frame, index=False).values.tobytes()
    ).hexdigest()[:16]
    loaders = _in_memory_loaders(training, validation, data) if data.materialize else None
    if loaders is None:
        loaders = (
            training.to_dataloader(train=True, batch_size=data.batch_size, num_workers=0),
            validation.to_dataloader(train=False, batch_size=_val_batch_size(data), num_workers=0),
        )
    return Datasets(
        training=training,
        validation=validation,
        train_loader=loaders[0],
        val_loader=loaders[1],
        fingerprint=fingerprint,
    )


def _in_memory_loaders(
    training: TimeSeriesDataSet, validation: TimeSeriesDataSet, data: DataSection
) -> tuple[InMemoryLoader, InMemoryLoader] | None:
    """Loaders over samples collated once, or ``None`` (logged) when they would exceed the memory limit."""
    started = time.perf_counter()
    try:
        needed = (estimate_nbytes(training) + estimate_nbytes(validation)) / _MB
    except MaterializeError as error:
        _logger.warning("in-memory batches: off, using pytorch-forecasting's dataloaders: %s", error)
        return None
    if needed > data.materialize_max_mb:
        _logger.warning(
            "in-memory batches: off, using pytorch-forecasting's dataloaders: %d samples would hold %.0f MB, "
            "above data.materialize_max_mb = %g",
            len(training) + len(validation),
            needed,
            data.materialize_max_mb,
        )
        return None
    training_store, validation_store = materialize(training), materialize(validation)
    held = (training_store.nbytes + validation_store.nbytes) / _MB
    _logger.info(
        "in-memory batches: %d training and %d validation samples hold %.1f MB (limit %.0f MB), collated in %.1fs",
        len(training_store),
        len(validation_store),
        held,
        data.materialize_max_mb,
        time.perf_counter() - started,
    )
    return (
        InMemoryLoader(training_store, data.batch_size, train=True),
        InMemoryLoader(validation_store, _val_batch_size(data), train=False),
    )


def _val_batch_size(data: DataSection) -> int:
    return data.batch_size * _VALIDATION_BATCH_FACTOR


def load_frame(data: DataSection) -> pd.DataFrame:
    """The raw frame for ``data.source``, with Stallion's tutorial features added for that source."""
    if data.source == "synthetic":
        panel = data.synthetic
        return make_demand_panel(panel.n_agencies, panel.n_skus, panel.n_months, panel.seed)
    if data.source == "stallion":
        return prepare_stallion(_read_stallion(data.path))
    assert data.path is not None  # the config requires it for source = "file"
    return _read_table(Path(data.path), field="data.path")


def prepare_stallion(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the features of pytorch-forecasting's Stallion TFT tutorial to the raw Stallion frame."""
    frame = frame.copy()
    frame["time_idx"] = frame["date"].dt.year * 12 + frame["date"].dt.month
    frame["time_idx"] -= frame["time_idx"].min()
    frame["month"] = frame["date"].dt.month.astype(str).astype("category")
    frame["log_volume"] = np.log(frame["volume"] + 1e-8)
    frame["avg_volume_by_sku"] = frame.groupby(["time_idx", "sku"], observed=True)["volume"].transform("mean")
    frame["avg_volume_by_agency"] = frame.groupby(["time_idx", "agency"], observed=True)["volume"].transform("mean")
    for day in STALLION_SPECIAL_DAYS:
        frame[day] = frame[day].map({0: "-", 1: day}).astype("category")
    return frame


def check_frame(frame: pd.DataFrame, data: DataSection) -> None:
    """Raise :class:`DataError` naming the column when the frame does not fit the column roles."""
    if frame.empty:
        raise DataError("data: the data set is empty")
    missing = [column for column in _role_columns(data) if column not in frame.columns]
    if missing:
        raise DataError(f"data: column(s) {', '.join(missing)} named in the column roles are not in the data")
    target = frame[data.target]
    if not pd.api.types.is_numeric_dtype(target):
        raise DataError(f"data.target: column {data.target!r} must be numeric, got {target.dtype}")
    if target.isna().any() or not np.isfinite(target.to_numpy(dtype=float)).all():
        raise DataError(f"data.target: column {data.target!r} has {int((~np.isfinite(target)).sum())} NaN/inf values")
    if not pd.api.types.is_integer_dtype(frame[data.time_idx]):
        raise DataError(f"data.time_idx: column {data.time_idx!r} must hold integers, got {frame[data.time_idx].dtype}")
    duplicated = frame.duplicated(subset=[*data.group_ids, data.time_idx]).sum()
    if duplicated:
        raise DataError(f"data: {duplicated} duplicate rows for the same group_ids and time_idx")
    longest = int(frame.groupby(data.group_ids, observed=True)[data.time_idx].count().max())
    needed = (data.min_encoder_length or data.max_encoder_length // 2) + data.horizon + data.max_prediction_length
    if longest < needed:
        raise DataError(
            f"data.max_encoder_length: the longest series has {longest} steps, fewer than the "
            f"{needed} a training and a validation window need (encoder + validation_horizon + prediction)"
        )


def _cut(frame: pd.DataFrame, data: DataSection) -> tuple[TimeSeriesDataSet, TimeSeriesDataSet]:
    cutoff = int(frame[data.time_idx].max()) - data.horizon
    try:
        training = TimeSeriesDataSet(
            frame[frame[data.time_idx] <= cutoff],
            time_idx=data.time_idx,
            target=data.target,
            group_ids=list(data.group_ids),
            min_encoder_length=data.min_encoder_length or data.max_encoder_length // 2,
            max_encoder_length=data.max_encoder_length,
            min_prediction_length=1,
            max_prediction_length=data.max_prediction_length,
            static_categoricals=list(data.static_categoricals),
            static_reals=list(data.static_reals),
            time_varying_known_categoricals=list(data.time_varying_known_categoricals),
            time_varying_known_reals=list(data.time_varying_known_reals),
            time_varying_unknown_categoricals=list(data.time_varying_unknown_categoricals),
            time_varying_unknown_reals=list(data.time_varying_unknown_reals),
            variable_groups={k: list(v) for k, v in data.variable_groups.items()},
            target_normalizer=_normalizer(data),
            add_relative_time_idx=True,
            add_target_scales=True,
            add_encoder_length=True,
        )
        if data.horizon == data.max_prediction_length:
            validation = TimeSeriesDataSet.from_dataset(training, frame, predict=True, stop_randomization=True)
        else:
            validation = TimeSeriesDataSet.from_dataset(
                training, frame, min_prediction_idx=cutoff + 1, stop_randomization=True
            )
    except (AssertionError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"data: cannot build the datasets: {str(error).strip().splitlines()[0]}") from None
    return training, validation


def _normalizer(data: DataSection) -> GroupNormalizer | EncoderNormalizer | TorchNormalizer | str:
    if data.target_normalizer == "group":
        return GroupNormalizer(groups=list(data.group_ids), transformation=data.target_transformation)
    if data.target_normalizer == "encoder":
        return EncoderNormalizer(transformation=data.target_transformation)
    if data.target_normalizer == "none":
        return TorchNormalizer(method="identity", center=False)
    return "auto"


def _role_columns(data: DataSection) -> list[str]:
    columns = [data.time_idx, data.target, *data.group_ids]
    for role in (
        data.static_categoricals,
        data.static_reals,
        data.time_varying_known_categoricals,
        data.time_varying_known_reals,
        data.time_varying_unknown_categoricals,
        data.time_varying_unknown_reals,
    ):
        columns.extend(role)
    grouped = set(data.variable_groups)
    columns = [c for c in columns if c not in grouped]
    columns.extend(c for members in data.variable_groups.values() for c in members)
    return list(dict.fromkeys(columns))


def _read_stallion(path: str | None) -> pd.DataFrame:
    location = path or os.environ.get(STALLION_ENV)
    if location:
        field = "data.path" if path else STALLION_ENV
        return _read_table(Path(location), field=field)
    from pytorch_forecasting.data.examples import get_stallion_data

    return get_stallion_data()


def _read_table(path: Path, field: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{field}: no such data file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
    except Exception as error:  # pandas and pyarrow raise many types for a corrupt file
        raise DataError(f"{field}: cannot read {path}: {error.__class__.__name__}: {error}") from None
    raise DataError(f"{field}: {path} must be a .csv or .parquet file")
