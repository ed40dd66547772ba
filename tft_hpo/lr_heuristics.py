"""Reading an LR range-test curve: pure functions on the recorded raw (lr, loss) points, no Lightning.

Every heuristic takes the curve as recorded (one raw training loss per step, learning rates growing
exponentially) and returns a :class:`Suggestion`: an LR, or ``None`` with the reason there is none.
They share the same guards: the curve is cut at its first non-finite loss (the sweep diverged there),
and a curve with fewer than ``MIN_POINTS`` finite losses, or whose smoothed minimum is not at least
``MIN_DESCENT`` (relative) below its start after at least ``MIN_POINTS`` points, has no answer. An
answer within ``EDGE_FRACTION`` of either end of the sweep (on the log scale) is flagged ``at_edge``.

- ``steepest``: centred moving average (no lag), steepest descent of the loss against log10(lr),
  looked for only before the smoothed minimum.
- ``valley``: the middle (in steps, i.e. the geometric middle in lr) of the longest descending
  stretch before the smoothed minimum: fastai's rule.
- ``minimum``: the LR at the smoothed minimum divided by 10 (Smith's rule of thumb).
- ``lightning``: Lightning's ``LRFinder.suggestion()``: exponential moving average (beta 0.98, bias
  corrected), skip 10 points at the start and 1 at the end, steepest descent against the *linear* lr.
- ``ensemble``: the geometric median of the other heuristics' answers.

:func:`choose_lr` runs a fallback chain of heuristics and ends at a configured LR, so it always yields
one, and says which link gave it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

MIN_POINTS = 5
MIN_DESCENT = 0.02
EDGE_FRACTION = 0.1
FALLBACK_LR = "fallback_lr"
_LIGHTNING_BETA = 0.98
_LIGHTNING_SKIP_BEGIN = 10
_LIGHTNING_SKIP_END = 1


@dataclass(frozen=True)
class Suggestion:
    """A heuristic's answer: an LR (``at_edge`` when it lies at either end of the sweep), or ``None`` and why."""

    lr: float | None
    reason: str | None = None
    at_edge: bool = False


@dataclass(frozen=True)
class LRChoice:
    """The learning rate a trial starts from: ``source`` is the heuristic that gave it, or ``"fallback_lr"``.

    ``skipped`` maps each heuristic of the chain tried before ``source`` to the reason it had no answer.
    """

    lr: float
    source: str
    skipped: dict[str, str]
    at_edge: bool = False

    @property
    def fallback(self) -> str | None:
        """Why the chain's first heuristics gave no answer (``None`` when the first one answered)."""
        return "; ".join(f"{name}: {reason}" for name, reason in self.skipped.items()) or None


@dataclass(frozen=True)
class _Curve:
    lr: np.ndarray
    loss: np.ndarray
    smoothed: np.ndarray
    lowest: int


def _prepare(lrs: Sequence[float], losses: Sequence[float]) -> _Curve | str:
    """The finite, smoothed curve with its minimum, or the reason it cannot give an answer."""
    lr, loss = finite_prefix(lrs, losses)
    if len(loss) < MIN_POINTS:
        return f"too few finite losses ({len(loss)} < {MIN_POINTS})"
    smoothed = smooth(loss)
    lowest = int(np.argmin(smoothed))
    descent = (smoothed[0] - smoothed[lowest]) / max(abs(smoothed[0]), 1e-12)
    if lowest + 1 < MIN_POINTS or descent < MIN_DESCENT:
        return f"no descent (loss falls {descent:.1%} over {lowest + 1} points)"
    return _Curve(lr, loss, smoothed, lowest)


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> Suggestion:
    """The LR of steepest descent of the centred-smoothed loss over log10(lr), before its minimum."""
    curve = _prepare(lrs, losses)
    if isinstance(curve, str):
        return Suggestion(None, curve)
    head = slice(0, curve.lowest + 1)
    slope = np.gradient(curve.smoothed[head], np.log10(curve.lr[head]))
    return Suggestion(float(curve.lr[int(np.argmin(slope))]))


def valley(lrs: Sequence[float], losses: Sequence[float]) -> Suggestion:
    """The middle of the longest descending stretch of the smoothed loss before its minimum (fastai's rule).

    The stretch is the longest strictly decreasing subsequence ending at the minimum's side, as in
    fastai: short bumps inside a long descent do not break it.
    """
    curve = _prepare(lrs, losses)
    if isinstance(curve, str):
        return Suggestion(None, curve)
    values = curve.smoothed[: curve.lowest + 1]
    length = np.ones(len(values), dtype=int)
    start = np.arange(len(values))
    for i in range(1, len(values)):
        earlier = np.flatnonzero(values[:i] > values[i])
        if earlier.size:
            best = earlier[np.argmax(length[earlier])]
            length[i] = length[best] + 1
            start[i] = start[best]
    end = int(np.argmax(length))
    if length[end] < MIN_POINTS:
        return Suggestion(None, f"no descending stretch of {MIN_POINTS} points (longest: {length[end]})")
    return Suggestion(float(curve.lr[(start[end] + end) // 2]))


def minimum(lrs: Sequence[float], losses: Sequence[float]) -> Suggestion:
    """The LR at the smoothed minimum divided by 10 (Smith's rule of thumb)."""
    curve = _prepare(lrs, losses)
    if isinstance(curve, str):
        return Suggestion(None, curve)
    return Suggestion(float(curve.lr[curve.lowest]) / 10)


def lightning(lrs: Sequence[float], losses: Sequence[float]) -> Suggestion:
    """Lightning's rule on its own smoothed curve: steepest descent against the linear lr, after 10 points."""
    curve = _prepare(lrs, losses)
    if isinstance(curve, str):
        return Suggestion(None, curve)
    ema = ema_smooth(curve.loss)[_LIGHTNING_SKIP_BEGIN:-_LIGHTNING_SKIP_END]
    lr = curve.lr[_LIGHTNING_SKIP_BEGIN:-_LIGHTNING_SKIP_END]
    if len(ema) < 2:
        return Suggestion(None, f"too few points after Lightning's skips ({len(ema)} < 2)")
    return Suggestion(float(lr[int(np.argmin(np.gradient(ema, lr)))]))


def ensemble(lrs: Sequence[float], losses: Sequence[float]) -> Suggestion:
    """The geometric median of the answers of every other heuristic (the median of their log10(lr))."""
    answers = [s.lr for s in (heuristic(lrs, losses) for heuristic in _SINGLE.values()) if s.lr is not None]
    if not answers:
        curve = _prepare(lrs, losses)
        return Suggestion(None, curve if isinstance(curve, str) else "no heuristic had an answer")
    return Suggestion(float(10 ** np.median(np.log10(answers))))


_SINGLE: dict[str, Callable[[Sequence[float], Sequence[float]], Suggestion]] = {
    "steepest": steepest,
    "valley": valley,
    "minimum": minimum,
    "lightning": lightning,
}
#: Every heuristic by name, in the order a default fallback chain tries them.
HEURISTICS: dict[str, Callable[[Sequence[float], Sequence[float]], Suggestion]] = {**_SINGLE, "ensemble": ensemble}


def suggest(name: str, lrs: Sequence[float], losses: Sequence[float]) -> Suggestion:
    """Heuristic ``name``'s answer, flagged ``at_edge`` when it lies at either end of the sweep's lr range."""
    suggestion = HEURISTICS[name](lrs, losses)
    if suggestion.lr is None or len(lrs) < 2:
        return suggestion
    low, high = math.log10(lrs[0]), math.log10(lrs[-1])
    margin = EDGE_FRACTION * (high - low)
    position = math.log10(suggestion.lr)
    return replace(suggestion, at_edge=position <= low + margin or position >= high - margin)


def choose_lr(lrs: Sequence[float], losses: Sequence[float], chain: Sequence[str], fallback_lr: float) -> LRChoice:
    """The first answer along ``chain``; ``fallback_lr`` when no heuristic of the chain has one."""
    skipped: dict[str, str] = {}
    for name in chain:
        suggestion = suggest(name, lrs, losses)
        if suggestion.lr is not None:
            return LRChoice(suggestion.lr, name, skipped, suggestion.at_edge)
        skipped[name] = suggestion.reason or "no answer"
    return LRChoice(fallback_lr, FALLBACK_LR, skipped)


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


def ema_smooth(loss: np.ndarray, beta: float = _LIGHTNING_BETA) -> np.ndarray:
    """Lightning's running average of the loss: exponential, bias-corrected (it lags the curve)."""
    smoothed = np.empty(len(loss))
    average = 0.0
    for step, value in enumerate(loss):
        average = beta * average + (1 - beta) * value
        smoothed[step] = average / (1 - beta ** (step + 1))
    return smoothed


def downsample(lrs: Sequence[float], losses: Sequence[float], max_points: int = 100) -> dict[str, list[float]]:
    """At most ``max_points`` evenly spaced points of the curve, as JSON-ready lists (NaN becomes None)."""
    count = len(lrs)
    keep = np.unique(np.linspace(0, count - 1, min(count, max_points)).round().astype(int)) if count else []
    return {
        "lr": [float(lrs[i]) for i in keep],
        "loss": [float(losses[i]) if np.isfinite(losses[i]) else None for i in keep],
    }
