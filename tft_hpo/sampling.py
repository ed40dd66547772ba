"""Optuna samplers and pruners built from the ``[study]`` section."""

from __future__ import annotations

import optuna

from tft_hpo.config import PrunerConfig, StudyConfig


def build_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded with the study seed."""
    if config.study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=config.study.seed)
    return optuna.samplers.TPESampler(seed=config.study.seed)


def build_pruner(pruner: PrunerConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    """The configured pruner; it sees one step per validation epoch."""
    if pruner.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner.n_startup_trials,
            n_warmup_steps=pruner.n_warmup_steps,
            interval_steps=pruner.interval_steps,
        )
    if pruner.type == "percentile":
        return optuna.pruners.PercentilePruner(
            pruner.percentile,
            n_startup_trials=pruner.n_startup_trials,
            n_warmup_steps=pruner.n_warmup_steps,
            interval_steps=pruner.interval_steps,
        )
    if pruner.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner.min_resource, reduction_factor=pruner.reduction_factor
        )
    if pruner.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_resource, max_resource=max_epochs, reduction_factor=pruner.reduction_factor
        )
    return optuna.pruners.NopPruner()
