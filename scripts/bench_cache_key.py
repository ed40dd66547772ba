"""Which parameters move the range test's answer? The measurement behind the range-test cache's key.

For each dataset (Stallion and the synthetic quickstart panel), start from the middle of the study
file's search space and move one parameter at a time across its whole range (``--values`` points,
log-spaced for log ranges), running the study's range test with ``--seeds`` seeds at each point and
reading it with the study's heuristic. The answer's
log10 is fitted linearly on the parameter (octaves for sizes, decades for clipping, tenths for dropout,
heads): ``slope`` (with its standard error) and ``range_effect`` = |slope| x the range's width, the
decades the answer moves across the whole search range. The **seed spread** is the standard deviation
of log10(answer) across seeds at one point (median over all points): how much the answer moves when
the same model is tested again. A parameter whose range effect stays within the seed spread cannot be
told apart from re-testing and need not be in the key; one that moves the answer more needs cells
narrow enough (seed spread / |slope| wide) that a cell moves it by less than re-testing does.

The last line printed is one JSON object: per dataset, ``seed_spread`` and per parameter ``slope``,
``slope_se`` and ``range_effect``. Run: ``python scripts/bench_cache_key.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from bench_lr_heuristics import STUDY_FILES, bench_config, sweep

from tft_hpo.config import FloatRange, IntRange
from tft_hpo.data import build_datasets
from tft_hpo.lr_heuristics import choose_lr
from tft_hpo.output import configure_output, install_warning_filters
from tft_hpo.search_space import Architecture, default_architecture

PARAMETERS = ("hidden_size", "hidden_continuous_size", "attention_head_size", "dropout", "gradient_clip_val")


def _values(bounds: IntRange | FloatRange, count: int, integer: bool) -> list[float]:
    points = np.geomspace(bounds.low, bounds.high, count) if bounds.log else np.linspace(bounds.low, bounds.high, count)
    return sorted({round(float(p)) for p in points}) if integer else [float(p) for p in points]


def _unit(name: str, value: float) -> float:
    """The parameter on the scale its slope is given in: octaves, decades, tenths of dropout, heads."""
    if name in ("hidden_size", "hidden_continuous_size"):
        return math.log2(value)
    if name == "gradient_clip_val":
        return math.log10(value)
    if name == "dropout":
        return value * 10
    return value


def _variants(base: Architecture, name: str, values: Sequence[float]) -> list[Architecture]:
    variants = []
    for value in values:
        variant = replace(base, **{name: value})
        if name == "hidden_size":  # keep hidden_continuous_size <= hidden_size, as the search space does
            variant = replace(variant, hidden_continuous_size=min(base.hidden_continuous_size, int(value)))
        if variant.hidden_continuous_size <= variant.hidden_size:
            variants.append(variant)
    return variants


def measure(name: str, values: int, seeds: Sequence[int]) -> dict[str, object]:
    """One dataset's effect and slope per parameter, and its seed spread, in decades of the answer."""
    config = bench_config(name)
    datasets = build_datasets(config.data)
    settings = config.lr_finder
    space = config.search_space
    base = default_architecture(space)
    print(f"{name}: base {base}, {settings.num_training}-step range tests read by {settings.heuristic}", flush=True)
    results: dict[str, dict[str, float]] = {}
    spreads: list[float] = []
    for parameter in PARAMETERS:
        bounds = getattr(space, parameter)
        units, logs = [], []
        for architecture in _variants(base, parameter, _values(bounds, values, isinstance(bounds, IntRange))):
            answers = []
            for seed in seeds:
                result = sweep(config, datasets, architecture, seed, settings.num_training)
                answers.append(
                    math.log10(choose_lr(result.lrs, result.losses, settings.chain, settings.fallback_lr).lr)
                )
            value = getattr(architecture, parameter)
            units += [_unit(parameter, value)] * len(answers)
            logs += answers
            spreads.append(float(np.std(answers)))
            print(f"  {parameter}={value:.4g}: log10(lr) {' '.join(f'{v:.2f}' for v in answers)}", flush=True)
        results[parameter] = _fit(
            np.array(units), np.array(logs), _unit(parameter, bounds.high) - _unit(parameter, bounds.low)
        )
    return {"seed_spread": round(float(np.median(spreads)), 3), "parameters": results}


def _fit(units: np.ndarray, logs: np.ndarray, width: float) -> dict[str, float]:
    """Least-squares slope of log10(answer) on the parameter, its standard error, and the move it makes
    across the whole range (``|slope| * width``)."""
    design = np.column_stack([units, np.ones_like(units)])
    (slope, _), residuals, *_ = np.linalg.lstsq(design, logs, rcond=None)
    variance = float(residuals[0]) / (len(logs) - 2) if residuals.size else 0.0
    slope_se = math.sqrt(variance / float(np.sum((units - units.mean()) ** 2)))
    return {
        "slope": round(float(slope), 3),
        "slope_se": round(slope_se, 3),
        "range_effect": round(abs(slope) * width, 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(STUDY_FILES), default=list(STUDY_FILES))
    parser.add_argument("--values", type=int, default=5, help="points across each parameter's range")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    configure_output(verbose=False)
    install_warning_filters()
    started = time.perf_counter()
    summary = {name: measure(name, args.values, range(args.seeds)) for name in args.datasets}
    for name, result in summary.items():
        print(f"\n{name}: seed spread {result['seed_spread']:.3f} decades")
        print(f"{'parameter':<24} {'slope':>7} {'+-se':>6} {'range effect':>13}")
        for parameter, row in result["parameters"].items():
            print(f"{parameter:<24} {row['slope']:>7.3f} {row['slope_se']:>6.3f} {row['range_effect']:>13.3f}")
    print(f"total {time.perf_counter() - started:.0f}s")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
