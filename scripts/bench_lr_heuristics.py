"""How good is each LR range-test heuristic? Regret against the best LR of a grid, on real training.

For each dataset (Stallion and the synthetic quickstart panel) and each of ``--architectures`` TFTs drawn
from the study file's search space with a fixed seed:

1. train at ``--grid`` log-spaced learning rates from 1e-4 to 10^-0.5 (the study file's epochs and
   batches per trial) to find the best val_loss reachable; every val_loss is the mean over
   ``--train-seeds`` training seeds, since one run's val_loss moves by 5-10% between neighbouring LRs;
2. run the range test with ``--seeds`` seeds (``--steps`` steps) and train at every heuristic's answer
   (and at pytorch-forecasting's rule, for comparison); regret = val_loss at the answer / the best
   val_loss over the grid (``median*`` and ``worst*``: against the best of every LR trained, answers
   included, which is never below 1);
3. make the heuristic with the lowest median regret (ties: lowest worst regret) the default, then run it
   with fewer steps (``--step-counts``) and pick the fewest steps whose median regret stays within 2%
   of the ``--steps`` result, where every heuristic is measured again;
4. check the range-test cache's cells: the default heuristic's answer for the farthest architecture in
   the same cache cell, against the spread of its answers across seeds, and the regret of training at it.

A heuristic with no answer leads to the study's ``fallback_lr`` (what a trial would train at with a
chain of that heuristic alone); the table counts how often. Learning rates are trained once per
architecture and training seed on a 1/20-decade grid: answers closer than that share training runs.
``--record FILE`` keeps every run and curve, so an interrupted bench resumes and a changed heuristic is
measured again without training what it has already trained.

The last line printed is one JSON object (see the README). Run:
``python scripts/bench_lr_heuristics.py`` (Stallion from ../shared/data/stallion.parquet or $TFT_HPO_STALLION).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import optuna
from _stallion import ROOT, stallion_path
from statsmodels.nonparametric.smoothers_lowess import lowess

from tft_hpo.config import IntRange, StudyConfig, load_study_file
from tft_hpo.data import Datasets, build_datasets
from tft_hpo.finite import NonFiniteLoss
from tft_hpo.lr_heuristics import HEURISTICS, ema_smooth, suggest
from tft_hpo.model import build_model
from tft_hpo.output import configure_output, install_warning_filters
from tft_hpo.range_test import RangeTestResult, run_range_test
from tft_hpo.range_test_cache import cache_cell
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
    grid: list[int] = field(default_factory=list)
    train_seeds: int = 1
    record: Path | None = None

    def setup(self) -> dict[str, Any]:
        """What every recorded figure depends on: a record made with another setup is not reused."""
        return {
            "architectures": [asdict(a) for a in self.architectures],
            "trainer": self.config.trainer.model_dump(mode="json"),
            "lr_finder": self.config.lr_finder.model_dump(mode="json"),
            "data": self.datasets.fingerprint,
            "train_seed": TRAIN_SEED,
        }

    def load(self) -> None:
        """Take the training runs and curves of ``record`` made with this setup, if there are any."""
        if self.record is None or not self.record.exists():
            return
        saved = json.loads(self.record.read_text()).get(self.name)
        if saved is None or saved["setup"] != self.setup():
            return
        self.trained = {(arch, step, seed): value for arch, step, seed, value in saved["trained"]}
        self.curves = {(arch, seed, steps): (lrs, losses) for arch, seed, steps, lrs, losses in saved["curves"]}
        print(f"{self.name}: {len(self.trained)} training runs and {len(self.curves)} curves from {self.record}")

    def save(self) -> None:
        """Write this dataset's training runs and curves into ``record`` (other datasets' entries are kept)."""
        if self.record is None:
            return
        everything = json.loads(self.record.read_text()) if self.record.exists() else {}
        everything[self.name] = {
            "setup": self.setup(),
            "trained": [[*key, value] for key, value in self.trained.items()],
            "curves": [[*key, lrs, losses] for key, (lrs, losses) in self.curves.items()],
        }
        self.record.write_text(json.dumps(everything))

    def val_loss(self, arch: int, lr: float) -> float:
        """Mean over ``train_seeds`` training seeds of a run's best val_loss at ``lr`` (rounded to the LR
        resolution); each run is trained once."""
        step = round(math.log10(lr) * LR_RESOLUTION)
        return float(np.mean([self._trained(arch, step, seed) for seed in range(self.train_seeds)]))

    def _trained(self, arch: int, step: int, seed: int) -> float:
        if (arch, step, seed) not in self.trained:
            started = time.perf_counter()
            lr = 10 ** (step / LR_RESOLUTION)
            self.trained[arch, step, seed] = _train(self.config, self.datasets, self.architectures[arch], lr, seed)
            self.train_seconds.append(time.perf_counter() - started)
            self.save()
        return self.trained[arch, step, seed]

    def best(self, arch: int, steps: Sequence[int] | None = None) -> tuple[float, float]:
        """The lowest val_loss of ``arch`` over the LR grid (or over ``steps`` of the LR resolution) and its LR."""
        value, step = min((self.val_loss(arch, 10 ** (step / LR_RESOLUTION)), step) for step in steps or self.grid)
        return value, 10 ** (step / LR_RESOLUTION)

    def trained_steps(self, arch: int) -> list[int]:
        """Every learning rate trained for ``arch`` with all training seeds, in steps of the LR resolution."""
        steps = {step for a, step, _ in self.trained if a == arch}
        return sorted(step for step in steps if all((arch, step, s) in self.trained for s in range(self.train_seeds)))

    def curve(self, arch: int, seed: int, steps: int) -> tuple[list[float], list[float]]:
        """The range-test curve of ``arch`` with ``seed`` and ``steps`` steps (recorded once)."""
        if (arch, seed, steps) not in self.curves:
            self.curves[arch, seed, steps] = _sweep(self, self.architectures[arch], seed, steps)
            self.save()
        return self.curves[arch, seed, steps]


def _train(config: StudyConfig, datasets: Datasets, architecture: Architecture, lr: float, seed: int) -> float:
    pl.seed_everything(TRAIN_SEED + seed, verbose=False)
    model = build_model(datasets.training, architecture, learning_rate=lr)
    recorder = EpochRecorder()
    try:
        fit(model, datasets, config.trainer, architecture.gradient_clip_val, recorder)
    except NonFiniteLoss:
        return math.inf
    return min(recorder.values)


def _sweep(bench: _Bench, architecture: Architecture, seed: int, steps: int) -> tuple[list[float], list[float]]:
    result = sweep(bench.config, bench.datasets, architecture, seed, steps)
    bench.sweep_seconds.setdefault(steps, []).append(result.seconds)
    return result.lrs, result.losses


def sweep(
    config: StudyConfig, datasets: Datasets, architecture: Architecture, seed: int, steps: int
) -> RangeTestResult:
    """The range test of a fresh ``architecture`` model built with ``seed``, over ``steps`` steps."""
    pl.seed_everything(seed, verbose=False)
    settings = config.lr_finder.model_copy(update={"num_training": steps})
    model = build_model(datasets.training, architecture, learning_rate=settings.fallback_lr)
    return run_range_test(
        model, datasets.train_loader, datasets.val_loader, settings, config.trainer, architecture.gradient_clip_val
    )


def _answer(rule: str, lrs: list[float], losses: list[float]) -> float | None:
    if rule == PF_RULE:
        return pytorch_forecasting_rule(lrs, losses)
    return suggest(rule, lrs, losses).lr


def bench_config(name: str, max_epochs: int | None = None, limit_train_batches: int | None = None) -> StudyConfig:
    """Dataset ``name``'s study file on the CPU (Stallion from its local path), with trainer overrides."""
    config = load_study_file(STUDY_FILES[name])
    overrides: dict[str, object] = {"accelerator": "cpu"}
    if max_epochs:
        overrides["max_epochs"] = max_epochs
    if limit_train_batches:
        overrides["limit_train_batches"] = limit_train_batches
    data = config.data
    if name == "stallion":
        data = data.model_copy(update={"path": str(stallion_path())})
    return config.model_copy(update={"trainer": config.trainer.model_copy(update=overrides), "data": data})


def _load(name: str, args: argparse.Namespace) -> _Bench:
    config = bench_config(name, args.max_epochs, args.limit_train_batches)
    sampler = optuna.samplers.RandomSampler(seed=args.arch_seed)
    study = optuna.create_study(sampler=sampler)
    architectures = [suggest_architecture(study.ask(), config.search_space) for _ in range(args.architectures)]
    grid = sorted({round(float(x) * LR_RESOLUTION) for x in np.linspace(-4, -0.5, args.grid)})
    datasets = build_datasets(config.data)
    bench = _Bench(name, config, datasets, architectures, grid=grid, train_seeds=args.train_seeds, record=args.record)
    bench.load()
    return bench


def _regrets(bench: _Bench, rule: str, seeds: Sequence[int], steps: int) -> dict[str, object]:
    regrets, regrets_all, distances, spreads, missing = [], [], [], [], 0
    for arch in range(len(bench.architectures)):
        answers = [_answer(rule, *bench.curve(arch, seed, steps)) for seed in seeds]
        missing += sum(answer is None for answer in answers)
        lrs = [bench.config.lr_finder.fallback_lr if answer is None else answer for answer in answers]
        values = [bench.val_loss(arch, lr) for lr in lrs]
        best, best_lr = bench.best(arch)
        best_trained, _ = bench.best(arch, bench.trained_steps(arch))
        regrets += [value / best for value in values]
        regrets_all += [value / best_trained for value in values]
        distances += [abs(math.log10(lr / best_lr)) for lr in lrs]
        spreads.append(float(np.std(np.log10(lrs))))
    return {
        "median_regret": round(float(np.median(regrets)), 4),
        "worst_regret": round(float(np.max(regrets)), 4),
        "median_regret_all": round(float(np.median(regrets_all)), 4),
        "worst_regret_all": round(float(np.max(regrets_all)), 4),
        "median_log10_distance": round(float(np.median(distances)), 3),
        "no_answer_rate": round(missing / len(regrets), 3),
        "seed_spread_decades": round(float(np.median(spreads)), 3),
    }


def _cell_neighbour(architecture: Architecture, bench: _Bench) -> Architecture:
    """The architecture of the same range-test cache cell farthest from ``architecture``: each parameter in
    turn moved as far across its search range as the cell (and ``hidden_continuous_size <= hidden_size``)
    allows."""
    cell = cache_cell(architecture)
    space = bench.config.search_space
    far = architecture
    for name in ("hidden_size", "hidden_continuous_size", "attention_head_size", "dropout", "gradient_clip_val"):
        bounds = getattr(space, name)
        if isinstance(bounds, IntRange):
            candidates = [float(v) for v in range(bounds.low, bounds.high + 1)]
        elif bounds.log:
            candidates = [float(v) for v in np.geomspace(bounds.low, bounds.high, 41)]
        else:
            candidates = [float(v) for v in np.linspace(bounds.low, bounds.high, 41)]
        scale = math.log if bounds.log else float
        moved = [replace(far, **{name: type(getattr(far, name))(value)}) for value in candidates]
        allowed = [m for m in moved if cache_cell(m) == cell and m.hidden_continuous_size <= m.hidden_size]
        far = max(allowed, key=lambda m: abs(scale(getattr(m, name)) - scale(getattr(architecture, name))))
    return far


def _cache_check(bench: _Bench, rule: str, seeds: Sequence[int], steps: int) -> dict[str, float]:
    """A cell's two farthest architectures: the median |log10| gap between their answers against the median
    spread across seeds, and the regret of training at the answer the cache would hand over (the far one's)."""
    gaps, spreads, regrets = [], [], []
    for arch, architecture in enumerate(bench.architectures):
        neighbour = _cell_neighbour(architecture, bench)
        own = [_answer(rule, *bench.curve(arch, seed, steps)) for seed in seeds]
        other = [_answer(rule, *_sweep(bench, neighbour, seed, steps)) for seed in seeds]
        own_logs = [math.log10(v) for v in own if v]
        other_logs = [math.log10(v) for v in other if v]
        best, _ = bench.best(arch)
        fallback = bench.config.lr_finder.fallback_lr
        regrets += [bench.val_loss(arch, lr or fallback) / best for lr in other]
        if own_logs and other_logs:
            gaps.append(abs(np.median(own_logs) - np.median(other_logs)))
            spreads.append(float(np.std(own_logs)))
    return {
        "median_cell_gap_decades": round(float(np.median(gaps)), 3),
        "median_seed_spread_decades": round(float(np.median(spreads)), 3),
        "cached_median_regret": round(float(np.median(regrets)), 4),
        "cached_worst_regret": round(float(np.max(regrets)), 4),
    }


def _score(results: dict[str, dict[str, dict[str, Any]]], rule: str) -> tuple[float, float]:
    """Median regret on the worse dataset, then worst regret: lower is better."""
    return (
        max(rows[rule]["median_regret"] for rows in results.values()),
        max(rows[rule]["worst_regret"] for rows in results.values()),
    )


def _summary_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("median_regret", "worst_regret", "no_answer_rate")}


def _print_details(bench: _Bench, rule: str, seeds: Sequence[int], steps: int) -> None:
    """Per architecture: the best LR trained and ``rule``'s answer and regret for each seed."""
    print(f"\n{bench.name}: {rule} per architecture ({steps}-step range tests)")
    for arch in range(len(bench.architectures)):
        best, best_lr = bench.best(arch)
        answers = [
            _answer(rule, *bench.curve(arch, seed, steps)) or bench.config.lr_finder.fallback_lr for seed in seeds
        ]
        cells = ", ".join(f"{lr:.2e} ({bench.val_loss(arch, lr) / best:.3f})" for lr in answers)
        print(f"  {arch}: best lr {best_lr:.2e} (val_loss {best:.4g}); answers (regret): {cells}")


def _print_table(title: str, rows: dict[str, dict[str, object]]) -> None:
    print(f"\n{title}")
    print(
        f"{'heuristic':<20} {'median':>7} {'worst':>7} {'|log10|':>8} {'no-ans':>7} {'seed sd':>8}"
        f" {'median*':>8} {'worst*':>7}"
    )
    for name, row in rows.items():
        print(
            f"{name:<20} {row['median_regret']:>7.3f} {row['worst_regret']:>7.3f} "
            f"{row['median_log10_distance']:>8.2f} {row['no_answer_rate']:>7.0%} {row['seed_spread_decades']:>8.2f}"
            f" {row['median_regret_all']:>8.3f} {row['worst_regret_all']:>7.3f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(STUDY_FILES), default=list(STUDY_FILES))
    parser.add_argument("--architectures", type=int, default=6)
    parser.add_argument("--arch-seed", type=int, default=0)
    parser.add_argument("--grid", type=int, default=8, help="learning rates from 1e-4 to 10**-0.5")
    parser.add_argument("--seeds", type=int, default=3, help="range-test seeds per architecture")
    parser.add_argument("--train-seeds", type=int, default=3, help="training seeds averaged per learning rate")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--step-counts", type=int, nargs="*", default=[20, 40])
    parser.add_argument("--max-epochs", type=int, help="override the study files' trainer.max_epochs")
    parser.add_argument("--limit-train-batches", type=int, help="override trainer.limit_train_batches")
    parser.add_argument(
        "--record",
        type=Path,
        help="JSON file of every training run and curve: read at start (same setup only), written as the bench goes",
    )
    args = parser.parse_args(argv)
    configure_output(verbose=False)
    install_warning_filters()
    started = time.perf_counter()
    seeds = list(range(args.seeds))

    benches = [_load(name, args) for name in args.datasets]
    for bench in benches:
        trainer = bench.config.trainer
        print(
            f"{bench.name}: {len(bench.architectures)} architectures, grid of {args.grid} lrs x {args.train_seeds} "
            f"training seeds, {args.seeds} range-test seeds, "
            f"{args.steps}-step range tests, {trainer.max_epochs} epochs x {trainer.limit_train_batches} batches",
            flush=True,
        )
        for arch in range(len(bench.architectures)):
            print(f"  architecture {arch}: {bench.architectures[arch]}, best {bench.best(arch)}", flush=True)

    counts = sorted({*args.step_counts, args.steps})

    def trained() -> int:
        return sum(len(bench.trained) for bench in benches)

    # median* and worst* are against the best val_loss of every LR trained for an architecture, so the
    # tables are computed again until a pass trains nothing new: every figure uses the same final best.
    while True:
        before = trained()
        results = {b.name: {rule: _regrets(b, rule, seeds, args.steps) for rule in RULES} for b in benches}
        default = min(HEURISTICS, key=lambda rule: _score(results, rule))
        by_steps = {b.name: {steps: _regrets(b, default, seeds, steps) for steps in counts} for b in benches}
        chosen_steps = min(
            steps
            for steps in counts
            if all(
                rows[steps]["median_regret"] <= rows[args.steps]["median_regret"] * 1.02 for rows in by_steps.values()
            )
        )
        at_chosen = {b.name: {rule: _regrets(b, rule, seeds, chosen_steps) for rule in RULES} for b in benches}
        if trained() == before:
            break
    for name, rows in results.items():
        _print_table(f"{name} ({args.steps}-step range tests)", rows)
    for bench in benches:
        _print_details(bench, default, seeds, args.steps)
    print(f"\ndefault heuristic: {default} (lowest median regret on the worse dataset, then lowest worst regret)")
    for name, rows in by_steps.items():
        _print_table(f"{name}: {default} by range-test steps", {f"{steps} steps": row for steps, row in rows.items()})
    print(f"\nfewest steps within 2% of the {args.steps}-step median regret on every dataset: {chosen_steps}")
    for name, rows in at_chosen.items():
        _print_table(f"{name} ({chosen_steps}-step range tests: the default num_training)", rows)

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
        "at_num_training": {
            name: {rule: _summary_row(row) for rule, row in rows.items()} for name, rows in at_chosen.items()
        },
        "cache_cell": cache,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
