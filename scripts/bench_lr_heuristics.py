"""How good is each LR range-test heuristic? Regret against the best LR of a grid, on real training.

For each dataset (Stallion and the synthetic quickstart panel) and each of ``--architectures`` TFTs drawn
from the study file's search space with a fixed seed:

1. train at ``--grid`` log-spaced learning rates (the study file's epochs and batches per trial, one
   fixed training seed) to find the best val_loss reachable;
2. run the range test with ``--seeds`` seeds (``--steps`` steps) and train at every heuristic's answer
   (and at pytorch-forecasting's rule, for comparison); regret = val_loss at the answer / the best
   val_loss of every LR trained for that architecture;
3. make the heuristic with the lowest median regret (ties: lowest worst regret) the default, then run it
   with fewer steps (``--step-counts``) and pick the fewest steps whose median regret stays within 2%
   of the ``--steps`` result;
4. check the range-test cache's grid: the default heuristic's answer for a second architecture in the
   same cache cell, against the spread of its answers across seeds.

A heuristic with no answer leads to the study's ``fallback_lr`` (what a trial would train at with a
chain of that heuristic alone); the table counts how often. Learning rates are trained once per
architecture on a 1/20-decade grid: answers closer than that share a training run.

The last line printed is one JSON object (see the README). Run:
``python scripts/bench_lr_heuristics.py`` (Stallion from ../shared/data/stallion.parquet or $TFT_HPO_STALLION).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import lightning.pytorch as pl
import numpy as np
import optuna
from _stallion import ROOT, stallion_path
from statsmodels.nonparametric.smoothers_lowess import lowess

from tft_hpo.config import StudyConfig, load_study_file
from tft_hpo.data import Datasets, build_datasets
from tft_hpo.finite import NonFiniteLoss
from tft_hpo.lr_heuristics import HEURISTICS, ema_smooth, suggest
from tft_hpo.model import build_model
from tft_hpo.output import configure_output, install_warning_filters
from tft_hpo.range_test import run_range_test
from tft_hpo.range_test_cache import cache_key
from tft_hpo.search_space import Architecture, suggest_architecture
from tft_hpo.training import EpochRecorder, fit

STUDY_FILES = {"stallion": ROOT / "studies" / "stallion_quick.toml", "synthetic": ROOT / "studies" / "quickstart.toml"}
PF_RULE = "pytorch_forecasting"
RULES = [*HEURISTICS, PF_RULE]
TRAIN_SEED = 20_26
LR_RESOLUTION = 20  # trained learning rates per decade


def pytorch_forecasting_rule(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """pytorch-forecasting's optimize_hyperparameters rule, on the curve Lightning would have recorded.

    Lightning records the running average of the loss; pytorch-forecasting smooths it again with
    lowess (frac 0.1, on the linear lr), skips 10 points and the last, and takes the steepest step
    (gradient against the index); with 3 finite points or fewer, the lr of the lowest loss.
    """
    recorded = ema_smooth(np.asarray(losses, dtype=float))
    lr = np.asarray(lrs, dtype=float)
    finite = np.isfinite(recorded)
    if finite.sum() <= 3:
        return float(lr[int(np.nanargmin(np.where(finite, recorded, np.inf)))])
    lr_smoothed, loss_smoothed = lowess(recorded[finite], lr[finite], frac=0.1)[min(finite.sum() - 3, 10) : -1].T
    return float(lr_smoothed[int(np.argmin(np.gradient(loss_smoothed)))])


@dataclass
class _Bench:
    """One dataset's architectures, trained learning rates and range-test curves."""

    name: str
    config: StudyConfig
    datasets: Datasets
    architectures: list[Architecture]
    trained: dict[tuple[int, int], float] = field(default_factory=dict)
    curves: dict[tuple[int, int, int], tuple[list[float], list[float]]] = field(default_factory=dict)
    train_seconds: list[float] = field(default_factory=list)
    sweep_seconds: dict[int, list[float]] = field(default_factory=dict)

    def val_loss(self, arch: int, lr: float) -> float:
        """Best val_loss of a training run at ``lr`` (rounded to the LR grid), trained once."""
        key = (arch, round(math.log10(lr) * LR_RESOLUTION))
        if key not in self.trained:
            started = time.perf_counter()
            self.trained[key] = _train(
                self.config, self.datasets, self.architectures[arch], 10 ** (key[1] / LR_RESOLUTION)
            )
            self.train_seconds.append(time.perf_counter() - started)
        return self.trained[key]

    def best(self, arch: int) -> tuple[float, float]:
        """The lowest val_loss trained for ``arch`` and its learning rate."""
        value, key = min((v, k) for k, v in self.trained.items() if k[0] == arch)
        return value, 10 ** (key[1] / LR_RESOLUTION)

    def curve(self, arch: int, seed: int, steps: int) -> tuple[list[float], list[float]]:
        """The range-test curve of ``arch`` with ``seed`` and ``steps`` steps (recorded once)."""
        if (arch, seed, steps) not in self.curves:
            self.curves[arch, seed, steps] = _sweep(self, self.architectures[arch], seed, steps)
        return self.curves[arch, seed, steps]


def _train(config: StudyConfig, datasets: Datasets, architecture: Architecture, lr: float) -> float:
    pl.seed_everything(TRAIN_SEED, verbose=False)
    model = build_model(datasets.training, architecture, learning_rate=lr)
    recorder = EpochRecorder()
    try:
        fit(model, datasets, config.trainer, architecture.gradient_clip_val, recorder)
    except NonFiniteLoss:
        return math.inf
    return min(recorder.values)


def _sweep(bench: _Bench, architecture: Architecture, seed: int, steps: int) -> tuple[list[float], list[float]]:
    pl.seed_everything(seed, verbose=False)
    settings = bench.config.lr_finder.model_copy(update={"num_training": steps})
    model = build_model(bench.datasets.training, architecture, learning_rate=settings.fallback_lr)
    result = run_range_test(
        model,
        bench.datasets.train_loader,
        bench.datasets.val_loader,
        settings,
        bench.config.trainer,
        architecture.gradient_clip_val,
    )
    bench.sweep_seconds.setdefault(steps, []).append(result.seconds)
    return result.lrs, result.losses


def _answer(rule: str, lrs: list[float], losses: list[float]) -> float | None:
    if rule == PF_RULE:
        return pytorch_forecasting_rule(lrs, losses)
    return suggest(rule, lrs, losses).lr


def _load(name: str, args: argparse.Namespace) -> _Bench:
    config = load_study_file(STUDY_FILES[name])
    overrides: dict[str, object] = {"accelerator": "cpu"}
    if args.max_epochs:
        overrides["max_epochs"] = args.max_epochs
    if args.limit_train_batches:
        overrides["limit_train_batches"] = args.limit_train_batches
    data = config.data
    if name == "stallion":
        data = data.model_copy(update={"path": str(stallion_path())})
    config = config.model_copy(update={"trainer": config.trainer.model_copy(update=overrides), "data": data})
    sampler = optuna.samplers.RandomSampler(seed=args.arch_seed)
    study = optuna.create_study(sampler=sampler)
    architectures = [suggest_architecture(study.ask(), config.search_space) for _ in range(args.architectures)]
    return _Bench(name, config, build_datasets(config.data), architectures)


def _regrets(bench: _Bench, rule: str, seeds: Sequence[int], steps: int) -> dict[str, object]:
    regrets, distances, spreads, missing = [], [], [], 0
    for arch in range(len(bench.architectures)):
        answers = [_answer(rule, *bench.curve(arch, seed, steps)) for seed in seeds]
        missing += sum(answer is None for answer in answers)
        lrs = [bench.config.lr_finder.fallback_lr if answer is None else answer for answer in answers]
        values = [bench.val_loss(arch, lr) for lr in lrs]
        best, best_lr = bench.best(arch)
        regrets += [value / best for value in values]
        distances += [abs(math.log10(lr / best_lr)) for lr in lrs]
        spreads.append(float(np.std(np.log10(lrs))))
    return {
        "median_regret": round(float(np.median(regrets)), 4),
        "worst_regret": round(float(np.max(regrets)), 4),
        "median_log10_distance": round(float(np.median(distances)), 3),
        "no_answer_rate": round(missing / len(regrets), 3),
        "seed_spread_decades": round(float(np.median(spreads)), 3),
    }


def _cell_neighbour(architecture: Architecture, key: str, bench: _Bench) -> Architecture:
    """Another architecture in the same range-test cache cell: continuous values at the cell's centre,
    hidden sizes moved by one where that stays in the cell."""
    centre = replace(
        architecture,
        dropout=round(architecture.dropout * 20) / 20,
        gradient_clip_val=10 ** (round(math.log10(architecture.gradient_clip_val) * 4) / 4),
    )
    for size in ("hidden_size", "hidden_continuous_size"):
        for step in (1, -1):
            moved = replace(centre, **{size: getattr(centre, size) + step})
            if moved.hidden_continuous_size <= moved.hidden_size and _key(bench, moved) == key:
                centre = moved
                break
    return centre


def _key(bench: _Bench, architecture: Architecture) -> str:
    return cache_key(architecture, bench.datasets.fingerprint, bench.config.trainer.precision, bench.config.lr_finder)


def _cache_check(bench: _Bench, rule: str, seeds: Sequence[int], steps: int) -> dict[str, float]:
    """Median |log10| gap between a cell's two architectures vs the median spread across seeds."""
    gaps, spreads = [], []
    for arch, architecture in enumerate(bench.architectures):
        key = _key(bench, architecture)
        neighbour = _cell_neighbour(architecture, key, bench)
        if _key(bench, neighbour) != key:
            raise RuntimeError(f"{neighbour} left the cache cell of {architecture}")
        own = [_answer(rule, *bench.curve(arch, seed, steps)) for seed in seeds]
        other = [_answer(rule, *_sweep(bench, neighbour, seed, steps)) for seed in seeds]
        own_logs = [math.log10(v) for v in own if v]
        other_logs = [math.log10(v) for v in other if v]
        if own_logs and other_logs:
            gaps.append(abs(np.median(own_logs) - np.median(other_logs)))
            spreads.append(float(np.std(own_logs)))
    return {
        "median_cell_gap_decades": round(float(np.median(gaps)), 3),
        "median_seed_spread_decades": round(float(np.median(spreads)), 3),
    }


def _summary_row(row: dict[str, object]) -> dict[str, object]:
    return {key: row[key] for key in ("median_regret", "worst_regret", "no_answer_rate")}


def _score(results: dict[str, dict[str, dict[str, Any]]], rule: str) -> tuple[float, float]:
    """Median regret on the worse dataset, then worst regret: lower is better."""
    return (
        max(rows[rule]["median_regret"] for rows in results.values()),
        max(rows[rule]["worst_regret"] for rows in results.values()),
    )


def _summary_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("median_regret", "worst_regret", "no_answer_rate")}


def _print_table(title: str, rows: dict[str, dict[str, object]]) -> None:
    print(f"\n{title}")
    print(f"{'heuristic':<20} {'median':>7} {'worst':>7} {'|log10|':>8} {'no-ans':>7} {'seed sd':>8}")
    for name, row in rows.items():
        print(
            f"{name:<20} {row['median_regret']:>7.3f} {row['worst_regret']:>7.3f} "
            f"{row['median_log10_distance']:>8.2f} {row['no_answer_rate']:>7.0%} {row['seed_spread_decades']:>8.2f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(STUDY_FILES), default=list(STUDY_FILES))
    parser.add_argument("--architectures", type=int, default=6)
    parser.add_argument("--arch-seed", type=int, default=0)
    parser.add_argument("--grid", type=int, default=8, help="learning rates from 1e-4 to 10**-0.5")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--step-counts", type=int, nargs="*", default=[20, 40])
    parser.add_argument("--max-epochs", type=int, help="override the study files' trainer.max_epochs")
    parser.add_argument("--limit-train-batches", type=int, help="override trainer.limit_train_batches")
    args = parser.parse_args(argv)
    configure_output(verbose=False)
    install_warning_filters()
    started = time.perf_counter()
    seeds = list(range(args.seeds))
    grid = np.geomspace(1e-4, 10**-0.5, args.grid)

    benches = [_load(name, args) for name in args.datasets]
    for bench in benches:
        trainer = bench.config.trainer
        print(
            f"{bench.name}: {len(bench.architectures)} architectures, grid of {args.grid} lrs, {args.seeds} seeds, "
            f"{args.steps}-step range tests, {trainer.max_epochs} epochs x {trainer.limit_train_batches} batches",
            flush=True,
        )
        for arch in range(len(bench.architectures)):
            for lr in grid:
                bench.val_loss(arch, lr)
            print(f"  architecture {arch}: {bench.architectures[arch]}, best {bench.best(arch)}", flush=True)

    counts = sorted({*args.step_counts, args.steps})

    def trained() -> int:
        return sum(len(bench.trained) for bench in benches)

    # Regret is against the best val_loss of every LR trained for an architecture, so the tables are
    # computed again until a pass trains nothing new: every figure printed uses the same final best.
    while True:
        before = trained()
        results = {b.name: {rule: _regrets(b, rule, seeds, args.steps) for rule in RULES} for b in benches}
        default = min(HEURISTICS, key=lambda rule: _score(results, rule))
        by_steps = {b.name: {steps: _regrets(b, default, seeds, steps) for steps in counts} for b in benches}
        if trained() == before:
            break
    for name, rows in results.items():
        _print_table(f"{name} ({args.steps}-step range tests)", rows)
    print(f"\ndefault heuristic: {default} (lowest median regret on the worse dataset, then lowest worst regret)")
    for name, rows in by_steps.items():
        _print_table(f"{name}: {default} by range-test steps", {f"{steps} steps": row for steps, row in rows.items()})
    chosen_steps = min(
        steps
        for steps in counts
        if all(rows[steps]["median_regret"] <= rows[args.steps]["median_regret"] * 1.02 for rows in by_steps.values())
    )
    print(f"\nfewest steps within 2% of the {args.steps}-step median regret on every dataset: {chosen_steps}")

    cache = {bench.name: _cache_check(bench, default, seeds, chosen_steps) for bench in benches}
    print(f"cache cell check ({default}, {chosen_steps} steps): {cache}")
    for bench in benches:
        sweeps = {s: round(float(np.median(v)), 2) for s, v in sorted(bench.sweep_seconds.items())}
        print(
            f"{bench.name}: {len(bench.trained)} training runs, median {np.median(bench.train_seconds):.1f}s; "
            f"median range-test seconds by steps {sweeps}"
        )
    print(f"total {time.perf_counter() - started:.0f}s")
    summary = {
        "default": default,
        "num_training": chosen_steps,
        **{name: {rule: _summary_row(row) for rule, row in rows.items()} for name, rows in results.items()},
        "regret_by_steps": {
            name: {steps: _summary_row(row) for steps, row in rows.items()} for name, rows in by_steps.items()
        },
        "cache_cell": cache,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
