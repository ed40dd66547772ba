"""The cross-trial range-test cache: a curve recorded by any earlier trial of the same study is reused.

A range test's curve depends on the model's shape, the gradient clipping, the batches and the sweep,
not on the trial. The cache key is a hash of exactly those: the architecture (sizes and continuous
values rounded to a grid, see :func:`cache_key`), the data fingerprint (data settings and contents,
batch size included), the precision and every ``lr_finder`` setting that changes the curve or its
reading. The cache lives in the study's storage: each trial's ``lr_finder`` user attr carries its key,
so a hit works across processes, machines and resumes with nothing else to keep.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import optuna

from tft_hpo.config import LRFinderSection
from tft_hpo.search_space import Architecture

CACHE_KEY = "cache_key"
CACHED_FROM = "cached_from"
_LR_FINDER_ATTR = "lr_finder"
#: ``lr_finder`` settings that do not change the curve or the answer read from it.
_NOT_IN_KEY = {"mode", "window", "cache"}


def cache_key(architecture: Architecture, fingerprint: str, precision: str, settings: LRFinderSection) -> str:
    """The key of the range test this trial would run.

    Architectures on the same grid point share a key: hidden sizes on a half-octave (log2) grid,
    dropout to 0.05, gradient clipping on a quarter-decade (log10) grid. Within one cell the range
    test's answer moves about as much as between two seeds of one model (the README's evaluation).
    """
    shape = {
        "hidden_size": _log_grid(architecture.hidden_size, base=2, per_unit=2),
        "hidden_continuous_size": _log_grid(architecture.hidden_continuous_size, base=2, per_unit=2),
        "attention_head_size": architecture.attention_head_size,
        "dropout": round(architecture.dropout * 20) / 20,
        "gradient_clip_val": _log_grid(architecture.gradient_clip_val, base=10, per_unit=4),
    }
    sweep = {k: v for k, v in settings.model_dump(mode="json").items() if k not in _NOT_IN_KEY}
    sweep["chain"] = settings.chain
    text = json.dumps({"shape": shape, "data": fingerprint, "precision": precision, "sweep": sweep}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_cached(study: optuna.Study, key: str, trial_number: int) -> tuple[int, dict[str, Any]] | None:
    """The earliest other trial of ``study`` that ran a range test with ``key``: its number and record."""
    for trial in study.get_trials(deepcopy=False):
        record = trial.user_attrs.get(_LR_FINDER_ATTR)
        if (
            trial.number != trial_number
            and isinstance(record, dict)
            and record.get(CACHE_KEY) == key
            and record.get(CACHED_FROM) is None
        ):
            return trial.number, record
    return None


def cache_savings(trials: Sequence[optuna.trial.FrozenTrial]) -> tuple[int, int, float]:
    """Across ``trials``: range tests reused from the cache, range tests in all, and the seconds reuse saved
    (each reused test's origin took that long)."""
    records = {t.number: t.user_attrs.get(_LR_FINDER_ATTR) for t in trials}
    records = {number: record for number, record in records.items() if isinstance(record, dict)}
    hits = [record[CACHED_FROM] for record in records.values() if record.get(CACHED_FROM) is not None]
    saved = sum(float(records[origin].get("seconds", 0.0)) for origin in hits if origin in records)
    return len(hits), len(records), saved


def _log_grid(value: float, base: float, per_unit: int) -> float:
    return round(math.log(value, base) * per_unit) / per_unit
