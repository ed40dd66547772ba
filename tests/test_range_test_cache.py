"""The cross-trial range-test cache: its key, and real studies that reuse curves across trials and runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from tft_hpo.cli import main
from tft_hpo.config import LRFinderSection
from tft_hpo.range_test_cache import cache_cell, cache_key
from tft_hpo.search_space import Architecture

ARCH = Architecture(hidden_size=16, attention_head_size=2, hidden_continuous_size=8, dropout=0.2, gradient_clip_val=0.1)
#: One cache cell: every trial of such a study has the same key, whatever its heads, dropout and clipping.
ONE_CELL = {
    "hidden_size": {"low": 8, "high": 9},
    "hidden_continuous_size": {"low": 4, "high": 5},
    "attention_head_size": {"low": 1, "high": 4},
    "dropout": {"low": 0.1, "high": 0.3},
    "gradient_clip_val": {"low": 0.01, "high": 1.0, "log": True},
}


def _key(architecture: Architecture = ARCH, fingerprint: str = "f", **settings: object) -> str:
    return cache_key(architecture, fingerprint, "32-true", LRFinderSection(**settings))


def test_key_ignores_what_does_not_change_the_curve() -> None:
    assert _key() == _key(mode="suggest", window=4.0, cache=False)
    # Measured (scripts/bench_cache_key.py): heads, dropout and clipping do not move the answer beyond
    # re-testing, and sizes within one cell (half an octave of hidden_size, an octave of continuous) neither.
    assert _key() == _key(replace(ARCH, attention_head_size=4, dropout=0.3, gradient_clip_val=1.0))
    assert _key() == _key(replace(ARCH, hidden_size=18, hidden_continuous_size=10))


@pytest.mark.parametrize(
    "other",
    [
        _key(replace(ARCH, hidden_size=23)),
        _key(replace(ARCH, hidden_continuous_size=12)),
        _key(fingerprint="other data or batch size"),
        _key(num_training=30),
        _key(min_lr=1e-6),
        _key(heuristic="valley"),
        _key(fallback_lr=1e-2),
    ],
    ids=["hidden", "continuous", "data", "steps", "min_lr", "heuristic", "fallback"],
)
def test_key_changes_with_what_changes_the_curve_or_its_reading(other: str) -> None:
    assert other != _key()


def test_cells_are_half_an_octave_of_hidden_size_and_an_octave_of_continuous_size() -> None:
    assert cache_cell(ARCH) == {"hidden_size": 8, "hidden_continuous_size": 3}
    assert cache_cell(replace(ARCH, hidden_size=19)) == cache_cell(ARCH)
    assert cache_cell(replace(ARCH, hidden_size=20))["hidden_size"] == 9
    assert cache_cell(replace(ARCH, hidden_continuous_size=11))["hidden_continuous_size"] == 3
    assert cache_cell(replace(ARCH, hidden_continuous_size=12))["hidden_continuous_size"] == 4


def _finders(name: str, workdir: Path) -> list[dict]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/studies/{name}.db")
    return [trial.user_attrs["lr_finder"] for trial in study.get_trials()]


def test_trials_of_one_cell_reuse_the_first_curve_across_runs(
    study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = study_file("cached", {"study": {"n_trials": 2}, "search_space": ONE_CELL})
    assert main(["run", str(path)]) == 0
    assert main(["run", str(path), "--n-trials", "3"]) == 0  # a second run: the cache is in the storage
    out = capsys.readouterr().out
    assert "range test cached from trial 0" in out and "range-test cache: 2 of 3 range tests reused" in out
    first, *later = _finders("cached", workdir)
    assert first["cached_from"] is None and first["steps"] == 10
    for finder in later:
        assert finder["cached_from"] == 0 and finder["cache_key"] == first["cache_key"]
        assert finder["suggestion"] == first["suggestion"] and finder["curve"] == first["curve"]
        assert finder["seconds"] < first["seconds"]


def test_the_cache_can_be_turned_off(study_file: Callable[..., Path], workdir: Path) -> None:
    changes = {"study": {"n_trials": 2}, "search_space": ONE_CELL, "lr_finder": {"cache": False}}
    assert main(["run", str(study_file("uncached", changes))]) == 0
    finders = _finders("uncached", workdir)
    assert [finder["cached_from"] for finder in finders] == [None, None]
    assert finders[0]["cache_key"] == finders[1]["cache_key"]
