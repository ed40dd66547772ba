"""Every range-test heuristic and the fallback chain, on synthetic curves with a known answer."""

from __future__ import annotations

import math
from typing import get_args

import numpy as np
import pytest
from lightning.pytorch.tuner.lr_finder import _LRFinder

from tft_hpo.config import HeuristicName
from tft_hpo.lr_heuristics import (
    FALLBACK_LR,
    HEURISTICS,
    choose_lr,
    downsample,
    ema_smooth,
    lightning,
    smooth,
    suggest,
)

LRS = np.geomspace(1e-5, 1.0, 100)
#: log10 of each heuristic's answer on :func:`u_curve`: steepest descent at 1e-3, minimum at 1e-1 (/10),
#: the longest descent runs from 1e-5 to 1e-1 (middle 1e-3), the ensemble is the median of the others.
TRUTH = {"steepest": -3.0, "valley": -3.0, "minimum": -2.0, "ensemble": -3.0}
#: Smoothing moves the minimum of this asymmetric (steep-walled) curve a little toward smaller rates.
CLEAN_TOLERANCE = {"steepest": 0.15, "valley": 0.15, "minimum": 0.25, "ensemble": 0.15}
NOISY_TOLERANCE = {"steepest": 0.3, "valley": 0.3, "minimum": 0.45, "ensemble": 0.3}


def u_curve(noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A loss falling along a logistic in log10(lr) (steepest at 1e-3), rising after 1e-1."""
    x = np.log10(LRS)
    fall = 1.0 / (1.0 + np.exp(-(x + 3.0) * 3.0))
    rise = np.where(x > -1, (x + 1) ** 2 * 4, 0.0)
    rng = np.random.default_rng(seed)
    return 2.0 - 1.5 * fall + rise + noise * rng.standard_normal(len(x))


def decades_off(lr: float | None, truth: float) -> float:
    assert lr is not None
    return abs(math.log10(lr) - truth)


def test_config_names_every_heuristic() -> None:
    assert list(get_args(HeuristicName)) == list(HEURISTICS)


@pytest.mark.parametrize("name", TRUTH)
def test_clean_curve_gives_the_known_answer(name: str) -> None:
    assert decades_off(suggest(name, LRS, u_curve()).lr, TRUTH[name]) < CLEAN_TOLERANCE[name]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", TRUTH)
def test_noisy_curve_stays_near_the_known_answer(name: str, seed: int) -> None:
    assert decades_off(suggest(name, LRS, u_curve(noise=0.05, seed=seed)).lr, TRUTH[name]) < NOISY_TOLERANCE[name]


def test_lightning_rule_matches_lightning_on_its_own_smoothed_curve() -> None:
    losses = u_curve(noise=0.05, seed=1)
    reference = _LRFinder(mode="exponential", lr_min=1e-5, lr_max=1.0, num_training=100)
    reference.results = {"lr": list(LRS), "loss": list(ema_smooth(losses))}
    assert lightning(LRS, losses).lr == pytest.approx(reference.suggestion())


def test_lightning_rule_is_biased_toward_small_rates() -> None:
    """Its gradient against the linear lr favours the start of the sweep: far below the steepest point."""
    assert math.log10(suggest("lightning", LRS, u_curve()).lr) < TRUTH["steepest"] - 0.5


@pytest.mark.parametrize("name", HEURISTICS)
def test_non_finite_tail_truncates_the_curve(name: str) -> None:
    losses = u_curve()
    losses[85:] = np.nan
    losses[90] = np.inf
    assert suggest(name, LRS, losses).lr == pytest.approx(suggest(name, LRS, u_curve()).lr, rel=0.3)


@pytest.mark.parametrize("name", HEURISTICS)
def test_negative_losses_give_the_same_answer(name: str) -> None:
    assert suggest(name, LRS, u_curve() - 10.0).lr == pytest.approx(suggest(name, LRS, u_curve()).lr)


@pytest.mark.parametrize(
    "losses, reason",
    [
        (np.full(100, 1.0), "no descent"),
        (np.linspace(1.0, 5.0, 100), "no descent"),
        (1.0 - 0.0001 * np.arange(100), "no descent"),
        (np.array([1.0, 0.9, np.nan, 0.5]), "too few finite losses"),
        (np.array([1.0, 0.5, 0.2]), "too few finite losses"),
        (np.array([np.nan] * 10), "too few finite losses"),
    ],
    ids=["flat", "rising", "shallow", "nan-early", "short", "all-nan"],
)
@pytest.mark.parametrize("name", HEURISTICS)
def test_unusable_curves_have_no_answer_and_the_chain_falls_back(name: str, losses: np.ndarray, reason: str) -> None:
    lrs = LRS[: len(losses)]
    answer = suggest(name, lrs, losses)
    assert answer.lr is None and reason in answer.reason
    choice = choose_lr(lrs, losses, [name], fallback_lr=3e-3)
    assert choice.lr == 3e-3 and choice.source == FALLBACK_LR and reason in choice.fallback


def test_chain_records_which_link_answered() -> None:
    lrs, losses = LRS[:11], np.linspace(2.0, 1.0, 11)  # too short for Lightning's 10 skipped points
    choice = choose_lr(lrs, losses, ["lightning", "steepest"], fallback_lr=3e-3)
    assert choice.source == "steepest" and choice.lr in lrs
    assert list(choice.skipped) == ["lightning"] and "Lightning's skips" in choice.fallback
    first = choose_lr(LRS, u_curve(), ["steepest", "valley"], fallback_lr=3e-3)
    assert first.source == "steepest" and first.skipped == {} and first.fallback is None


def test_answer_at_the_edge_of_the_sweep_is_flagged() -> None:
    still_falling = 2.0 - LRS  # steepest (against log10 lr) at the very end of the sweep
    edge = suggest("steepest", LRS, still_falling)
    assert edge.lr is not None and edge.at_edge
    assert not suggest("steepest", LRS, u_curve()).at_edge


def test_ensemble_is_the_geometric_median() -> None:
    answers = [suggest(name, LRS, u_curve()).lr for name in ("steepest", "valley", "minimum", "lightning")]
    assert suggest("ensemble", LRS, u_curve()).lr == pytest.approx(10 ** np.median(np.log10(answers)))


def test_smoothing_is_centred_without_lag() -> None:
    step = np.r_[np.ones(50), np.zeros(50)]
    smoothed = smooth(step)
    assert smoothed[49] > 0.5 > smoothed[50]  # the edge stays where it is
    assert ema_smooth(step)[55] > 0.5  # Lightning's running average lags it


def test_downsample_keeps_at_most_100_points_with_both_ends() -> None:
    curve = downsample(list(np.geomspace(1e-6, 1, 250)), [1.0] * 249 + [float("nan")])
    assert len(curve["lr"]) == len(curve["loss"]) == 100
    assert curve["lr"][0] == pytest.approx(1e-6) and curve["lr"][-1] == pytest.approx(1.0)
    assert curve["loss"][-1] is None
