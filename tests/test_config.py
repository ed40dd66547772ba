"""Study files: the shipped ones validate; bad ones end with one line, exit 2, and no study written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tft_hpo.cli import main
from tft_hpo.config import load_study_file, search_relevant_differences
from tft_hpo.errors import ConfigError

from .conftest import REPO


def test_quickstart_validates() -> None:
    config = load_study_file(REPO / "studies" / "quickstart.toml")
    assert config.study.name == "quickstart"
    assert config.study.storage_url == "sqlite:///studies/quickstart.db"
    assert config.data.source == "synthetic"
    assert config.lr_finder.mode == "window"


def test_stallion_file_matches_the_tutorial_settings() -> None:
    config = load_study_file(REPO / "studies" / "stallion.toml")
    data = config.data
    assert data.source == "stallion"
    assert data.group_ids == ["agency", "sku"]
    assert (data.max_encoder_length, data.max_prediction_length) == (36, 6)
    assert data.target_normalizer == "group" and data.target_transformation == "softplus"
    assert "special_days" in data.time_varying_known_categoricals
    assert len(data.variable_groups["special_days"]) == 12


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-study.toml"
    path.write_text("[study]\nn_trials = 2\n")
    assert load_study_file(path).study.name == "my-study"


def test_source_defaults_fill_the_column_roles(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[data]\nsource = "stallion"\n')
    data = load_study_file(path).data
    assert data.target == "volume" and "log_volume" in data.time_varying_unknown_reals


def test_search_relevant_differences_name_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[study]\nn_trials = 2\n")
    stored = load_study_file(path).to_dict()
    path.write_text("[study]\nn_trials = 9\n[search_space]\nhidden_size = { low = 8, high = 128 }\n")
    current = load_study_file(path).to_dict()
    differences = search_relevant_differences(stored, current)
    assert len(differences) == 2  # n_trials is not search-relevant
    assert any(d.startswith("search_space.hidden_size.high") for d in differences)
    assert any(d.startswith("search_space.hidden_size.log") for d in differences)


BAD_FILES = {
    "unknown key": ("[study]\nnam = 'x'\n", "study.nam: unknown key"),
    "unknown section": ("[trainr]\nmax_epochs = 2\n", "trainr: unknown key"),
    "wrong type": ("[trainer]\nmax_epochs = 'ten'\n", "trainer.max_epochs"),
    "zero length": ("[data]\nmax_prediction_length = 0\n", "data.max_prediction_length"),
    "low above high": ("[search_space]\nhidden_size = { low = 64, high = 8 }\n", "search_space.hidden_size"),
    "unknown mode": ("[lr_finder]\nmode = 'auto'\n", "lr_finder.mode: expected 'window', 'suggest' or 'off'"),
    "unknown pruner": ("[study.pruner]\ntype = 'asha'\n", "study.pruner.type"),
    "min_lr above max_lr": ("[lr_finder]\nmin_lr = 1.0\nmax_lr = 0.1\n", "lr_finder: min_lr (1.0) must be below"),
    "file source without path": ("[data]\nsource = 'file'\ntarget = 'y'\ngroup_ids = ['g']\n", "path is required"),
    "not toml": ("[study\n", "not valid TOML"),
    "bad study name": ("[study]\nname = '../escape'\n", "study.name"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_study_file_gives_one_line_and_exit_2(case: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, expected = BAD_FILES[case]
    path = workdir / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tft-hpo: error: ")
    assert expected in err
    assert not (workdir / "studies").exists()


def test_missing_study_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "nope.toml"]) == 2
    assert "nope.toml: no such study file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "x.toml", "--n-trials", "0"], "--n-trials: expected a positive integer, got 0"),
        (["run", "x.toml", "--n-trials", "-3"], "--n-trials: expected a positive integer, got -3"),
        (["run", "x.toml", "--timeout", "soon"], "--timeout: expected a positive number of seconds"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_config_error_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[lr_finder]\nwindow = 1\n")
    with pytest.raises(ConfigError, match=r"lr_finder.window"):
        load_study_file(path)
