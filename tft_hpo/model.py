"""Building a Temporal Fusion Transformer for one architecture."""

from __future__ import annotations

from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
from pytorch_forecasting.metrics import QuantileLoss

from tft_hpo.search_space import Architecture


def build_model(
    training: TimeSeriesDataSet, architecture: Architecture, learning_rate: float
) -> TemporalFusionTransformer:
    """A fresh TFT for ``training`` with its own QuantileLoss (never shared between trials)."""
    return TemporalFusionTransformer.from_dataset(
        training,
        learning_rate=learning_rate,
        loss=QuantileLoss(),
        log_interval=-1,
        **architecture.model_kwargs(),
    )
