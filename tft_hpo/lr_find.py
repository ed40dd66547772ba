"""One LR range test outside a study (``tft-hpo lr-find``): suggestion, curve CSV and plot PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl

from tft_hpo.config import StudyConfig
from tft_hpo.data import build_datasets
from tft_hpo.lr_heuristics import LRChoice, choose_lr
from tft_hpo.model import build_model
from tft_hpo.plots import save_range_test_plot, write_curve_csv
from tft_hpo.range_test import RangeTestResult, run_range_test
from tft_hpo.search_space import Architecture, default_architecture


@dataclass(frozen=True)
class LRFindReport:
    """The range test's result, the LR chosen from it, and the files written."""

    architecture: Architecture
    result: RangeTestResult
    choice: LRChoice
    csv_path: Path
    plot_path: Path


def lr_find(config: StudyConfig, out_dir: Path) -> LRFindReport:
    """Run one range test on the search space's middle architecture and write its curve and plot."""
    datasets = build_datasets(config.data)
    architecture = default_architecture(config.search_space)
    pl.seed_everything(config.study.seed, verbose=False)
    settings = config.lr_finder
    model = build_model(datasets.training, architecture, learning_rate=settings.fallback_lr)
    result = run_range_test(
        model, datasets.train_loader, datasets.val_loader, settings, config.trainer, architecture.gradient_clip_val
    )
    choice = choose_lr(result.lrs, result.losses, settings.chain, settings.fallback_lr)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "lr_find.csv"
    plot_path = out_dir / "lr_find.png"
    write_curve_csv(result.lrs, result.losses, csv_path)
    title = f"{config.study.name}: {choice.source} -> {choice.lr:.2e}"
    if choice.fallback:
        title += f" (fallback: {choice.fallback})"
    save_range_test_plot(result.lrs, result.losses, choice.lr, plot_path, note=title)
    return LRFindReport(architecture, result, choice, csv_path, plot_path)
