"""In-memory batches against pytorch-forecasting's own dataloaders, tensor for tensor."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from tft_hpo.batches import InMemoryLoader, materialize
from tft_hpo.config import DataSection, config_from_dict, search_relevant_differences
from tft_hpo.data import build_datasets
from tft_hpo.runner import run_study

from .conftest import TINY, merge

# Short series and a wide encoder range: batches mix encoder and decoder lengths, so padding is exercised.
DATA = merge(TINY["data"], {"min_encoder_length": 4, "batch_size": 16})


def _assert_same_batch(ours: tuple, theirs: tuple) -> None:
    (x, (target, weight)), (x_ref, (target_ref, weight_ref)) = ours, theirs
    assert list(x) == list(x_ref)
    for name, tensor in x.items():
        assert tensor.dtype == x_ref[name].dtype and tensor.shape == x_ref[name].shape, name
        assert torch.equal(tensor, x_ref[name]), name
    assert torch.equal(target, target_ref) and target.dtype == target_ref.dtype
    assert weight is None and weight_ref is None


def _samples(batches: list[tuple]) -> Counter:
    """Each sample of ``batches`` as a hashable record of all its values, counted."""
    records: Counter = Counter()
    for x, _ in batches:
        for row in range(len(x["encoder_lengths"])):
            records[tuple((name, tuple(tensor[row].flatten().tolist())) for name, tensor in x.items())] += 1
    return records


def test_validation_batches_equal_the_dataloaders_in_order() -> None:
    datasets = build_datasets(DataSection.model_validate(DATA))
    ours = InMemoryLoader(materialize(datasets.validation), batch_size=3, train=False)
    theirs = datasets.validation.to_dataloader(train=False, batch_size=3, num_workers=0)
    assert len(ours) == len(theirs) == 2  # 4 series: a full batch, then one sample
    for mine, reference in zip(ours, theirs, strict=True):
        _assert_same_batch(mine, reference)


def test_training_epochs_draw_the_dataloaders_samples_and_batches() -> None:
    datasets = build_datasets(DataSection.model_validate(DATA))
    assert isinstance(datasets.train_loader, InMemoryLoader)
    theirs = datasets.training.to_dataloader(train=True, batch_size=16, num_workers=0)
    assert len(datasets.train_loader) == len(theirs) == len(datasets.training) // 16  # the last partial batch dropped
    torch.manual_seed(3)
    epochs = [list(datasets.train_loader) for _ in range(2)]
    torch.manual_seed(3)
    reference = [list(theirs) for _ in range(2)]
    assert all(len(x["encoder_lengths"]) == 16 for epoch in epochs for x, _ in epoch)
    assert any((x["encoder_lengths"] < 12).any() for x, _ in epochs[0])
    assert any((x["decoder_lengths"] < 3).any() for x, _ in epochs[0])
    # One epoch draws the same samples as the dataset's loader; the next one reshuffles them.
    everything = _samples(list(datasets.training.to_dataloader(train=False, batch_size=1000, num_workers=0)))
    assert _samples(epochs[0]) == _samples(reference[0]) and _samples(epochs[0]) <= everything
    assert not torch.equal(epochs[0][0][0]["groups"], epochs[1][0][0]["groups"])
    # The same global seed gives the same batches in the same order, from memory or not.
    for mine, theirs_batch in zip(epochs[0] + epochs[1], reference[0] + reference[1], strict=True):
        _assert_same_batch(mine, theirs_batch)


def test_above_the_limit_or_switched_off_it_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tft_hpo"):
        datasets = build_datasets(DataSection.model_validate({**DATA, "materialize_max_mb": 0.001}))
    assert isinstance(datasets.train_loader, DataLoader) and isinstance(datasets.val_loader, DataLoader)
    assert "in-memory batches: off" in caplog.text and "above data.materialize_max_mb = 0.001" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tft_hpo"):
        held = build_datasets(DataSection.model_validate({**DATA, "batch_size": 8}))
    assert isinstance(held.val_loader, InMemoryLoader)
    assert "in-memory batches:" in caplog.text and "MB (limit 2048 MB)" in caplog.text
    off = build_datasets(DataSection.model_validate({**DATA, "materialize": False}))
    assert isinstance(off.train_loader, DataLoader) and off.fingerprint == datasets.fingerprint


def test_a_trial_gives_the_same_value_from_memory_or_not(workdir: Path) -> None:
    values = []
    for name, materialized in (("mem", True), ("disk", False)):
        config = config_from_dict(
            merge(TINY, {"study": {"name": name, "n_trials": 1}, "data": {**DATA, "materialize": materialized}}), name
        )
        summary = run_study(config)
        assert summary.best is not None
        values.append((summary.best.value, summary.best.user_attrs["lr_finder"]["suggestion"]))
    assert values[0] == values[1]
    # How batches are served is no setting of the search: a stored study accepts either.
    stored, current = (
        config_from_dict(merge(TINY, {"study": {"name": "s"}, "data": {"materialize": on}}), "t").to_dict()
        for on in (True, False)
    )
    assert search_relevant_differences(stored, current) == []
