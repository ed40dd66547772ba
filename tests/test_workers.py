"""Parallel workers: the exact-total rule, and three real worker processes on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import io
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from tft_hpo.cli import main
from tft_hpo.config import StudySection
from tft_hpo.parallel import threads_per_worker
from tft_hpo.signals import Interrupted, InterruptGuard
from tft_hpo.storage import open_storage
from tft_hpo.worker import INTERRUPTED, OVER_BUDGET, TrialLoop, claims_slot

from .conftest import SERVERS, assert_no_dangling_checkpoint, python_cli, require_server, sqlite_integrity

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: Tiny trials, and a grace period that a heartbeat thread on a busy 2-core machine always meets.
PARALLEL = {"study": {"grace_period": 10}, "trainer": {"max_epochs": 1, "limit_train_batches": 2}}


def _trial(number: int, state: TrialState) -> FrozenTrial:
    trial = create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None)
    trial.number = number
    return trial


@pytest.mark.parametrize(
    "states, number, total, runs",
    [
        ([TrialState.COMPLETE, TrialState.COMPLETE], 2, 3, True),
        ([TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING], 3, 3, False),
        ([TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING], 3, 3, True),  # a failed trial frees its slot
        ([TrialState.COMPLETE, TrialState.COMPLETE, TrialState.WAITING], 3, 3, False),  # a queued re-run holds one
        ([TrialState.COMPLETE, TrialState.COMPLETE, TrialState.WAITING], 2, 3, True),  # ... which is its own
        ([TrialState.COMPLETE, TrialState.RUNNING, TrialState.COMPLETE], 1, 2, True),  # only lower numbers count
    ],
)
def test_a_trial_runs_only_if_fewer_than_n_trials_lower_numbered_trials_hold_a_slot(
    states: list[TrialState], number: int, total: int, runs: bool
) -> None:
    trials = [_trial(n, state) for n, state in enumerate(states)]
    assert claims_slot(trials, number, total) is runs


def test_threads_per_worker_share_the_cores() -> None:
    assert threads_per_worker(3, cores=16) == 5
    assert threads_per_worker(4, cores=2) == 1
    assert threads_per_worker(1, cores=2) == 2


@pytest.mark.filterwarnings("ignore:Argument ``heartbeat_interval`` is an experimental feature")  # threads, as below
def test_racing_loops_with_failures_stop_at_exactly_n_trials(workdir: Path) -> None:
    """Six loops race on one SQLite study with an objective that is instant and fails a fifth of the time.

    Training plays no part here (the trials of the loops below train for real): this is the storage rule
    under far more contention than real trials produce.
    """
    url = f"sqlite:///{workdir}/race.db"
    settings = StudySection(name="race", heartbeat_interval=1, grace_period=10)
    optuna.create_study(study_name="race", storage=open_storage(url, settings))
    total = 40

    def objective(trial: optuna.Trial) -> float:
        value = trial.suggest_float("x", 0, 1)
        time.sleep(random.random() / 50)
        if random.random() < 0.2:
            raise RuntimeError("boom")
        return value

    def worker() -> None:
        storage = open_storage(url, settings)
        study = optuna.load_study(study_name="race", storage=storage)
        loop = TrialLoop(
            study,
            storage,
            objective,
            total=total,
            trials_dir=workdir / "none",
            guard=InterruptGuard(),
            out=io.StringIO(),
        )
        loop.run(max_trials=200)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    trials = optuna.load_study(study_name="race", storage=url).get_trials()
    assert sum(t.state in FINISHED for t in trials) == total
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state != TrialState.FAIL or t.user_attrs.get("fail_reason") in (None, OVER_BUDGET) for t in trials)
    assert not any(thread.is_alive() for thread in threads)


class _SignalledWhileAsking(optuna.samplers.RandomSampler):
    """SIGTERM arrives while the loop asks for trial 0: inside its storage bookkeeping, before the objective."""

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        if trial.number == 0:
            signal.raise_signal(signal.SIGTERM)


def test_a_signal_while_a_trial_is_asked_for_fails_and_queues_that_trial(workdir: Path) -> None:
    url = f"sqlite:///{workdir}/ask.db"
    storage = open_storage(url, StudySection(name="ask", heartbeat_interval=1, grace_period=10))
    study = optuna.create_study(study_name="ask", storage=storage, sampler=_SignalledWhileAsking(seed=0))
    evaluated: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        evaluated.append(trial.number)
        return 1.0

    with pytest.raises(Interrupted), InterruptGuard() as guard:
        loop = TrialLoop(
            study, storage, objective, total=2, trials_dir=workdir / "none", guard=guard, out=io.StringIO()
        )
        loop.run(max_trials=2)

    trials = study.get_trials()
    assert evaluated == []  # held back until the trial was RUNNING with its heartbeat, then raised
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["fail_reason"] == INTERRUPTED
    assert [t.system_attrs["failed_trial"] for t in trials if t.state == TrialState.WAITING] == [0]
    assert not any(t.state == TrialState.RUNNING for t in trials)


def _assert_exact_and_intact(trials: list[FrozenTrial], total: int) -> None:
    assert sum(t.state in FINISHED for t in trials) == total
    assert [t.number for t in trials] == list(range(len(trials)))  # none lost
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get("fail_reason") == OVER_BUDGET for t in failed), [t.user_attrs for t in failed]
    finished = [t for t in trials if t.state in FINISHED]
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == total  # none duplicated
    for trial in finished:
        assert trial.intermediate_values and trial.user_attrs["learning_rate"] > 0
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(min(trial.intermediate_values.values()))
    assert_no_dangling_checkpoint(trials)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_three_workers_on_sqlite_while_optuna_dashboard_reads_it(
    study_file: Callable[..., Path], workdir: Path
) -> None:
    path = study_file("par", {**PARALLEL, "study": {**PARALLEL["study"], "n_trials": 1}})
    database = workdir / "studies" / "par.db"
    assert main(["run", str(path)]) == 0  # the study exists, with one trial, before the dashboard opens it
    port = _free_port()
    dashboard = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"), f"sqlite:///{database}", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api/studies"
    reads: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not _trial_count(api) and time.monotonic() < deadline:
            time.sleep(0.3)
        run = subprocess.Popen(
            python_cli("run", str(path), "--workers", "3", "--n-trials", "13"),
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while run.poll() is None:
            reads.append(_trial_count(api))
            time.sleep(0.3)
        out, err = run.communicate(timeout=60)
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
    assert run.returncode == 0, err[-3000:]
    assert "database is locked" not in out + err and "Traceback" not in err
    assert len(set(reads) - {0}) >= 2, reads  # the dashboard saw the study grow while the workers wrote it
    trials = optuna.load_study(study_name="par", storage=f"sqlite:///{database}").get_trials()
    _assert_exact_and_intact(trials, 13)
    assert out.count(" joins study 'par'") == 3
    assert sqlite_integrity(database) == "ok"


def _trial_count(api: str) -> int:
    """The trials optuna-dashboard shows for the first study (0 while it is not answering)."""
    try:
        with urllib.request.urlopen(api, timeout=10) as response:
            study_id = json.loads(response.read())["study_summaries"][0]["study_id"]
        with urllib.request.urlopen(f"{api}/{study_id}", timeout=10) as response:
            return len(json.loads(response.read())["trials"])
    except (OSError, KeyError, IndexError):
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_three_workers_on_a_database_server(server: str, study_file: Callable[..., Path], workdir: Path) -> None:
    """Two workers of ``run --workers 2`` and one ``tft-hpo worker`` joining from another process."""
    url = SERVERS[server]
    require_server(url)
    name = f"tft_hpo_test_{uuid.uuid4().hex[:12]}"
    path = study_file(name, {**PARALLEL, "study": {**PARALLEL["study"], "n_trials": 1}})
    try:
        assert main(["run", str(path), "--storage", url]) == 0  # creates the study, with one trial
        commands = [
            python_cli("worker", name, "--storage", url, "--n-trials", "13", "--threads", "1"),
            python_cli("run", str(path), "--storage", url, "--n-trials", "13", "--workers", "2"),
        ]
        processes = [
            subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for command in commands
        ]
        results = [process.communicate(timeout=400) for process in processes]
        for process, (_, err) in zip(processes, results, strict=True):
            assert process.returncode == 0, err[-3000:]
            assert "Traceback" not in err and "deadlock" not in err.lower() and "lock wait" not in err.lower()
        joined_out = results[0][0]
        assert f"joins study '{name}'" in joined_out and "done: ran" in joined_out
        _assert_exact_and_intact(optuna.load_study(study_name=name, storage=url).get_trials(), 13)
    finally:
        try:
            optuna.delete_study(study_name=name, storage=url)
        except KeyError:
            pass  # never created


# Threads stand in for processes here; open_storage's catch_warnings (process-wide) is not thread-safe.
@pytest.mark.filterwarnings("ignore:Argument ``heartbeat_interval`` is an experimental feature")
def test_workers_opening_a_new_database_at_once_all_get_it(workdir: Path) -> None:
    """Optuna creates its tables on first use; the processes that lose that race try again."""
    url = f"sqlite:///{workdir}/fresh.db"
    settings = StudySection(name="fresh", heartbeat_interval=1)
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_at_once() -> None:
        start.wait()
        try:
            open_storage(url, settings)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=open_at_once) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
