"""Property: no mutation of a valid study file makes the command line end with a traceback.

Each example runs ``tft-hpo run FILE --check`` in this process: a mutated file is either valid (exit 0:
the file and its data check out, nothing is trained or written) or refused with one line (exit 2).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tft_hpo.cli import main

from .conftest import TINY, merge

#: The tiny study with every section and every range spelled out, so that mutations reach every field.
VALID: dict[str, Any] = merge(
    TINY,
    {
        "study": {"direction": "minimize", "sampler": "random", "pruner": {"type": "median", "n_warmup_steps": 0}},
        "data": {"min_encoder_length": 6, "target_normalizer": "group", "target_transformation": "softplus"},
        "search_space": {
            "dropout": {"low": 0.1, "high": 0.3},
            "gradient_clip_val": {"low": 0.01, "high": 1.0, "log": True},
        },
        "lr_finder": {"mode": "window", "min_lr": 1e-5, "max_lr": 1.0, "window": 10.0, "fallback_lr": 1e-3},
    },
)

_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=200),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
    st.text(max_size=6),
    st.sampled_from(["tpe", "median", "file", "stallion", "suggest", "off", "auto", "cpu", "log", "none"]),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), max_size=2),
)


def _paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of ``tree``, sections included."""
    found = []
    for key, value in tree.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found.extend(_paths(value, (*prefix, key)))
    return found


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    tree = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(tree)))
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        operation = draw(st.sampled_from(["replace", "delete", "add unknown key", "swap"]))
        if operation == "replace":
            parent[path[-1]] = draw(_VALUES)
        elif operation == "delete":
            del parent[path[-1]]
        elif operation == "add unknown key":
            parent[draw(st.sampled_from(["extra", "Low", "n_trial"]))] = draw(_VALUES)
        elif isinstance(parent[path[-1]], dict) and {"low", "high"} <= parent[path[-1]].keys():
            bounds = parent[path[-1]]
            bounds["low"], bounds["high"] = bounds["high"], bounds["low"]
    return tree


@pytest.fixture
def check(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Callable[[dict[str, Any]], tuple[int, str]]:
    counter = itertools.count()

    def run(tree: dict[str, Any]) -> tuple[int, str]:
        path = workdir / f"mutant{next(counter)}.toml"
        path.write_text(tomli_w.dumps(tree))
        try:
            status = main(["run", str(path), "--check"])
        except SystemExit as exit_:
            status = exit_.code
        return status, capsys.readouterr().err

    return run


def test_the_unmutated_file_is_valid(check: Callable[[dict[str, Any]], tuple[int, str]]) -> None:
    assert check(VALID) == (0, "")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=_mutated())
def test_a_mutated_study_file_is_checked_or_refused_in_one_line(
    tree: dict[str, Any], check: Callable[[dict[str, Any]], tuple[int, str]], workdir: Path
) -> None:
    status, err = check(tree)  # an unexpected exception would fail the test with its traceback
    event(f"exit {status}")
    assert status in (0, 2)
    if status == 2:
        assert err.count("\n") == 1 and err.startswith("tft-hpo: error: "), err
    else:
        assert err == ""
    assert not (workdir / "studies").exists()
