"""One worker's trial loop: run trials until the study holds exactly ``n_trials`` finished ones.

Any number of workers (processes, machines) may run this loop on one study at once. The total stays
exact by one rule, checked right after a trial is created (trial numbers are handed out atomically by
the storage): trial ``n`` runs only if fewer than ``n_trials`` trials numbered below ``n`` are finished,
running or waiting. Otherwise it is not run: it ends FAIL with ``fail_reason`` :data:`OVER_BUDGET`, which
does not count as finished. A worker whose slots are all held by trials running elsewhere waits for
them (a stale one is failed once its heartbeat is older than the grace period, and re-run once).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

import optuna
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from tft_hpo.signals import Interrupted, InterruptGuard

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_HOLDS_A_SLOT = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
#: ``fail_reason`` of a trial created after the study's total was already taken (never counts as finished).
OVER_BUDGET = "not run: n_trials already taken by lower-numbered trials"
INTERRUPTED = "interrupted"

_logger = logging.getLogger(__name__)
TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


def claims_slot(trials: Sequence[FrozenTrial], number: int, total: int) -> bool:
    """Whether trial ``number`` may run: fewer than ``total`` lower-numbered trials hold a slot.

    A slot is held by a finished (COMPLETE, PRUNED), RUNNING or WAITING (queued re-run) trial.
    """
    taken = sum(1 for t in trials if t.number < number and t.state in _HOLDS_A_SLOT)
    return taken < total


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a re-run of ``trial``'s params, marked the way Optuna's stale-trial retry marks its re-runs."""
    original = trial.system_attrs.get("failed_trial", trial.number)
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={"failed_trial": original, "retry_history": history},
        )
    )


def remove_unfinished_checkpoints(trials_dir: Path, study: optuna.Study) -> list[int]:
    """Delete ``trials_dir/<n>/`` of every trial ``n`` that failed or is not in the study; return the numbers.

    Folders of COMPLETE, PRUNED, RUNNING and WAITING trials stay.
    """
    if not trials_dir.is_dir():
        return []
    folders = {int(p.name): p for p in trials_dir.iterdir() if p.is_dir() and p.name.isdigit()}
    # Listed before the trials are read: a folder's trial was created before the folder, so it is in the list.
    keep = {t.number for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL}
    removed = sorted(number for number in folders if number not in keep)
    for number in removed:
        shutil.rmtree(folders[number], ignore_errors=True)
    return removed


class _Heartbeat:
    """Records a trial's heartbeat every interval in a thread, as Optuna's optimize loop does.

    Each beat also fails the study's stale trials (queueing their re-runs), so that a trial left by a
    killed process is failed within the grace period even while this worker is busy.
    """

    def __init__(self, study: optuna.Study, storage: RDBStorage, trial_id: int) -> None:
        interval = storage.get_heartbeat_interval()
        assert interval is not None, "the storage is opened with heartbeats"
        self._study, self._storage, self._trial_id, self._interval = study, storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def __enter__(self) -> None:
        self._storage.record_heartbeat(self._trial_id)
        self._thread.start()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
                fail_stale_trials(self._study)
            except Exception as error:  # a missed beat is not fatal: the next one comes an interval later
                _logger.warning("heartbeat of trial id %d: %s", self._trial_id, error)


class TrialLoop:
    """Runs trials of ``study`` with ``objective`` until the study holds ``total`` finished trials.

    Stops early after ``max_trials`` trials run here (failed ones included, so that a broken setup
    does not loop forever), after ``timeout`` seconds (no new trial starts), or on SIGINT/SIGTERM
    (:class:`Interrupted` propagates once the current trial is FAIL and queued for a re-run).
    """

    def __init__(
        self,
        study: optuna.Study,
        storage: RDBStorage,
        objective: Callable[[optuna.Trial], float],
        *,
        total: int,
        trials_dir: Path,
        guard: InterruptGuard,
        callbacks: Sequence[TrialCallback] = (),
        out: TextIO,
        verbose: bool = False,
    ) -> None:
        self._study, self._storage, self._objective = study, storage, objective
        self._total, self._trials_dir, self._guard = total, trials_dir, guard
        self._callbacks, self._out, self._verbose = list(callbacks), out, verbose
        self._study_id = storage.get_study_id_from_name(study.study_name)
        self._poll_seconds = float(storage.get_heartbeat_interval() or 1)

    def run(self, max_trials: int, timeout: float | None = None) -> list[int]:
        """Run trials as described above; return the numbers of the trials run here."""
        started = time.monotonic()
        ran: list[int] = []
        waiting_announced = False
        while len(ran) < max_trials and (timeout is None or time.monotonic() - started < timeout):
            with self._guard.deferred():
                fail_stale_trials(self._study)
                remove_unfinished_checkpoints(self._trials_dir, self._study)
                trials = self._study.get_trials(deepcopy=False)
            finished = sum(t.state in FINISHED for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if finished >= self._total:
                break
            if finished + running >= self._total:
                if not waiting_announced:
                    print(
                        f"waiting: {running} trial(s) running elsewhere hold the last of {self._total} slots",
                        file=self._out,
                        flush=True,
                    )
                    waiting_announced = True
                time.sleep(self._poll_seconds)
                continue
            waiting_announced = False
            number = self._run_next()
            if number is not None:
                ran.append(number)
        return ran

    def _run_next(self) -> int | None:
        """Create (or pop a queued) trial and run it if it claims a slot; its number, or None if not run."""
        with ExitStack() as heartbeat:
            trial: optuna.Trial | None = None
            try:
                with self._guard.deferred():  # never a RUNNING trial without heartbeat
                    trial = self._study.ask()
                    trial_id = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, trial.number)
                    heartbeat.enter_context(_Heartbeat(self._study, self._storage, trial_id))
                    if not claims_slot(self._study.get_trials(deepcopy=False), trial.number, self._total):
                        trial.set_user_attr("fail_reason", OVER_BUDGET)
                        self._study.tell(trial, state=TrialState.FAIL)
                        trial = None
                        return None
                state, value = self._evaluate(trial)
            except Interrupted:
                self._guard.acknowledge()
                # Also when the signal came during the section above: it is raised as the section ends,
                # with the trial already RUNNING here.
                if trial is not None:
                    with self._guard.deferred():
                        if "fail_reason" not in trial.user_attrs:
                            trial.set_user_attr("fail_reason", INTERRUPTED)
                        frozen = self._finish(trial, TrialState.FAIL, None)
                        if frozen.state == TrialState.FAIL:
                            requeue(self._study, frozen)
                raise
        with self._guard.deferred():
            self._finish(trial, state, value)
        return trial.number

    def _evaluate(self, trial: optuna.Trial) -> tuple[TrialState, float | None]:
        try:
            return TrialState.COMPLETE, self._objective(trial)
        except optuna.TrialPruned:
            return TrialState.PRUNED, None
        except Exception:
            if self._verbose:
                traceback.print_exc()
            return TrialState.FAIL, None

    def _finish(self, trial: optuna.Trial, state: TrialState, value: float | None) -> FrozenTrial:
        # skip_if_finished: another worker may have failed this trial as stale (heartbeat later than the grace period).
        frozen = self._study.tell(
            trial, value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True
        )
        for callback in self._callbacks:
            callback(self._study, frozen)
        return frozen
