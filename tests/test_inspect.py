"""Inspecting a finished study: per-trial artifacts and notes, study figures, closing table, export, report.

One tiny real study (one trial of which fails in training) is run once for the module and read by every test.
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import optuna
import pytest
import tomli_w
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard import get_note

import tft_hpo
from tft_hpo.cli import main
from tft_hpo.config import load_study_file
from tft_hpo.data import build_datasets
from tft_hpo.figures import FIGURE_TITLES, study_figures
from tft_hpo.notes import trial_note
from tft_hpo.runner import run_study

from .conftest import TINY, merge

NAME = "insp"


@dataclass(frozen=True)
class Finished:
    """The module's study, where it lives, and what its run printed."""

    root: Path
    storage: str
    study: optuna.Study
    out: str


class _FailSecondTraining(pl.Callback):
    """Breaks the second trial's training (after its range test) so that one trial is FAIL."""

    def __init__(self) -> None:
        self.calls = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom in training")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    from tft_hpo.output import install_warning_filters

    install_warning_filters()  # the module fixture runs before the per-test autouse fixture
    root = tmp_path_factory.mktemp("inspect")
    changes = {
        "study": {"name": NAME, "output_dir": str(root / "studies")},
        "trainer": {"max_epochs": 1, "limit_train_batches": 2},
    }
    path = root / f"{NAME}.toml"
    path.write_text(tomli_w.dumps(merge(TINY, changes)))
    buffer = io.StringIO()
    run_study(load_study_file(path), callbacks=[_FailSecondTraining()], out=buffer)
    storage = f"sqlite:///{root}/studies/{NAME}.db"
    return Finished(root, storage, optuna.load_study(study_name=NAME, storage=storage), buffer.getvalue())


def _store(finished: Finished) -> FileSystemArtifactStore:
    return FileSystemArtifactStore(finished.root / "studies" / NAME / "artifacts")


def _artifact(finished: Finished, trial: FrozenTrial, filename: str, target: Path) -> Path:
    metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=finished.study._storage)}
    download_artifact(artifact_store=_store(finished), artifact_id=metas[filename].artifact_id, file_path=str(target))
    return target


def test_every_trial_carries_its_range_test_plot_curve_and_note(finished: Finished, tmp_path: Path) -> None:
    trials = finished.study.get_trials()
    assert [t.state for t in trials].count(TrialState.FAIL) == 1 and len(trials) == 3
    for trial in trials:
        finder = trial.user_attrs["lr_finder"]
        metas = get_all_artifact_meta(trial, storage=finished.study._storage)
        assert sorted((m.filename, m.mimetype) for m in metas) == [
            ("range_test.csv", "text/csv"),
            ("range_test.png", "image/png"),
        ]
        png = _artifact(finished, trial, "range_test.png", tmp_path / f"{trial.number}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        rows = list(
            csv.DictReader(_artifact(finished, trial, "range_test.csv", tmp_path / f"{trial.number}.csv").open())
        )
        assert [float(r["lr"]) for r in rows] == pytest.approx(finder["curve"]["lr"])
        assert [float(r["loss"]) for r in rows] == pytest.approx(
            [float("nan") if x is None else x for x in finder["curve"]["loss"]], nan_ok=True
        )

        note = get_note(optuna.Trial(finished.study, trial._trial_id))
        assert note.startswith(f"## Trial {trial.number}: ")
        assert f"**range-test suggestion**: {finder['suggestion']:.3e} by `{finder['source']}`" in note
        assert f"**learning rate used**: {trial.user_attrs['learning_rate']:.3e}" in note
        assert f"**factor**: {trial.params['lr_factor']:.3g}" in note
        assert f"in {finder['seconds']:.1f} s" in note
        if trial.state == TrialState.COMPLETE:
            assert f"complete, val_loss {trial.value:.5f}" in note
            assert f"**checkpoint**: `{trial.user_attrs['checkpoint']}`" in note
            assert f"**best epoch**: {trial.user_attrs['best_epoch']} of 1 trained" in note
        else:
            assert "failed" in note and "RuntimeError: boom in training" in note and "**checkpoint**: none" in note


def test_the_study_carries_the_dashboard_figures_of_its_trials(finished: Finished) -> None:
    storage = finished.study._storage
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(NAME))
    figures = {}
    for figure_id in FIGURE_TITLES:
        prefix = f"dashboard:plot_data:{figure_id}:"
        parts = sorted((int(k.removeprefix(prefix)), v) for k, v in attrs.items() if k.startswith(prefix))
        figures[figure_id] = json.loads("".join(v for _, v in parts))
    complete = [t for t in finished.study.get_trials() if t.state == TrialState.COMPLETE]
    scatter = figures["lr-vs-val-loss"]["data"][0]
    assert sorted(scatter["x"]) == pytest.approx(sorted(t.user_attrs["learning_rate"] for t in complete))
    assert sorted(scatter["y"]) == pytest.approx(sorted(t.value for t in complete))
    assert sorted(scatter["marker"]["color"]) == sorted(t.params["hidden_size"] for t in complete)
    by_name = {trace["name"]: trace for trace in figures["suggestion-vs-lr"]["data"]}
    best = finished.study.best_trial
    assert by_name[f"best: trial {best.number}"]["x"] == [pytest.approx(best.user_attrs["lr_finder"]["suggestion"])]
    assert sorted(by_name["trials"]["y"]) == pytest.approx(sorted(t.user_attrs["learning_rate"] for t in complete))
    assert figures["optimization-history"]["layout"]["title"]["text"] == FIGURE_TITLES["optimization-history"]


def test_the_figures_of_a_study_without_a_complete_trial_warn_nothing(caplog: pytest.LogCaptureFixture) -> None:
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            figures = study_figures(study)
    finally:
        optuna.logging.disable_propagation()
    assert set(figures) == set(FIGURE_TITLES)
    assert figures["optimization-history"].layout.title.text == FIGURE_TITLES["optimization-history"]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert not warnings


def test_the_run_closes_with_a_table_of_the_best_trials(finished: Finished) -> None:
    out = finished.out
    complete = sorted((t for t in finished.study.get_trials() if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    table = out[out.index("best 2 trial(s):") :].splitlines()
    header = ["trial", "val_loss", "learning", "rate", "suggestion", "lr_factor", "hidden_size", "best", "epoch"]
    assert table[1].split() == header
    for line, trial in zip(table[2:4], complete, strict=True):
        cells = line.split()
        assert cells[:3] == [str(trial.number), f"{trial.value:.5f}", f"{trial.user_attrs['learning_rate']:.3e}"]
    assert "pruned: 0 of 2 finished trial(s) (0%); failed: 1" in out
    seconds = sum(t.user_attrs["lr_finder"]["seconds"] for t in finished.study.get_trials())
    share = re.search(r"LR range tests: ([\d.]+)s of this run's ([\d.]+)s wall time \((\d+)%\)", out)
    assert share and float(share[1]) == pytest.approx(seconds, abs=0.06)
    in_tests, wall = float(share[1]), float(share[2])
    printing = 100 * 0.05 * (1 / wall + in_tests / wall**2)  # both figures are printed to 0.1 s
    assert abs(int(share[3]) - 100 * in_tests / wall) <= 0.5 + printing


def test_export_and_load_best_give_the_trained_model(
    finished: Finished, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = finished.study.best_trial
    assert main(["best", NAME, "--storage", finished.storage, "--export", str(tmp_path / "best")]) == 0
    assert "exported to" in capsys.readouterr().out
    record = json.loads((tmp_path / "best" / "best_trial.json").read_text())
    assert record["trial"] == best.number and record["value"] == best.value and record["params"] == best.params
    assert record["user_attrs"]["learning_rate"] == best.user_attrs["learning_rate"]
    config = json.loads((tmp_path / "best" / "config.json").read_text())
    assert config == finished.study.user_attrs["tft_hpo_config"]
    assert (tmp_path / "best" / "best.ckpt").read_bytes() == Path(best.user_attrs["checkpoint"]).read_bytes()
    assert (tmp_path / "best" / "range_test.png").read_bytes()[:4] == b"\x89PNG"

    model = tft_hpo.load_best(NAME, storage=finished.storage)
    assert not model.training and model.hparams.learning_rate == pytest.approx(best.user_attrs["learning_rate"])
    datasets = build_datasets(load_study_file(finished.root / f"{NAME}.toml").data)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    validated = trainer.validate(model, dataloaders=datasets.val_loader, verbose=False)[0]
    assert validated["val_loss"] == pytest.approx(best.value, rel=1e-5)  # the best epoch's weights
    kwargs = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False}
    predictions = model.predict(datasets.validation, trainer_kwargs=kwargs)
    assert tuple(predictions.shape) == (len(datasets.validation), TINY["data"]["max_prediction_length"])
    assert predictions.isfinite().all()


def test_report_is_one_self_contained_page(
    finished: Finished, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r" / "report.html"
    assert main(["report", NAME, "--storage", finished.storage, "--out", str(out), "--top", "2"]) == 0
    assert str(out) in capsys.readouterr().out
    page = out.read_text()
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=['\"]?https?:", page)  # nothing fetched
    assert page.count("<img class='range-test' src='data:image/png;base64,") == 2
    for figure_id in FIGURE_TITLES:
        assert f'id="{figure_id}"' in page
    best = finished.study.best_trial
    assert f"trial {best.number}: val_loss {best.value:.5f}" in page
    assert "COMPLETE 2, FAIL 1" in page and "0 of 2 finished (0%)" in page
    assert not list(out.parent.glob(".*partial"))


def test_bad_input_to_the_inspection_commands_exits_2(
    finished: Finished, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboard", "missing", "--storage", finished.storage]) == 2
    assert "study 'missing' does not exist" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", NAME, "--storage", finished.storage, "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", NAME, "--port", "70000"])
    assert exit_info.value.code == 2
    assert "expected a port number in [0, 65535]" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["best", NAME, "--storage", finished.storage, "--export", str(tmp_path / "file")]) == 2
    assert "--export: " in capsys.readouterr().err
    assert main(["report", NAME, "--storage", finished.storage, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["report", "missing", "--storage", finished.storage]) == 2
    assert "study 'missing' does not exist" in capsys.readouterr().err


def test_a_note_reads_pruned_and_fallback_trials_and_cached_range_tests() -> None:
    attrs = {
        "learning_rate": 1e-3,
        "lr_finder": {"suggestion": 1e-3, "heuristic": "steepest", "source": "fallback_lr", "steps": 12,
                      "seconds": 0.5, "cached_from": 4, "stop_reason": None,
                      "fallback": "steepest: no descent (loss falls 1.0% over 6 points)"},
        "best_epoch": 1,
        "epochs_trained": 2,
    }  # fmt: skip
    note = trial_note(7, "pruned after epoch 1", 0.52, {"lr_factor": 2.0}, attrs)
    assert note.startswith("## Trial 7: pruned after epoch 1, val_loss 0.52000\n")
    assert "**fallback**: no answer from steepest: no descent (loss falls 1.0% over 6 points)" in note
    assert "by `fallback_lr`" in note
    assert "**range test reused** from trial 4" in note and "**factor**: 2" in note
    off = trial_note(3, "complete", 0.4, {"learning_rate": 0.01}, {"learning_rate": 0.01, "lr_finder": None})
    assert "the sampler chose the learning rate" in off and "**learning rate used**: 1.000e-02" in off
