"""What reaches the terminal: library logging levels and the few library warnings we cannot avoid."""

from __future__ import annotations

import logging
import sys
import warnings

import optuna

_LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_forecasting")


class _StderrHandler(logging.Handler):
    """Writes each record to ``sys.stderr`` as it is when the record comes (callers and pytest swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # logging's contract: a failing handler reports, never raises
            self.handleError(record)


_OWN_HANDLER = _StderrHandler()


def configure_output(verbose: bool) -> None:
    """Quiet Lightning's and Optuna's info logging unless ``verbose``; install the warning filters."""
    level = logging.INFO if verbose else logging.WARNING
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    _show_own_logging()
    install_warning_filters()


def _show_own_logging() -> None:
    """Send tft-hpo's own log lines (INFO and up, e.g. what the in-memory batches hold) to stderr."""
    logger = logging.getLogger("tft_hpo")
    logger.setLevel(logging.INFO)
    if _OWN_HANDLER not in logger.handlers:
        logger.addHandler(_OWN_HANDLER)


def install_warning_filters() -> None:
    """Ignore, precisely, warnings raised inside libraries that no call of ours can avoid."""
    # pytorch-forecasting's models pass their loss and metric modules to save_hyperparameters();
    # Lightning warns about it for every model built, and only pytorch-forecasting can change that.
    warnings.filterwarnings(
        "ignore",
        message=r"Attribute '(loss|logging_metrics)' is an instance of `nn.Module`",
        category=UserWarning,
        module=r"lightning\.pytorch\.utilities\.parsing",
    )
    # Lightning's own pytree helper still calls torch's deprecated LeafSpec on every step.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
