"""The cross-trial range-test cache: a curve recorded by any earlier trial of the same study is reused.

A range test's curve depends on the model's size, the batches and the sweep, not on the trial. The
cache key is a hash of exactly those: the architecture's cache cell (the sizes that move the answer, on
a log2 grid, see :data:`CELL_OCTAVES`), the data fingerprint (data settings and contents, batch size
included), the precision and every ``lr_finder`` setting that changes the curve or its reading. The
cache lives in the study's storage: each trial's ``lr_finder`` user attr carries its key,
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


#: The parameters that move the range test's answer, each with its cache cell's width in octaves.
#: Measured by ``scripts/bench_cache_key.py`` (README, "The cache"): the answer falls about 0.2 decade
#: per octave of ``hidden_size`` (half-octave cells keep that within the seed-to-seed spread of
#: 0.13-0.36 decade) and moves with ``hidden_continuous_size`` on Stallion only (one-octave cells);
#: ``attention_head_size`` moves it by less than re-testing does across its whole range, and ``dropout``
#: and ``gradient_clip_val`` not at all (Adam undoes a rescaled gradient), so they are not in the key.
CELL_OCTAVES = {"hidden_size": 0.5, "hidden_continuous_size": 1.0}


def cache_cell(architecture: Architecture) -> dict[str, int]:
    """The cache cell of ``architecture``: each keyed size's index on its log2 grid."""
    return {name: round(math.log2(getattr(architecture, name)) / width) for name, width in CELL_OCTAVES.items()}


def cache_key(architecture: Architecture, fingerprint: str, precision: str, settings: LRFinderSection) -> str:
    """The key of the range test this trial would run: its cache cell, the data fingerprint (batch size
    included), the precision and the sweep settings."""
    sweep = {k: v for k, v in settings.model_dump(mode="json").items() if k not in _NOT_IN_KEY}
    sweep["chain"] = settings.chain
    text = json.dumps(
        {"cell": cache_cell(architecture), "data": fingerprint, "precision": precision, "sweep": sweep}, sort_keys=True
    )
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
