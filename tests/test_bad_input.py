"""Bad input of every kind: exit status 2, one line naming the field or file and what was expected, no
traceback, and no study or trial written. (More cases: test_config.py and test_study.py.)"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from tft_hpo.cli import main
from tft_hpo.synthetic import make_demand_panel

from .conftest import FILE_ROLES, python_cli

#: Study-file changes (merged into the tiny study) and a part of the message they must give.
BAD_STUDY_FILES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown nested key": (
        {"search_space": {"dropout": {"low": 0.1, "high": 0.2, "step": 0.1}}},
        "search_space.dropout.step: unknown key",
    ),
    "unknown sampler": ({"study": {"sampler": "cmaes"}}, "study.sampler: expected 'tpe' or 'random', got 'cmaes'"),
    "unknown heuristic": ({"lr_finder": {"heuristic": "no-such-heuristic"}}, "lr_finder.heuristic: expected"),
    "unknown direction": ({"study": {"direction": "minimise"}}, "study.direction: expected 'minimize' or 'maximize'"),
    "unknown data source": ({"data": {"source": "excel"}}, "data.source: expected"),
    "unknown target normalizer": ({"data": {"target_normalizer": "robust"}}, "data.target_normalizer: expected"),
    "unknown accelerator": ({"trainer": {"accelerator": "tpu"}}, "trainer.accelerator: expected"),
    "unknown precision": ({"trainer": {"precision": "8-bit"}}, "trainer.precision: expected"),
    "n_trials not a number": ({"study": {"n_trials": "many"}}, "study.n_trials"),
    "range not a table": ({"search_space": {"hidden_size": 16}}, "search_space.hidden_size"),
    "group_ids not a list": ({"data": {"group_ids": "agency"}}, "data.group_ids"),
    "negative encoder length": ({"data": {"max_encoder_length": -4}}, "data.max_encoder_length"),
    "zero batch size": ({"data": {"batch_size": 0}}, "data.batch_size"),
    "zero n_trials in the file": ({"study": {"n_trials": 0}}, "study.n_trials"),
    "zero heartbeat interval": ({"study": {"heartbeat_interval": 0}}, "study.heartbeat_interval"),
    "negative timeout": ({"study": {"timeout": -1}}, "study.timeout"),
    "attention_head_size low above high": (
        {"search_space": {"attention_head_size": {"low": 3, "high": 1}}},
        "search_space.attention_head_size: low (3) must not exceed high (1)",
    ),
    "hidden_continuous_size low above high": (
        {"search_space": {"hidden_continuous_size": {"low": 9, "high": 4}}},
        "search_space.hidden_continuous_size: low (9) must not exceed high (4)",
    ),
    "dropout low above high": (
        {"search_space": {"dropout": {"low": 0.3, "high": 0.1}}},
        "search_space.dropout: low (0.3) must not exceed high (0.1)",
    ),
    "gradient_clip_val low above high": (
        {"search_space": {"gradient_clip_val": {"low": 1.0, "high": 0.1}}},
        "search_space.gradient_clip_val: low (1.0) must not exceed high (0.1)",
    ),
    "min_lr equal to max_lr": ({"lr_finder": {"min_lr": 0.01, "max_lr": 0.01}}, "min_lr (0.01) must be below max_lr"),
    "fallback_lr outside the sweep": ({"lr_finder": {"fallback_lr": 5.0}}, "fallback_lr (5.0) must lie in"),
    "range test too short": ({"lr_finder": {"num_training": 3}}, "lr_finder.num_training"),
    "window not above 1": ({"lr_finder": {"window": 1}}, "lr_finder.window"),
    "dropout up to 1": ({"search_space": {"dropout": {"low": 0.1, "high": 1.0}}}, "dropout must lie in [0, 1)"),
    "log range from zero": (
        {"search_space": {"gradient_clip_val": {"low": 0.0, "high": 1.0, "log": True}}},
        "low must be > 0 for a log range",
    ),
    "batch fraction above 1": ({"trainer": {"limit_train_batches": 1.5}}, "trainer: limit_train_batches must be"),
    "min encoder above max": ({"data": {"min_encoder_length": 20}}, "min_encoder_length (20) must not exceed"),
    "validation horizon below prediction": (
        {"data": {"validation_horizon": 1}},
        "validation_horizon (1) must be at least max_prediction_length (3)",
    ),
    "percentile above 100": ({"study": {"pruner": {"percentile": 150.0}}}, "study.pruner.percentile"),
    "reduction factor 1": ({"study": {"pruner": {"reduction_factor": 1}}}, "study.pruner.reduction_factor"),
    "file source without target": (
        {"data": {"source": "file", "path": "d.csv", "group_ids": ["g"]}},
        "target is required when source = 'file'",
    ),
}


def _cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of the command line, run in this process."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.err


def _assert_one_line_error(status: int, err: str, expected: str) -> None:
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("tft-hpo"), err
    assert ": error: " in err and expected in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("case", sorted(BAD_STUDY_FILES))
def test_bad_study_file(
    case: str, study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changes, expected = BAD_STUDY_FILES[case]
    _assert_one_line_error(*_cli(["run", str(study_file("bad", changes))], capsys), expected)
    assert not (workdir / "studies").exists()


def test_study_file_that_is_a_directory(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "dir.toml").mkdir()
    _assert_one_line_error(*_cli(["run", "dir.toml"], capsys), "dir.toml: cannot read the study file")


def test_study_file_that_is_not_utf8(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "latin.toml").write_bytes(b"[study]\nname = '\xe9t\xe9'\n")
    _assert_one_line_error(*_cli(["run", "latin.toml"], capsys), "latin.toml: cannot read the study file")
    assert not (workdir / "studies").exists()


def test_section_that_is_not_a_table(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "flat.toml").write_text("trainer = 3\n")
    _assert_one_line_error(*_cli(["run", "flat.toml"], capsys), "trainer")
    assert not (workdir / "studies").exists()


def _panel() -> Any:
    return make_demand_panel(2, 2, 30, 1)


def _write_csv(frame: Any, path: Path) -> None:
    frame.to_csv(path, index=False)


#: A data file (written by the function into the given path) and a part of the message it must give.
BAD_DATA: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "missing data file": ("missing.csv", lambda path: None, "data.path: no such data file: missing.csv"),
    "not CSV or Parquet": ("data.xlsx", lambda path: path.write_text("x"), "data.xlsx must be a .csv or .parquet"),
    "corrupt Parquet": ("data.parquet", lambda path: path.write_bytes(b"PAR1 broken"), "data.path: cannot read"),
    "non-numeric target": (
        "data.csv",
        lambda path: _write_csv(_panel().assign(volume="many"), path),
        "data.target: column 'volume' must be numeric",
    ),
    "NaN in the target": (
        "data.csv",
        lambda path: _write_csv(_panel().assign(volume=lambda f: f.volume.where(f.time_idx != 5)), path),
        "data.target: column 'volume' has 4 NaN/inf values",
    ),
    "infinity in the target": (
        "data.csv",
        lambda path: _write_csv(_panel().assign(volume=lambda f: f.volume.where(f.time_idx != 5, float("inf"))), path),
        "data.target: column 'volume' has 4 NaN/inf values",
    ),
    "duplicate (group, time) rows": (
        "data.csv",
        lambda path: _write_csv(_panel().pipe(lambda f: pd.concat([f, f.iloc[:3]])), path),
        "data: 3 duplicate rows for the same group_ids and time_idx",
    ),
    "empty data set": ("data.csv", lambda path: _write_csv(_panel().iloc[:0], path), "data: the data set is empty"),
    "time index that is not integer": (
        "data.csv",
        lambda path: _write_csv(_panel().assign(time_idx=lambda f: f.time_idx + 0.5), path),
        "data.time_idx: column 'time_idx' must hold integers",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data(
    case: str, study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, write, expected = BAD_DATA[case]
    write(workdir / name)
    path = study_file("bad", {"data": {**FILE_ROLES, "path": name}})
    _assert_one_line_error(*_cli(["run", str(path)], capsys), expected)
    assert not (workdir / "studies").exists()


def test_missing_stallion_file(
    study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = study_file("bad", {"data": {"source": "stallion", "path": "nowhere/stallion.parquet"}})
    _assert_one_line_error(*_cli(["run", str(path)], capsys), "data.path: no such data file: nowhere/stallion.parquet")
    assert not (workdir / "studies").exists()


BAD_STORAGE: dict[str, tuple[str, str]] = {
    "unknown dialect": ("foo://user@host/db", "storage: unknown database dialect 'foo'"),
    "driver not installed": ("mysql://root@127.0.0.1:3306/test", "storage: the database driver for 'mysql' is not"),
    "not a URL": ("just some text", "is not a SQLAlchemy URL"),
    "in-memory SQLite": ("sqlite://", "an in-memory SQLite database keeps nothing"),
    "SQLite directory that cannot be created": ("sqlite:///{workdir}/a-file/sub/x.db", "storage: cannot create the"),
    "refused server connection": ("postgresql+psycopg://postgres@127.0.0.1:1/test", "Connection refused"),
    "server that never answers": ("postgresql+psycopg://postgres@10.255.255.1:5432/test", "storage: cannot open"),
}


@pytest.mark.parametrize("case", sorted(BAD_STORAGE))
def test_bad_storage_url(
    case: str, study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, expected = BAD_STORAGE[case]
    (workdir / "a-file").write_text("not a directory")
    started = time.monotonic()
    status, err = _cli(["run", str(study_file("bad")), "--storage", url.format(workdir=workdir)], capsys)
    _assert_one_line_error(status, err, expected)
    assert time.monotonic() - started < 10
    assert not (workdir / "studies").exists()


def test_existing_study_with_another_direction(
    study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tft_hpo.config import load_study_file
    from tft_hpo.runner import open_study

    _, _, study = open_study(load_study_file(study_file("dir")))  # a stored study, no trial yet
    stored = study.user_attrs
    maximize = study_file("dir", {"study": {"direction": "maximize"}})
    expected = "study 'dir' exists with other settings: study.direction (stored 'minimize', file 'maximize')"
    _assert_one_line_error(*_cli(["run", str(maximize)], capsys), expected)
    study = optuna.load_study(study_name="dir", storage=f"sqlite:///{workdir}/studies/dir.db")
    assert study.get_trials() == [] and study.user_attrs == stored and study.direction.name == "MINIMIZE"


@pytest.mark.parametrize("command", ["resume", "worker"])
def test_missing_study(
    command: str, study_file: Callable[..., Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _assert_one_line_error(*_cli([command, "nope"], capsys), "storage: no SQLite database at studies/nope.db")
    from tft_hpo.config import load_study_file
    from tft_hpo.runner import open_study

    open_study(load_study_file(study_file("other")))
    url = f"sqlite:///{workdir}/studies/other.db"
    _assert_one_line_error(
        *_cli([command, "nope", "--storage", url], capsys), f"{command}: study 'nope' does not exist"
    )
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["other"]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "x.toml", "--workers", "0"], "argument --workers: expected a positive integer, got 0"),
        (["run", "x.toml", "--workers", "two"], "argument --workers: expected a positive integer, got 'two'"),
        (["run", "x.toml", "--n-trials", "abc"], "argument --n-trials: expected a positive integer, got 'abc'"),
        (["run", "x.toml", "--timeout", "0"], "argument --timeout: expected a positive number of seconds, got 0"),
        (["worker", "s", "--threads", "0"], "argument --threads: expected a positive integer, got 0"),
        (["resume", "s", "--n-trials", "-1"], "argument --n-trials: expected a positive integer, got -1"),
        (["run"], "the following arguments are required: study_file"),
    ],
)
def test_bad_flags(argv: list[str], expected: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_one_line_error(*_cli(argv, capsys), expected)
    assert not (workdir / "studies").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--storage", "postgresql+psycopg://postgres@127.0.0.1:1/test"], "storage: cannot open"),
        (["--workers", "0"], "argument --workers: expected a positive integer, got 0"),
        (["--n-trials", "-2"], "argument --n-trials: expected a positive integer, got -2"),
    ],
)
def test_no_traceback_in_a_real_process(
    argv: list[str], expected: str, study_file: Callable[..., Path], workdir: Path
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        python_cli("run", str(study_file("bad")), *argv), cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 30  # most of it importing torch
    assert result.returncode == 2 and result.stdout == ""
    _assert_one_line_error(result.returncode, result.stderr, expected)
    assert not (workdir / "studies").exists()
