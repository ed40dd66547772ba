"""Reading an LR range-test curve: pure functions on the recorded (lr, loss) points, no Lightning.

``steepest``: truncate the curve at its first non-finite loss, smooth it with a centred moving
average (no lag), and return the learning rate where the smoothed loss falls fastest against
log10(lr), looking only before the smoothed minimum. The curve has no answer when fewer than
``MIN_POINTS`` finite losses were recorded or when the smoothed minimum is not at least
``MIN_DESCENT`` (relative) below the start. :func:`choose_lr` then falls back to the configured LR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 5
MIN_DESCENT = 0.02


@dataclass(frozen=True)
class Suggestion:
    """A heuristic's answer: an LR, or ``None`` with the reason there is none."""

    lr: float | None
    reason: str | None = None


@dataclass(frozen=True)
class LRChoice:
    """The learning rate a trial starts from and where it came from."""

    lr: float
    heuristic: str
    fallback: str | None


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> Suggestion:
    """The LR of steepest descent of the centred-smoothed loss over log10(lr), before its minimum."""
    lr, loss = finite_prefix(lrs, losses)
    if len(loss) < MIN_POINTS:
        return Suggestion(None, f"too few finite losses ({len(loss)} < {MIN_POINTS})")
    smoothed = smooth(loss)
    lowest = int(np.argmin(smoothed))
    descent = (smoothed[0] - smoothed[lowest]) / max(abs(smoothed[0]), 1e-12)
    if lowest + 1 < MIN_POINTS or descent < MIN_DESCENT:
        return Suggestion(None, f"no descent (loss falls {descent:.1%} over {lowest + 1} points)")
    slope = np.gradient(smoothed[: lowest + 1], np.log10(lr[: lowest + 1]))
    return Suggestion(float(lr[int(np.argmin(slope))]))


HEURISTICS = {"steepest": steepest}


def choose_lr(lrs: Sequence[float], losses: Sequence[float], heuristic: str, fallback_lr: float) -> LRChoice:
    """Apply ``heuristic`` to the curve; fall back to ``fallback_lr`` with the reason when it has no answer."""
    suggestion = HEURISTICS[heuristic](lrs, losses)
    if suggestion.lr is None:
        return LRChoice(fallback_lr, heuristic, suggestion.reason)
    return LRChoice(suggestion.lr, heuristic, None)


def finite_prefix(lrs: Sequence[float], losses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The curve up to (not including) its first non-finite loss: where the sweep diverged."""
    lr = np.asarray(lrs, dtype=float)
    loss = np.asarray(losses, dtype=float)
    bad = np.flatnonzero(~np.isfinite(loss))
    end = int(bad[0]) if bad.size else len(loss)
    return lr[:end], loss[:end]


def smooth(loss: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Centred moving average over about ``fraction`` of the points (odd width >= 3), shrunk at the edges."""
    width = max(3, int(len(loss) * fraction) | 1)
    half = width // 2
    cumulative = np.concatenate([[0.0], np.cumsum(loss)])
    index = np.arange(len(loss))
    lo = np.maximum(index - half, 0)
    hi = np.minimum(index + half + 1, len(loss))
    return (cumulative[hi] - cumulative[lo]) / (hi - lo)


def downsample(lrs: Sequence[float], losses: Sequence[float], max_points: int = 100) -> dict[str, list[float]]:
    """At most ``max_points`` evenly spaced points of the curve, as JSON-ready lists (NaN becomes None)."""
    count = len(lrs)
    keep = np.unique(np.linspace(0, count - 1, min(count, max_points)).round().astype(int)) if count else []
    return {
        "lr": [float(lrs[i]) for i in keep],
        "loss": [float(losses[i]) if np.isfinite(losses[i]) else None for i in keep],
    }
