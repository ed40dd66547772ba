"""The LR range test on a real TFT and real Lightning training."""

from __future__ import annotations

import numpy as np
import torch

from tft_hpo.config import config_from_dict
from tft_hpo.data import build_datasets
from tft_hpo.model import build_model
from tft_hpo.range_test import run_range_test
from tft_hpo.search_space import default_architecture

from .conftest import TINY, merge


def _setup(lr_finder: dict | None = None):
    config = config_from_dict(merge(TINY, {"study": {"name": "rt"}, "lr_finder": lr_finder or {}}), "test")
    datasets = build_datasets(config.data)
    architecture = default_architecture(config.search_space)
    model = build_model(datasets.training, architecture, learning_rate=1e-3)
    return config, datasets, architecture, model


def test_sweep_is_exponential_on_training_batches_and_restores_the_model() -> None:
    config, datasets, architecture, model = _setup({"num_training": 20})
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    result = run_range_test(model, datasets.train_loader, datasets.val_loader, config.lr_finder, config.trainer, 0.1)
    assert 5 <= result.steps <= 20
    assert result.lrs[0] == config.lr_finder.min_lr
    ratios = np.diff(np.log(result.lrs))
    assert np.allclose(ratios, ratios[0])  # a geometric sweep
    assert all(np.isfinite(result.losses[:-1]))
    assert result.seconds > 0
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert model.hparams.learning_rate == 1e-3


def test_sweep_stops_once_the_loss_diverges() -> None:
    config, datasets, _, model = _setup({"num_training": 40, "min_lr": 1.0, "max_lr": 1e4, "fallback_lr": 1.0})
    result = run_range_test(model, datasets.train_loader, datasets.val_loader, config.lr_finder, config.trainer, 100.0)
    assert result.stop_reason is not None
    assert result.steps < 40
