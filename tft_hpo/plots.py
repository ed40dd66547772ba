"""Files that show an LR range test: the curve as CSV and a loss-against-LR plot as PNG."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tft_hpo.lr_heuristics import finite_prefix, smooth  # noqa: E402


def write_curve_csv(lrs: Sequence[float], losses: Sequence[float], path: Path) -> None:
    """Write ``step,lr,loss`` rows."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr", "loss"])
        for step, (lr, loss) in enumerate(zip(lrs, losses, strict=True)):
            writer.writerow([step, repr(float(lr)), repr(float(loss))])


def save_range_test_plot(
    lrs: Sequence[float],
    losses: Sequence[float],
    suggestion: float,
    path: Path,
    note: str | None = None,
    used_lr: float | None = None,
    suggestion_label: str = "suggestion",
) -> None:
    """Loss against LR on a log axis, with the smoothed curve, the suggested LR and (if given) the LR used marked."""
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    axes.plot(lrs, losses, color="0.6", linewidth=1, label="loss")
    finite_lrs, finite_losses = finite_prefix(lrs, losses)
    if len(finite_losses) >= 3:
        axes.plot(finite_lrs, smooth(finite_losses), color="tab:blue", linewidth=2, label="smoothed")
    axes.axvline(suggestion, color="tab:red", linestyle="--", label=f"{suggestion_label} {suggestion:.2e}")
    if used_lr is not None:
        axes.axvline(used_lr, color="tab:green", linestyle="-", label=f"trained at {used_lr:.2e}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    finite = np.asarray(losses, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size:
        low, high = float(finite.min()), float(np.percentile(finite, 95))
        pad = 0.05 * (high - low) or 1e-3
        axes.set_ylim(low - pad, high + 2 * pad)
    axes.set_title(note or "LR range test", fontsize=10)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
