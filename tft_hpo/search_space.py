"""The search space: what the sampler chooses for each trial (everything but the learning rate)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import optuna

from tft_hpo.config import FloatRange, IntRange, SearchSpaceSection


@dataclass(frozen=True)
class Architecture:
    """One trial's TFT architecture and gradient clipping."""

    hidden_size: int
    attention_head_size: int
    hidden_continuous_size: int
    dropout: float
    gradient_clip_val: float

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``TemporalFusionTransformer.from_dataset``."""
        kwargs = asdict(self)
        del kwargs["gradient_clip_val"]
        return kwargs


def suggest_architecture(trial: optuna.Trial, space: SearchSpaceSection) -> Architecture:
    """Ask the sampler for an architecture; ``hidden_continuous_size`` never exceeds ``hidden_size``."""
    hidden_size = _suggest_int(trial, "hidden_size", space.hidden_size)
    continuous = space.hidden_continuous_size
    continuous_high = min(continuous.high, hidden_size)
    return Architecture(
        hidden_size=hidden_size,
        attention_head_size=_suggest_int(trial, "attention_head_size", space.attention_head_size),
        hidden_continuous_size=trial.suggest_int(
            "hidden_continuous_size", min(continuous.low, continuous_high), continuous_high, log=continuous.log
        ),
        dropout=_suggest_float(trial, "dropout", space.dropout),
        gradient_clip_val=_suggest_float(trial, "gradient_clip_val", space.gradient_clip_val),
    )


def default_architecture(space: SearchSpaceSection) -> Architecture:
    """The middle of every range (geometric middle for log ranges): the model `tft-hpo lr-find` tests."""
    hidden_size = round(_middle(space.hidden_size))
    return Architecture(
        hidden_size=hidden_size,
        attention_head_size=round(_middle(space.attention_head_size)),
        hidden_continuous_size=min(round(_middle(space.hidden_continuous_size)), hidden_size),
        dropout=_middle(space.dropout),
        gradient_clip_val=_middle(space.gradient_clip_val),
    )


def _suggest_int(trial: optuna.Trial, name: str, bounds: IntRange) -> int:
    return trial.suggest_int(name, bounds.low, bounds.high, log=bounds.log)


def _suggest_float(trial: optuna.Trial, name: str, bounds: FloatRange) -> float:
    return trial.suggest_float(name, bounds.low, bounds.high, log=bounds.log)


def _middle(bounds: IntRange | FloatRange) -> float:
    if bounds.log:
        return float((bounds.low * bounds.high) ** 0.5)
    return (bounds.low + bounds.high) / 2
