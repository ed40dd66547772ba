"""One self-contained HTML page on a study: summary, top trials, the study figures and each top trial's range test.

Everything is inlined (plotly.js once, the range-test plots as base64 PNG): the page opens offline.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import optuna
import plotly.io as pio
from optuna.trial import FrozenTrial, TrialState

from tft_hpo.artifacts import save_trial_range_test_plot
from tft_hpo.errors import StorageError, UserError
from tft_hpo.figures import study_figures
from tft_hpo.progress import range_test_seconds
from tft_hpo.results import best_trial
from tft_hpo.storage import find_study, open_storage, redacted_url, stored_config

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f4f4f4; }
figure { display: inline-block; margin: 0.5em; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f8f8f8; padding: 1em; overflow-x: auto; }
"""


def write_report(name: str, storage_url: str, out: Path, top: int = 5) -> Path:
    """Write the report of study ``name`` to ``out`` (replaced whole, never left half-written)."""
    study = find_study(open_storage(storage_url, must_exist=True), name)
    if study is None:
        raise StorageError(f"report: study {name!r} does not exist in {redacted_url(storage_url)}")
    page = render_report(study, storage_url, top)
    if out.is_dir():
        raise UserError(f"--out: {out} is a folder; give a file name such as report.html")
    partial = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, out)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"--out: cannot write {out}: {error.strerror}") from None
    return out


def render_report(study: optuna.Study, storage_url: str, top: int = 5) -> str:
    """The report page as one HTML string."""
    trials = study.get_trials(deepcopy=False)
    completed = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
        key=lambda t: t.value,
        reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE,
    )[:top]
    sections = [
        f"<h1>Study {html.escape(study.study_name)}</h1>",
        _summary(study, trials, storage_url),
        f"<h2>Top {len(completed)} trial(s)</h2>",
        _top_table(completed) if completed else "<p>No completed trial yet.</p>",
        "<h2>Figures</h2>",
        _figures(study),
        "<h2>Range tests of the top trials</h2>",
        _range_tests(completed),
        "<h2>Study config</h2>",
        f"<details><summary>stored config (JSON)</summary><pre>{html.escape(_config_json(study))}</pre></details>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>tft-hpo report: {html.escape(study.study_name)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def _summary(study: optuna.Study, trials: list[FrozenTrial], storage_url: str) -> str:
    counts = Counter(t.state.name for t in trials)
    finished = counts["COMPLETE"] + counts["PRUNED"]
    pruned_share = counts["PRUNED"] / finished if finished else 0.0
    trial_seconds = sum(t.duration.total_seconds() for t in trials if t.duration)
    lr_seconds = sum(range_test_seconds(t) for t in trials)
    best = best_trial(study)
    rows = [
        ("storage", redacted_url(storage_url)),
        ("direction", study.direction.name.lower()),
        ("trials", ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "none"),
        ("pruned share", f"{counts['PRUNED']} of {finished} finished ({pruned_share:.0%})"),
        ("best", f"trial {best.number}: val_loss {best.value:.5f}" if best else "no completed trial yet"),
        (
            "time in trials",
            f"{trial_seconds:.1f}s, of which LR range tests {lr_seconds:.1f}s"
            f" ({lr_seconds / trial_seconds if trial_seconds else 0.0:.0%})",
        ),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class='summary'>{body}</table>"


def _top_table(trials: list[FrozenTrial]) -> str:
    head = ["rank", "trial", "val_loss", "LR used", "suggestion", "heuristic", "fallback", "params", "best epoch"]
    rows = []
    for rank, trial in enumerate(trials, start=1):
        attrs = trial.user_attrs
        finder = attrs.get("lr_finder") or {}
        cells = [
            str(rank),
            str(trial.number),
            f"{trial.value:.5f}",
            _format(attrs.get("learning_rate"), ".3e"),
            _format(finder.get("suggestion"), ".3e"),
            str(finder.get("heuristic", "-")),
            str(finder.get("fallback") or "-"),
            ", ".join(f"{key}={_format(value, '.4g')}" for key, value in trial.params.items()),
            f"{attrs.get('best_epoch', '-')} of {attrs.get('epochs_trained', '-')}",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    return f"<table class='top-trials'>{header}{''.join(rows)}</table>"


def _figures(study: optuna.Study) -> str:
    parts = []
    for index, (figure_id, figure) in enumerate(study_figures(study).items()):
        parts.append(
            pio.to_html(
                figure,
                full_html=False,
                include_plotlyjs=index == 0,  # plotly.js inlined once, before the first figure
                div_id=figure_id,
                config={"displaylogo": False},
            )
        )
    return "".join(parts)


def _range_tests(trials: list[FrozenTrial]) -> str:
    figures = []
    with tempfile.TemporaryDirectory(prefix="tft-hpo-report-") as folder:
        for trial in trials:
            path = Path(folder) / f"trial_{trial.number}.png"
            if not save_trial_range_test_plot(trial.number, trial.params, trial.user_attrs, path):
                continue
            encoded = base64.b64encode(path.read_bytes()).decode("ascii")
            figures.append(
                f"<figure><img class='range-test' src='data:image/png;base64,{encoded}' "
                f"alt='LR range test of trial {trial.number}'>"
                f"<figcaption>trial {trial.number}: val_loss {trial.value:.5f}</figcaption></figure>"
            )
    return "".join(figures) or "<p>No range tests (lr_finder.mode = off, or no completed trial).</p>"


def _config_json(study: optuna.Study) -> str:
    try:
        return json.dumps(stored_config(study).to_dict(), indent=2)
    except StorageError as error:
        return str(error)


def _format(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else ("-" if value is None else str(value))
