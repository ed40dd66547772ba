"""The closing summary of a run in the terminal: the best trials with their LR, pruned share, range-test share."""

from __future__ import annotations

from collections.abc import Sequence

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tft_hpo.range_test_cache import cache_savings

_COLUMNS = ("trial", "val_loss", "learning rate", "suggestion", "lr_factor", "hidden_size", "best epoch")


def closing_table(
    trials: Sequence[FrozenTrial],
    direction: StudyDirection,
    range_test_seconds: float,
    wall_seconds: float,
    top: int = 3,
) -> str:
    """The ``top`` completed trials as a table, then the pruned share and this run's range-test share."""
    completed = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    completed.sort(key=lambda t: t.value, reverse=direction == StudyDirection.MAXIMIZE)
    rows = [_row(t) for t in completed[:top]]
    lines = []
    if rows:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
        lines.append(f"best {len(rows)} trial(s):")
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True)).rstrip())
        lines.extend("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    pruned = sum(t.state == TrialState.PRUNED for t in finished)
    failed = sum(t.state == TrialState.FAIL for t in trials)
    share = pruned / len(finished) if finished else 0.0
    lines.append(f"pruned: {pruned} of {len(finished)} finished trial(s) ({share:.0%}); failed: {failed}")
    range_share = range_test_seconds / wall_seconds if wall_seconds else 0.0
    lines.append(
        f"LR range tests: {range_test_seconds:.1f}s of this run's {wall_seconds:.1f}s wall time ({range_share:.0%})"
    )
    hits, tests, saved = cache_savings(trials)
    if hits:
        lines.append(f"range-test cache: {hits} of {tests} range tests reused, about {saved:.1f}s saved")
    return "\n".join(lines)


def _row(trial: FrozenTrial) -> list[str]:
    attrs = trial.user_attrs
    finder = attrs.get("lr_finder") or {}
    return [
        str(trial.number),
        f"{trial.value:.5f}",
        _number(attrs.get("learning_rate"), ".3e"),
        _number(finder.get("suggestion"), ".2e"),
        _number(trial.params.get("lr_factor"), ".3g"),
        str(trial.params.get("hidden_size", "-")),
        str(attrs.get("best_epoch", "-")),
    ]


def _number(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"
