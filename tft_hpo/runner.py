"""The runner: validate everything, open the storage, run trials up to the study's total, report."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import optuna
from lightning.pytorch.callbacks import Callback
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial

from tft_hpo.artifacts import RecordingObjective, open_artifact_store
from tft_hpo.config import StudyConfig
from tft_hpo.dashboard import DashboardFigures
from tft_hpo.data import build_datasets
from tft_hpo.objective import Objective
from tft_hpo.output import configure_output
from tft_hpo.progress import FINISHED, ProgressReporter, range_test_seconds
from tft_hpo.results import best_trial
from tft_hpo.sampling import build_pruner, build_sampler
from tft_hpo.storage import create_or_load_study, open_storage, redacted_url
from tft_hpo.summary_table import closing_table


@dataclass(frozen=True)
class RunSummary:
    """What one call of :func:`run_study` did."""

    study_name: str
    storage_url: str
    n_trials: int
    ran: int
    finished: int
    wall_seconds: float
    range_test_seconds: float
    best: FrozenTrial | None

    @property
    def range_test_share(self) -> float:
        """Share of this run's wall time spent in LR range tests."""
        return self.range_test_seconds / self.wall_seconds if self.wall_seconds else 0.0


def run_study(
    config: StudyConfig,
    *,
    callbacks: Sequence[Callback] = (),
    force: bool = False,
    verbose: bool = False,
    out: TextIO | None = None,
) -> RunSummary:
    """Run ``config``'s study until it holds ``n_trials`` finished (COMPLETE or PRUNED) trials.

    Data and storage are checked before anything is written. ``callbacks`` are Lightning callbacks
    added to every trial's training, beside the pruning and checkpoint callbacks.
    """
    out = out or sys.stdout
    configure_output(verbose)
    started = time.perf_counter()
    datasets = build_datasets(config.data)
    storage = open_storage(config.study.storage_url, config.study)
    artifact_store = open_artifact_store(config.study.artifact_path)
    study = create_or_load_study(
        storage,
        config,
        sampler=build_sampler(config),
        pruner=build_pruner(config.study.pruner, config.trainer.max_epochs),
        force=force,
    )
    total = config.study.n_trials
    before = study.get_trials(deepcopy=False)
    already = sum(t.state in FINISHED for t in before)
    print(
        f"study {config.study.name!r} in {redacted_url(config.study.storage_url)}: {already}/{total} trials finished",
        file=out,
        flush=True,
    )
    remaining = total - already
    if remaining <= 0:
        print("nothing to run: the study has reached n_trials (raise it with --n-trials)", file=out, flush=True)
    else:
        study.optimize(
            RecordingObjective(Objective(config, datasets, callbacks=callbacks, verbose=verbose), artifact_store),
            n_trials=remaining,
            timeout=config.study.timeout,
            catch=(Exception,),
            callbacks=[MaxTrialsCallback(total, states=FINISHED), ProgressReporter(total, out), DashboardFigures()],
        )
    new_trials = study.get_trials(deepcopy=False)[len(before) :]
    summary = RunSummary(
        study_name=config.study.name,
        storage_url=config.study.storage_url,
        n_trials=total,
        ran=len(new_trials),
        finished=sum(t.state in FINISHED for t in study.get_trials(deepcopy=False)),
        wall_seconds=time.perf_counter() - started,
        range_test_seconds=sum(range_test_seconds(t) for t in new_trials),
        best=best_trial(study),
    )
    _print_summary(summary, study, out)
    return summary


def _print_summary(summary: RunSummary, study: optuna.Study, out: TextIO) -> None:
    print(
        f"ran {summary.ran} trial(s) in {summary.wall_seconds:.1f}s; {summary.finished}/{summary.n_trials} finished",
        file=out,
    )
    table = closing_table(
        study.get_trials(deepcopy=False), study.direction, summary.range_test_seconds, summary.wall_seconds
    )
    print(table, file=out)
    best = summary.best
    if best is None:
        print("no completed trial yet", file=out, flush=True)
        return
    params = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
    lr = best.user_attrs.get("learning_rate", float("nan"))
    print(
        f"best trial {best.number}: val_loss {best.value:.5f}, lr {lr:.3e}, {params}",
        file=out,
    )
    print(f"best checkpoint: {best.user_attrs.get('checkpoint')}", file=out, flush=True)


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
