"""Shared fixtures: tiny study files that train for real in seconds, in a temporary folder."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

# The tiny test models gain nothing from several threads per process, and on a small shared machine the
# extra threads' spin-waiting costs more than it brings (a subprocess test ran 2.3x faster with one thread).
# Set before torch is imported; subprocesses inherit it; a value already set is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
STALLION = Path(os.environ.get("TFT_HPO_STALLION", REPO.parent / "shared" / "data" / "stallion.parquet"))

TINY: dict[str, Any] = {
    "study": {"n_trials": 3, "seed": 7, "heartbeat_interval": 1, "grace_period": 2},
    "data": {
        "synthetic": {"n_agencies": 2, "n_skus": 2, "n_months": 30, "seed": 1},
        "max_encoder_length": 12,
        "max_prediction_length": 3,
        "batch_size": 32,
    },
    "trainer": {"max_epochs": 2, "limit_train_batches": 4, "accelerator": "cpu"},
    "search_space": {
        "hidden_size": {"low": 8, "high": 12},
        "hidden_continuous_size": {"low": 4, "high": 8},
        "attention_head_size": {"low": 1, "high": 2},
    },
    "lr_finder": {"num_training": 10},
}

#: Column roles of a generated demand panel written to a file (``source = "file"``).
FILE_ROLES: dict[str, Any] = {
    "source": "file",
    "target": "volume",
    "group_ids": ["agency", "sku"],
    "static_categoricals": ["agency", "sku"],
    "time_varying_known_reals": ["time_idx", "price", "discount"],
    "time_varying_unknown_reals": ["volume"],
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in, nested dicts key by key."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working folder (studies/ lands inside it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def study_file(workdir: Path) -> Callable[..., Path]:
    """Write a tiny study file named ``name`` with ``changes`` merged into the tiny config."""

    def write(name: str = "tiny", changes: dict[str, Any] | None = None) -> Path:
        path = workdir / f"{name}.toml"
        path.write_text(tomli_w.dumps(merge(TINY, changes or {})))
        return path

    return write


def python_cli(*args: str) -> list[str]:
    """The command line running ``tft-hpo`` with this interpreter."""
    return [sys.executable, "-m", "tft_hpo.cli", *args]


@pytest.fixture(autouse=True)
def _library_warning_filters() -> None:
    """The same precise filters the CLI installs (pytest resets filters for every test)."""
    from tft_hpo.output import install_warning_filters

    install_warning_filters()


FINISHED_STATES = ("COMPLETE", "PRUNED")

#: The database servers of the development machine and of CI (trust auth; database ``test``).
SERVERS = {
    "postgresql": os.environ.get("TFT_HPO_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("TFT_HPO_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def require_server(url: str) -> None:
    """Skip (with the reason) when the server of ``url`` is unreachable; in CI (``$CI`` set), fail instead."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return
    except Exception as error:  # any driver's connection error
        reason = f"database server unreachable at {url}: {str(error).strip().splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the database tests must run)")
        pytest.skip(reason)
    finally:
        engine.dispose()


def sqlite_integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a SQLite file (``ok`` when sound)."""
    import sqlite3

    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def assert_no_dangling_checkpoint(trials: list[Any]) -> None:
    """No trial points to a checkpoint that is not on disk."""
    for trial in trials:
        checkpoint = trial.user_attrs.get("checkpoint")
        assert checkpoint is None or Path(checkpoint).is_file(), f"trial {trial.number} points to missing {checkpoint}"
