"""End to end, in process: real studies on a real SQLite file through the command line's entry point."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import optuna
import pytest
from optuna.trial import TrialState

from tft_hpo.cli import main
from tft_hpo.config import load_study_file
from tft_hpo.lr_heuristics import HEURISTICS
from tft_hpo.runner import run_study

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _load(name: str, workdir: Path) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/studies/{name}.db")


def test_window_mode_records_the_range_test_on_every_trial(
    study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(study_file("win"))]) == 0
    out = capsys.readouterr().out
    assert "study 'win' in sqlite:///studies/win.db" in out
    assert out.count("\ntrial ") + out.startswith("trial ") == 3
    assert "best trial" in out and "[3/3 finished]" in out

    study = _load("win", workdir)
    config = load_study_file(workdir / "win.toml")
    assert study.user_attrs["tft_hpo_config"] == config.to_dict()
    assert study.user_attrs["tft_hpo_version"]
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state in FINISHED for t in trials)
    for trial in trials:
        assert set(trial.params) == {
            "hidden_size", "attention_head_size", "hidden_continuous_size", "dropout", "gradient_clip_val", "lr_factor",
        }  # fmt: skip
        assert trial.params["hidden_continuous_size"] <= trial.params["hidden_size"]
        attrs = trial.user_attrs
        finder = attrs["lr_finder"]
        assert 1e-5 <= attrs["learning_rate"] <= 1.0
        expected = min(max(finder["suggestion"] * trial.params["lr_factor"], 1e-5), 1.0)
        assert attrs["learning_rate"] == pytest.approx(expected)
        assert finder["heuristic"] == "minimum" and finder["source"] in {*HEURISTICS, "fallback_lr"}
        if finder["cached_from"] is None:
            assert finder["steps"] > 0 and finder["seconds"] > 0 and len(finder["cache_key"]) == 16
        else:
            origin = trials[finder["cached_from"]].user_attrs["lr_finder"]
            assert {k: v for k, v in finder.items() if k not in ("seconds", "cached_from")} == {
                k: v for k, v in origin.items() if k not in ("seconds", "cached_from")
            }
        lrs = finder["curve"]["lr"]
        assert len(lrs) == len(finder["curve"]["loss"]) <= 100
        assert all(b > a for a, b in zip(lrs, lrs[1:], strict=False))
        assert attrs["epochs_trained"] >= 1 and attrs["train_seconds"] > 0
        assert 0 <= attrs["best_epoch"] < attrs["epochs_trained"]
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(min(trial.intermediate_values.values()))
            checkpoint = Path(attrs["checkpoint"])
            assert checkpoint.is_file()
            assert checkpoint.parent == (workdir / "studies" / "win" / "trials" / str(trial.number)).resolve()


def test_suggest_mode_trains_at_the_suggestion_without_a_zero_width_param(
    study_file: Callable[..., Path], workdir: Path
) -> None:
    assert main(["run", str(study_file("sug", {"study": {"n_trials": 2}, "lr_finder": {"mode": "suggest"}}))]) == 0
    for trial in _load("sug", workdir).get_trials():
        assert "learning_rate" not in trial.params and "lr_factor" not in trial.params
        assert trial.user_attrs["learning_rate"] == trial.user_attrs["lr_finder"]["suggestion"]


def test_off_mode_samples_the_learning_rate(study_file: Callable[..., Path], workdir: Path) -> None:
    assert main(["run", str(study_file("off", {"study": {"n_trials": 2}, "lr_finder": {"mode": "off"}}))]) == 0
    for trial in _load("off", workdir).get_trials():
        distribution = trial.distributions["learning_rate"]
        assert distribution.log and (distribution.low, distribution.high) == (1e-5, 1.0)
        assert trial.user_attrs["learning_rate"] == trial.params["learning_rate"]
        assert trial.user_attrs["lr_finder"] is None


def test_n_trials_is_the_total_and_resume_needs_no_study_file(
    study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = study_file("total", {"study": {"n_trials": 2}})
    assert main(["run", str(path)]) == 0
    assert main(["run", str(path), "--n-trials", "3"]) == 0
    assert len(_load("total", workdir).get_trials()) == 3
    capsys.readouterr()
    assert main(["run", str(path), "--n-trials", "3"]) == 0
    assert "nothing to run" in capsys.readouterr().out
    assert len(_load("total", workdir).get_trials()) == 3

    path.unlink()
    assert main(["resume", "total", "--n-trials", "4"]) == 0
    trials = _load("total", workdir).get_trials()
    assert len(trials) == 4 and all(t.state in FINISHED for t in trials)
    capsys.readouterr()
    assert main(["resume", "total"]) == 0  # the stored n_trials is 2, already passed
    assert "nothing to run" in capsys.readouterr().out


def test_a_changed_search_space_is_refused_unless_forced(
    study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(study_file("chg", {"study": {"n_trials": 1}}))]) == 0
    changed = study_file("chg", {"study": {"n_trials": 2}, "search_space": {"hidden_size": {"low": 8, "high": 16}}})
    capsys.readouterr()
    assert main(["run", str(changed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "search_space.hidden_size.high (stored 12, file 16)" in err and "--force" in err
    assert len(_load("chg", workdir).get_trials()) == 1
    assert main(["run", str(changed), "--force"]) == 0
    study = _load("chg", workdir)
    assert len(study.get_trials()) == 2
    assert study.user_attrs["tft_hpo_config"]["search_space"]["hidden_size"]["high"] == 16


def test_an_aggressive_pruner_prunes(study_file: Callable[..., Path], workdir: Path) -> None:
    pruner = {"type": "percentile", "percentile": 10.0, "n_startup_trials": 1, "n_warmup_steps": 0}
    changes = {"study": {"n_trials": 5, "pruner": pruner}, "trainer": {"max_epochs": 3}}
    assert main(["run", str(study_file("prune", changes))]) == 0
    states = [t.state for t in _load("prune", workdir).get_trials()]
    assert TrialState.PRUNED in states and len(states) == 5


class _FailOnce(pl.Callback):
    """A user callback that breaks the first trial's training."""

    def __init__(self) -> None:
        self.calls = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("boom in a user callback")


def test_a_trial_that_raises_fails_and_the_study_goes_on(study_file: Callable[..., Path], workdir: Path) -> None:
    config = load_study_file(study_file("fail", {"study": {"n_trials": 2}}))
    summary = run_study(config, callbacks=[_FailOnce()])
    trials = _load("fail", workdir).get_trials()
    assert [t.state for t in trials][0] == TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"] == "RuntimeError: boom in a user callback"
    assert not (workdir / "studies" / "fail" / "trials" / "0").exists()
    assert summary.ran == 2 and summary.finished == 1  # the failed trial counts against this run only
    assert main(["run", str(workdir / "fail.toml")]) == 0
    assert sum(t.state in FINISHED for t in _load("fail", workdir).get_trials()) == 2


def test_status_and_best(study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(study_file("st", {"study": {"n_trials": 2}}))]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "st: COMPLETE" in out or "st: PRUNED" in out
    assert main(["best", "st", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    study = _load("st", workdir)
    assert record["trial"] == study.best_trial.number and record["value"] == study.best_value
    assert math.isfinite(record["learning_rate"]) and Path(record["checkpoint"]).is_file()
    assert main(["best", "st"]) == 0
    assert "learning rate" in capsys.readouterr().out
    assert main(["best", "missing", "--storage", "sqlite:///studies/st.db"]) == 2
    assert "study 'missing' does not exist" in capsys.readouterr().err
    assert main(["resume", "missing"]) == 2
    assert "no SQLite database" in capsys.readouterr().err


def test_lr_find_writes_the_curve_and_plot(
    study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lr-find", str(study_file("lrf")), "--out", "out"]) == 0
    out = capsys.readouterr().out
    assert "suggested learning rate:" in out
    rows = (workdir / "out" / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "step,lr,loss" and len(rows) > 5
    assert (workdir / "out" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert not (workdir / "studies" / "lrf.db").exists()


def test_bad_data_is_refused_before_any_study_is_written(
    study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    too_long = study_file("long", {"data": {"max_encoder_length": 60}})
    assert main(["run", str(too_long)]) == 2
    assert "data.max_encoder_length: the longest series has 30 steps" in capsys.readouterr().err
    (workdir / "d.csv").write_text("g,t,y\na,0,1\n")
    roles = {"target": "y", "group_ids": ["g"], "time_idx": "t", "static_categoricals": ["nope"]}
    missing = study_file("cols", {"data": {"source": "file", "path": "d.csv", **roles}})
    assert main(["run", str(missing)]) == 2
    assert "column(s) nope named in the column roles are not in the data" in capsys.readouterr().err
    assert not (workdir / "studies").exists()


def test_the_same_study_file_reproduces_its_trials(study_file: Callable[..., Path], workdir: Path) -> None:
    path = study_file("rep", {"study": {"n_trials": 2}})
    assert main(["run", str(path)]) == 0
    assert main(["run", str(path), "--study-name", "rep2", "--storage", "sqlite:///studies/rep2.db"]) == 0
    first, second = _load("rep", workdir).get_trials(), _load("rep2", workdir).get_trials()
    assert [t.params for t in first] == [t.params for t in second]
    assert [t.value for t in first] == pytest.approx([t.value for t in second], rel=1e-6)
    assert [t.user_attrs["lr_finder"]["suggestion"] for t in first] == pytest.approx(
        [t.user_attrs["lr_finder"]["suggestion"] for t in second], rel=1e-6
    )
