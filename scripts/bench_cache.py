"""How much range-test time does the cross-trial cache save in a real study? The same study twice.

Runs a study file's study (``--n-trials``, default 20) for ``--seeds`` study seeds, each twice in one
process, into fresh SQLite storages in a temporary folder: once with ``lr_finder.cache = true`` (the
default) and once with ``false``; same seed, same data, real training. Prints, for each run: range
tests run and reused (the hit rate), seconds spent in range tests, seconds the reuse saved (each reused
test's original cost), the study's wall time and best value; then one JSON line with ``hit_rate``,
``seconds_saved`` (all seeds), ``range_test_ratio`` and ``wall_ratio`` (with the cache over without,
all seeds) and the median best value with and without the cache.

Run: ``python scripts/bench_cache.py [STUDY_FILE] [--n-trials 20]`` (default ``studies/quickstart.toml``).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
from _stallion import ROOT, stallion_path

from tft_hpo.config import StudyConfig, config_from_dict, load_study_file
from tft_hpo.range_test_cache import cache_savings
from tft_hpo.runner import run_study


def _variant(config: StudyConfig, cache: bool, seed: int, n_trials: int, folder: Path) -> StudyConfig:
    data = config.to_dict()
    name = f"{config.study.name}-cache-{'on' if cache else 'off'}-seed-{seed}"
    data["study"].update(name=name, seed=seed, n_trials=n_trials, output_dir=str(folder))
    data["lr_finder"]["cache"] = cache
    if data["data"]["source"] == "stallion":
        data["data"]["path"] = str(stallion_path())
    return config_from_dict(data, origin="bench_cache")


def measure(config: StudyConfig) -> dict[str, float]:
    """Run ``config``'s study and read its range-test figures back from its storage."""
    summary = run_study(config, out=io.StringIO())
    study = optuna.load_study(study_name=config.study.name, storage=config.study.storage_url)
    hits, tests, saved = cache_savings(study.get_trials(deepcopy=False))
    return {
        "range_tests": tests,
        "reused": hits,
        "range_test_seconds": round(summary.range_test_seconds, 2),
        "seconds_saved": round(saved, 2),
        "wall_seconds": round(summary.wall_seconds, 2),
        "best_value": round(summary.best.value, 5) if summary.best else float("nan"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_file", nargs="?", type=Path, default=ROOT / "studies" / "quickstart.toml")
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="study seeds, each run with and without the cache")
    args = parser.parse_args(argv)
    config = load_study_file(args.study_file)
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            for cache in (True, False):
                results[cache].append(measure(_variant(config, cache, seed, args.n_trials, Path(folder))))
    print(
        f"{'cache':<6} {'seed':>4} {'tests':>6} {'reused':>7} {'range-test s':>13} {'saved s':>8}"
        f" {'wall s':>8} {'best':>10}"
    )
    for cache, rows in results.items():
        for seed, row in enumerate(rows):
            print(
                f"{'on' if cache else 'off':<6} {seed:>4} {row['range_tests']:>6} {row['reused']:>7}"
                f" {row['range_test_seconds']:>13.2f} {row['seconds_saved']:>8.2f}"
                f" {row['wall_seconds']:>8.2f} {row['best_value']:>10.5g}"
            )
    on, off = results[True], results[False]
    summary = {
        "hit_rate": round(sum(r["reused"] for r in on) / max(sum(r["range_tests"] for r in on), 1), 3),
        "seconds_saved": round(sum(r["seconds_saved"] for r in on), 2),
        "range_test_ratio": round(_total(on, "range_test_seconds") / max(_total(off, "range_test_seconds"), 1e-9), 3),
        "wall_ratio": round(_total(on, "wall_seconds") / max(_total(off, "wall_seconds"), 1e-9), 3),
        "best_value_median": round(float(np.median([r["best_value"] for r in on])), 5),
        "best_value_median_without_cache": round(float(np.median([r["best_value"] for r in off])), 5),
    }
    print(json.dumps(summary))


def _total(rows: list[dict[str, float]], name: str) -> float:
    return sum(row[name] for row in rows)


if __name__ == "__main__":
    main()
