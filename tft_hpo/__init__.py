"""tft-hpo: Optuna studies over the Temporal Fusion Transformer with a per-trial LR range test."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("tft-hpo")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from tft_hpo.config import StudyConfig, load_study_file
    from tft_hpo.export import load_best
    from tft_hpo.runner import RunSummary, run_study

__all__ = ["RunSummary", "StudyConfig", "__version__", "load_best", "load_study_file", "run_study"]

_LAZY = {
    "StudyConfig": "tft_hpo.config",
    "load_study_file": "tft_hpo.config",
    "load_best": "tft_hpo.export",
    "RunSummary": "tft_hpo.runner",
    "run_study": "tft_hpo.runner",
}


def __getattr__(name: str) -> Any:
    # torch, Lightning and pytorch-forecasting take seconds to import: load them only when used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tft_hpo' has no attribute {name!r}")
