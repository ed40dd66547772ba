"""Building a Temporal Fusion Transformer for one architecture."""

from __future__ import annotations

from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
from pytorch_forecasting.metrics import QuantileLoss
from torch import nn

from tft_hpo.search_space import Architecture


def build_model(
    training: TimeSeriesDataSet, architecture: Architecture, learning_rate: float
) -> TemporalFusionTransformer:
    """A fresh TFT for ``training`` with its own QuantileLoss (never shared between trials).

    Only the loss is computed: TFT's default ``logging_metrics`` (SMAPE, MAE, RMSE, MAPE on every
    validation batch) and its prediction and interpretation logging (``log_interval``) feed no logger
    in a trial, so they are switched off.
    """
    return TemporalFusionTransformer.from_dataset(
        training,
        learning_rate=learning_rate,
        loss=QuantileLoss(),
        logging_metrics=nn.ModuleList([]),
        log_interval=-1,
        **architecture.model_kwargs(),
    )
