"""A trial's note for optuna-dashboard (markdown): how its learning rate was chosen and what training gave."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def trial_note(
    number: int, outcome: str, value: float | None, params: Mapping[str, Any], attrs: Mapping[str, Any]
) -> str:
    """Markdown: outcome and value, range-test suggestion, heuristic, factor, LR used, seconds, best epoch, checkpoint.

    ``attrs`` are the trial's user attributes; every one of them may be missing (a trial that failed early,
    ``lr_finder.mode = "off"``).
    """
    value_text = f", val_loss {value:.5f}" if value is not None else ""
    lines = [f"## Trial {number}: {outcome}{value_text}", ""]
    finder = attrs.get("lr_finder") or {}
    if finder:
        source = finder.get("source", finder.get("heuristic"))
        lines.append(f"- **range-test suggestion**: {_lr(finder.get('suggestion'))} by `{source}`")
        if finder.get("fallback"):
            lines.append(f"- **fallback**: no answer from {finder['fallback']}; `{source}` gave the LR")
        if finder.get("at_edge"):
            lines.append("- **at the edge** of the sweep: widen `min_lr`/`max_lr` if this repeats")
        if finder.get("cached_from") is not None:
            lines.append(f"- **range test reused** from trial {finder['cached_from']}")
        lines.append(
            f"- **range test**: {finder.get('steps', '?')} steps in {_seconds(finder.get('seconds'))}"
            f" (stopped: {finder.get('stop_reason') or 'end of sweep'})"
        )
    else:
        lines.append('- **range test**: none (`lr_finder.mode = "off"`: the sampler chose the learning rate)')
    if "lr_factor" in params:
        lines.append(f"- **factor**: {params['lr_factor']:.3g} (`lr_factor`, sampled)")
    lines.append(f"- **learning rate used**: {_lr(attrs.get('learning_rate'))}")
    epochs = attrs.get("epochs_trained")
    best_epoch = attrs.get("best_epoch")
    if best_epoch is not None:
        lines.append(f"- **best epoch**: {best_epoch} of {epochs} trained, in {_seconds(attrs.get('train_seconds'))}")
    checkpoint = attrs.get("checkpoint")
    kept = checkpoint is not None and Path(checkpoint).is_file()
    lines.append(f"- **checkpoint**: `{checkpoint}`" if kept else "- **checkpoint**: none")
    if attrs.get("fail_reason"):
        lines.append(f"- **failed**: {attrs['fail_reason']}")
    if finder.get("curve"):
        lines += ["", "This trial's artifacts: the range-test plot `range_test.png` and its curve `range_test.csv`."]
    return "\n".join(lines) + "\n"


def _lr(value: object) -> str:
    return f"{value:.3e}" if isinstance(value, int | float) else "-"


def _seconds(value: object) -> str:
    return f"{value:.1f} s" if isinstance(value, int | float) else "? s"
