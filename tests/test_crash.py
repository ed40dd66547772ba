"""Real processes: a SIGKILLed run leaves a stale trial that the next run fails and re-runs; bad input exits 2."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tft_hpo.cli import main

from .conftest import python_cli

pytestmark = pytest.mark.slow


def _running_mid_training(storage: str, name: str) -> optuna.trial.FrozenTrial | None:
    if not Path(storage.removeprefix("sqlite:///")).is_file():
        return None
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
    return running[0] if finished and running else None


def test_a_killed_run_is_failed_and_rerun_with_the_same_params(study_file: Callable[..., Path], workdir: Path) -> None:
    path = study_file("kill", {"study": {"n_trials": 3, "pruner": {"type": "none"}}, "trainer": {"max_epochs": 8}})
    storage = f"sqlite:///{workdir}/studies/kill.db"
    process = subprocess.Popen(
        python_cli("run", str(path)), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    victim = None
    deadline = time.monotonic() + 240
    while victim is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        victim = _running_mid_training(storage, "kill")
    assert victim is not None, (
        f"never caught a trial mid-training: {process.stderr.read().decode() if process.stderr else ''}"
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(3)  # longer than the 2 s grace period: the victim's heartbeat is now stale

    assert main(["run", str(path)]) == 0

    trials = optuna.load_study(study_name="kill", storage=storage).get_trials()
    assert trials[victim.number].state == TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.params == victim.params and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["seed"] == victim.user_attrs["seed"]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    assert not any(t.state == TrialState.RUNNING for t in trials)


def test_bad_input_in_a_real_process_is_one_line_without_traceback(workdir: Path) -> None:
    (workdir / "bad.toml").write_text("[trainer]\nmax_epochs = -1\n")
    result = subprocess.run(python_cli("run", "bad.toml"), cwd=workdir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "trainer.max_epochs" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "studies").exists()
