"""Real processes, real signals: SIGKILL mid range test / training / checkpoint write, then SIGINT and SIGTERM."""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from tft_hpo.cli import main
from tft_hpo.objective import trial_seed

from .conftest import REPO, TINY, assert_no_dangling_checkpoint, python_cli, sqlite_integrity

pytestmark = pytest.mark.slow

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
GRACE_PERIOD = 2
HEARTBEAT_INTERVAL = 1


def _trials(workdir: Path, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/studies/{name}.db").get_trials()


def _comparable(trial: FrozenTrial) -> tuple[object, ...]:
    return (trial.number, trial.state, trial.value, trial.params, trial.intermediate_values, trial.user_attrs)


@pytest.mark.parametrize("phase", ["range_test", "training", "checkpoint"])
def test_a_killed_trial_is_failed_within_the_grace_period_and_rerun_once(
    phase: str, study_file: Callable[..., Path], workdir: Path
) -> None:
    path = study_file(
        "kill",
        {"study": {"n_trials": 2, "pruner": {"type": "none"}}, "trainer": {"max_epochs": 2, "limit_train_batches": 2}},
    )
    driver = subprocess.run(
        [sys.executable, str(REPO / "tests" / "crash_driver.py"), str(path), phase],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    killed_at = datetime.datetime.now()
    assert driver.returncode == -signal.SIGKILL, driver.stderr[-2000:]
    before = _trials(workdir, "kill")
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    victim = before[1]
    if phase == "range_test":
        assert "lr_finder" not in victim.user_attrs and victim.params  # killed before the range test answered
    else:
        assert victim.user_attrs["lr_finder"]["steps"] > 0
    victim_dir = workdir / "studies" / "kill" / "trials" / "1"
    if phase == "training":
        assert (victim_dir / "best.ckpt").is_file()  # the checkpoint of its first epoch, left behind

    started = time.monotonic()
    assert main(["run", str(path)]) == 0  # at once: the run waits for the heartbeat to go stale
    trials = _trials(workdir, "kill")

    assert trials[1].state == TrialState.FAIL
    failed_after = (trials[1].datetime_complete - killed_at).total_seconds()
    # Stale once its last heartbeat is older than the grace period; every heartbeat of the new run's
    # trial checks. The margin is for the new run's start and a loaded machine.
    assert GRACE_PERIOD <= failed_after < GRACE_PERIOD + HEARTBEAT_INTERVAL + 15, f"failed {failed_after:.1f}s after"
    retries = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retries) == 1
    assert retries[0].params == victim.params and retries[0].user_attrs["seed"] == victim.user_attrs["seed"]
    assert retries[0].state in FINISHED
    assert _comparable(trials[0]) == _comparable(before[0])  # the finished trial is untouched
    assert sum(t.state in FINISHED for t in trials) == 2
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    assert not victim_dir.exists()
    assert_no_dangling_checkpoint(trials)
    assert sqlite_integrity(workdir / "studies" / "kill.db") == "ok"
    assert time.monotonic() - started < 120


def _wait_for_training(process: subprocess.Popen[str], storage: str, name: str) -> None:
    """Until some trial of the study is past its first validation epoch (mid training)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except (KeyError, Exception):  # the study or its file does not exist yet
            trials = []
        if any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials):
            return
        time.sleep(0.1)
    pytest.fail("never caught a trial mid-training")


@pytest.mark.parametrize(
    "signum, workers", [(signal.SIGINT, 1), (signal.SIGTERM, 2)], ids=["SIGINT-one-process", "SIGTERM-two-workers"]
)
def test_a_signal_ends_the_running_trials_as_interrupted_and_resume_reruns_them(
    signum: int, workers: int, study_file: Callable[..., Path], workdir: Path
) -> None:
    name = "sig"
    path = study_file(name, {"study": {"n_trials": 2, "pruner": {"type": "none"}}, "trainer": {"max_epochs": 12}})
    storage = f"sqlite:///{workdir}/studies/{name}.db"
    process = subprocess.Popen(
        python_cli("run", str(path), "--workers", str(workers)),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_training(process, storage, name)
    sent = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    took = time.monotonic() - sent

    assert process.returncode == 128 + signum
    assert took < 10, f"took {took:.1f}s to stop"
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"tft-hpo: interrupted by {signal.Signals(signum).name}; to go on: ")
    assert f"tft-hpo resume {name} --storage sqlite:///" in last

    trials = _trials(workdir, name)
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert interrupted and all(t.user_attrs["fail_reason"] == "interrupted" for t in interrupted)
    assert not any(t.state == TrialState.RUNNING for t in trials)
    queued = sorted(t.system_attrs["failed_trial"] for t in trials if t.state == TrialState.WAITING)
    assert queued == sorted(t.number for t in interrupted), [(t.number, t.state, t.system_attrs) for t in trials]
    for trial in interrupted:
        assert not (workdir / "studies" / name / "trials" / str(trial.number)).exists()
        assert trial.user_attrs.get("checkpoint") is None  # none when it was stopped before its training

    assert main(["resume", name]) == 0
    trials = _trials(workdir, name)
    for victim in interrupted:
        retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
        assert len(retries) == 1
        # The victim's params and seed (a victim stopped while it was being asked for has sampled none yet).
        assert victim.params.items() <= retries[0].params.items()
        assert retries[0].user_attrs["seed"] == trial_seed(TINY["study"]["seed"], victim.number)
        assert victim.user_attrs.get("seed", retries[0].user_attrs["seed"]) == retries[0].user_attrs["seed"]
    assert sum(t.state in FINISHED for t in trials) == 2
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    assert_no_dangling_checkpoint(trials)
    assert sqlite_integrity(workdir / "studies" / f"{name}.db") == "ok"
