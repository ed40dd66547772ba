"""The runner: validate everything, open the storage, run trials up to the study's total, report."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TextIO

import optuna
from lightning.pytorch.callbacks import Callback
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from tft_hpo.artifacts import RecordingObjective, open_artifact_store
from tft_hpo.config import StudyConfig
from tft_hpo.dashboard import DashboardFigures
from tft_hpo.data import Datasets, build_datasets
from tft_hpo.objective import Objective
from tft_hpo.output import configure_output
from tft_hpo.progress import FINISHED, ProgressReporter, range_test_seconds
from tft_hpo.results import best_trial
from tft_hpo.sampling import build_pruner, build_sampler
from tft_hpo.signals import Interrupted, InterruptGuard
from tft_hpo.storage import check_storage, create_or_load_study, open_storage, redacted_url
from tft_hpo.summary_table import closing_table
from tft_hpo.worker import TrialLoop


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
    as_worker: bool = False,
) -> RunSummary:
    """Run ``config``'s study until it holds ``n_trials`` finished (COMPLETE or PRUNED) trials.

    Data and storage are checked before anything is written. ``callbacks`` are Lightning callbacks
    added to every trial's training, beside the pruning and checkpoint callbacks. Other processes may
    run the same study at the same time (see :mod:`tft_hpo.worker`); ``as_worker`` gives this
    process's sampler a fresh random state (so that parallel workers do not all sample the same params)
    and prints a one-line summary.
    SIGINT and SIGTERM end the current trial as FAIL ("interrupted"), queue its re-run and raise
    :class:`~tft_hpo.signals.Interrupted`.
    """
    out = out or sys.stdout
    configure_output(verbose)
    started = time.perf_counter()
    with InterruptGuard() as guard:
        try:
            datasets, storage, study = open_study(config, force=force)
            if as_worker:
                study.sampler.reseed_rng()
            total = config.study.n_trials
            already = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
            joins = f"worker {os.getpid()} joins " if as_worker else ""
            print(
                f"{joins}study {config.study.name!r} in {redacted_url(config.study.storage_url)}: "
                f"{already}/{total} trials finished",
                file=out,
                flush=True,
            )
            ran: list[int] = []
            if already >= total:
                print("nothing to run: the study has reached n_trials (raise it with --n-trials)", file=out, flush=True)
            else:
                objective = Objective(config, datasets, callbacks=callbacks, verbose=verbose)
                loop = TrialLoop(
                    study,
                    storage,
                    RecordingObjective(objective, open_artifact_store(config.study.artifact_path)),
                    total=total,
                    trials_dir=config.study.study_dir / "trials",
                    guard=guard,
                    callbacks=[ProgressReporter(total, out), DashboardFigures()],
                    out=out,
                    verbose=verbose,
                )
                ran = loop.run(max_trials=total - already, timeout=config.study.timeout)
            guard.check()  # a signal whose Interrupted a library swallowed still ends the run as interrupted
        except Interrupted as interrupted:
            interrupted.resume_hint = resume_command(config)
            raise
    summary = summarize(study, config, ran, wall_seconds=time.perf_counter() - started)
    if as_worker:
        print(f"worker {os.getpid()} done: ran {summary.ran} trial(s); {summary.finished}/{total} finished", file=out)
    else:
        print_summary(summary, study, out)
    return summary


def open_study(config: StudyConfig, force: bool = False) -> tuple[Datasets, RDBStorage, optuna.Study]:
    """Check the storage and the data, open the storage, and create or load the study with ``config``'s total
    stored on it. Nothing is written (nor data prepared) before both checks pass."""
    check_storage(config.study.storage_url)
    datasets = build_datasets(config.data)
    storage = open_storage(config.study.storage_url, config.study)
    study = create_or_load_study(
        storage,
        config,
        sampler=build_sampler(config),
        pruner=build_pruner(config.study.pruner, config.trainer.max_epochs),
        force=force,
    )
    return datasets, storage, study


def summarize(study: optuna.Study, config: StudyConfig, ran: Collection[int], wall_seconds: float) -> RunSummary:
    """The summary of a run that ran the trials numbered ``ran`` in ``wall_seconds``."""
    trials = study.get_trials(deepcopy=False)
    new_trials = [t for t in trials if t.number in ran]
    return RunSummary(
        study_name=config.study.name,
        storage_url=config.study.storage_url,
        n_trials=config.study.n_trials,
        ran=len(new_trials),
        finished=sum(t.state in FINISHED for t in trials),
        wall_seconds=wall_seconds,
        range_test_seconds=sum(range_test_seconds(t) for t in new_trials),
        best=best_trial(study),
    )


def resume_command(config: StudyConfig) -> str:
    """How to go on with ``config``'s study: the same command, or ``resume`` from its stored config."""
    return (
        f"run the same command again, or tft-hpo resume {config.study.name} "
        f"--storage {redacted_url(config.study.storage_url)}"
    )


def print_summary(summary: RunSummary, study: optuna.Study, out: TextIO) -> None:
    """The lines that end a run: trials run, finished count, the closing table, best trial."""
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
