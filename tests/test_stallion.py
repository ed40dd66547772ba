"""studies/stallion.toml builds the tutorial's datasets from the shared Stallion data."""

from __future__ import annotations

import pytest

from tft_hpo.config import load_study_file
from tft_hpo.data import STALLION_ENV, build_datasets

from .conftest import REPO, STALLION


@pytest.mark.skipif(not STALLION.is_file(), reason=f"no Stallion data at {STALLION} (set {STALLION_ENV})")
def test_stallion_study_builds_its_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STALLION_ENV, str(STALLION))
    config = load_study_file(REPO / "studies" / "stallion.toml")
    datasets = build_datasets(config.data)
    assert len(datasets.validation) == 350  # one prediction window per agency/sku series
    assert len(datasets.training) > 10_000
    batch, _ = next(iter(datasets.train_loader))
    assert batch["encoder_cont"].shape[0] == 128
    assert batch["encoder_cont"].shape[1] == 36 and batch["decoder_cont"].shape[1] == 6
    parameters = datasets.training.get_parameters()
    assert parameters["variable_groups"]["special_days"][0] == "easter_day"
