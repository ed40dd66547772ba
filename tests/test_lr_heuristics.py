"""The steepest-descent heuristic and its fallbacks on synthetic curves with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tft_hpo.lr_heuristics import choose_lr, downsample, smooth, steepest

LRS = np.geomspace(1e-5, 1.0, 100)


def u_curve(noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A loss falling along a logistic in log10(lr) (steepest at 1e-3), rising after 1e-1."""
    x = np.log10(LRS)
    fall = 1.0 / (1.0 + np.exp(-(x + 3.0) * 3.0))
    rise = np.where(x > -1, (x + 1) ** 2 * 4, 0.0)
    rng = np.random.default_rng(seed)
    return 2.0 - 1.5 * fall + rise + noise * rng.standard_normal(len(x))


def test_clean_curve_finds_the_steepest_point() -> None:
    answer = steepest(LRS, u_curve())
    assert answer.lr is not None
    assert abs(math.log10(answer.lr) - (-3.0)) < 0.15


@pytest.mark.parametrize("seed", range(5))
def test_noisy_curve_stays_near_the_steepest_point(seed: int) -> None:
    answer = steepest(LRS, u_curve(noise=0.05, seed=seed))
    assert answer.lr is not None
    assert abs(math.log10(answer.lr) - (-3.0)) < 0.5


def test_non_finite_tail_truncates_the_curve() -> None:
    losses = u_curve()
    losses[80:] = np.nan
    losses[85] = np.inf
    answer = steepest(LRS, losses)
    assert answer.lr is not None and abs(math.log10(answer.lr) + 3.0) < 0.2


@pytest.mark.parametrize(
    "losses, reason",
    [
        (np.full(100, 1.0), "no descent"),
        (np.linspace(1.0, 5.0, 100), "no descent"),
        (np.array([1.0, 0.9, np.nan, 0.5]), "too few finite losses"),
        (np.array([np.nan] * 10), "too few finite losses"),
    ],
    ids=["flat", "rising", "short", "all-nan"],
)
def test_unusable_curves_fall_back_with_a_reason(losses: np.ndarray, reason: str) -> None:
    lrs = LRS[: len(losses)]
    assert steepest(lrs, losses).lr is None
    choice = choose_lr(lrs, losses, "steepest", fallback_lr=3e-3)
    assert choice.lr == 3e-3 and choice.fallback is not None and reason in choice.fallback


def test_negative_losses_are_handled() -> None:
    answer = steepest(LRS, u_curve() - 10.0)
    assert answer.lr is not None and abs(math.log10(answer.lr) + 3.0) < 0.15


def test_smoothing_is_centred_without_lag() -> None:
    step = np.r_[np.ones(50), np.zeros(50)]
    smoothed = smooth(step)
    assert smoothed[49] > 0.5 > smoothed[50]  # the edge stays where it is


def test_downsample_keeps_at_most_100_points_with_both_ends() -> None:
    curve = downsample(list(np.geomspace(1e-6, 1, 250)), [1.0] * 249 + [float("nan")])
    assert len(curve["lr"]) == len(curve["loss"]) == 100
    assert curve["lr"][0] == pytest.approx(1e-6) and curve["lr"][-1] == pytest.approx(1.0)
    assert curve["loss"][-1] is None
