"""Study-level plotly figures: val_loss against the LR used, range-test suggestion against LR, history."""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
import plotly.graph_objects as go
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

#: Figure id (a valid HTML id, as optuna-dashboard wants) -> title.
FIGURE_TITLES = {
    "lr-vs-val-loss": "Best val_loss against the learning rate used (colour: hidden_size)",
    "suggestion-vs-lr": "Range-test suggestion against the learning rate used (colour: best val_loss)",
    "optimization-history": "Optimization history",
}
_SHOWN = (TrialState.COMPLETE, TrialState.PRUNED)


def best_value(trial: FrozenTrial, direction: StudyDirection) -> float | None:
    """A trial's value, or for a pruned trial the best value it reported before it was stopped."""
    if trial.value is not None:
        return trial.value
    values = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
    if not values:
        return None
    return min(values) if direction == StudyDirection.MINIMIZE else max(values)


def study_figures(study: optuna.Study) -> dict[str, go.Figure]:
    """Every study-level figure, by id (see :data:`FIGURE_TITLES`)."""
    trials = study.get_trials(deepcopy=False, states=_SHOWN)
    # Optuna's history warns "There are no complete trials" on a study without one (e.g. its first trial
    # was interrupted): it is left empty until there is one.
    complete = any(t.state == TrialState.COMPLETE for t in trials)
    history = optuna.visualization.plot_optimization_history(study) if complete else go.Figure()
    return {
        "lr-vs-val-loss": lr_vs_value_figure(trials, study.direction),
        "suggestion-vs-lr": suggestion_vs_lr_figure(trials, study.direction),
        "optimization-history": _titled(history, FIGURE_TITLES["optimization-history"]),
    }


def lr_vs_value_figure(trials: Sequence[FrozenTrial], direction: StudyDirection) -> go.Figure:
    """Each finished trial's best val_loss against the LR it trained at; pruned trials as open circles."""
    figure = go.Figure()
    sizes = [t.params.get("hidden_size", 0) for t in trials] or [0]
    for state, symbol in ((TrialState.COMPLETE, "circle"), (TrialState.PRUNED, "circle-open")):
        points = [
            (t.user_attrs["learning_rate"], best_value(t, direction), t)
            for t in trials
            if t.state == state and t.user_attrs.get("learning_rate") is not None
        ]
        points = [p for p in points if p[1] is not None]
        if not points:
            continue
        figure.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                mode="markers",
                name=state.name.lower(),
                text=[f"trial {p[2].number}" for p in points],
                marker={
                    "symbol": symbol,
                    "size": 10,
                    "color": [p[2].params.get("hidden_size", 0) for p in points],
                    "colorscale": "Viridis",
                    "cmin": min(sizes),
                    "cmax": max(sizes),
                    "showscale": state == TrialState.COMPLETE,
                    "colorbar": {"title": {"text": "hidden_size"}},
                },
            )
        )
    figure.update_xaxes(type="log", title_text="learning rate used")
    figure.update_yaxes(title_text="best val_loss")
    return _titled(figure, FIGURE_TITLES["lr-vs-val-loss"])


def suggestion_vs_lr_figure(trials: Sequence[FrozenTrial], direction: StudyDirection) -> go.Figure:
    """Each trial's range-test suggestion against the LR it trained at, with y = x and the best trial starred."""
    points = []
    for trial in trials:
        finder = trial.user_attrs.get("lr_finder") or {}
        used = trial.user_attrs.get("learning_rate")
        value = best_value(trial, direction)
        if finder.get("suggestion") is not None and used is not None and value is not None:
            points.append((float(finder["suggestion"]), float(used), value, trial))
    figure = go.Figure()
    if not points:
        figure.add_annotation(text="no finished trial with a range test yet", showarrow=False)
        return _titled(figure, FIGURE_TITLES["suggestion-vs-lr"])
    pick = min if direction == StudyDirection.MINIMIZE else max
    best = pick(points, key=lambda p: p[2])
    span = [min(min(p[0], p[1]) for p in points) / 2, max(max(p[0], p[1]) for p in points) * 2]
    figure.add_trace(go.Scatter(x=span, y=span, mode="lines", name="trained at the suggestion", line={"dash": "dot"}))
    figure.add_trace(
        go.Scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            mode="markers",
            name="trials",
            text=[f"trial {p[3].number}: {p[2]:.5g}" for p in points],
            marker={"size": 10, "color": [p[2] for p in points], "colorscale": "Viridis_r", "showscale": True},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[best[0]],
            y=[best[1]],
            mode="markers",
            name=f"best: trial {best[3].number}",
            marker={"symbol": "star", "size": 18, "color": "red"},
        )
    )
    figure.update_xaxes(type="log", title_text="range-test suggestion")
    figure.update_yaxes(type="log", title_text="learning rate used")
    return _titled(figure, FIGURE_TITLES["suggestion-vs-lr"])


def _titled(figure: go.Figure, title: str) -> go.Figure:
    figure.update_layout(title={"text": title}, template="plotly_white")
    return figure
