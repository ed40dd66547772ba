"""What reaches the terminal: library logging levels and the few library warnings we cannot avoid."""

from __future__ import annotations

import logging
import sys
import warnings

import optuna
from optuna.exceptions import ExperimentalWarning

_LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_forecasting")


class _ConsoleHandler(logging.Handler):
    """Writes info lines to ``sys.stdout`` with the run's progress, warnings to ``sys.stderr``.

    The streams are looked up when each record comes (callers and pytest swap them); stderr keeps only
    warnings and errors, so that bad input still ends with one line there.
    """

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            print(self.format(record), file=stream, flush=True)
        except Exception:  # logging's contract: a failing handler reports, never raises
            self.handleError(record)


_OWN_HANDLER = _ConsoleHandler()


def configure_output(verbose: bool) -> None:
    """Quiet Lightning's and Optuna's info logging unless ``verbose``; install the warning filters."""
    level = logging.INFO if verbose else logging.WARNING
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    _show_own_logging()
    install_warning_filters()


def _show_own_logging() -> None:
    """Show tft-hpo's own log lines (INFO and up, e.g. what the in-memory batches hold)."""
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
    # Optuna marks fail_stale_trials experimental; recovering the trials of killed processes needs it.
    warnings.filterwarnings(
        "ignore",
        message=r".*\bfail_stale_trials is experimental",
        category=ExperimentalWarning,
        module=r"tft_hpo\.worker",
    )
    # Optuna expects heartbeats only inside Study.optimize; tft_hpo.worker records them the way optimize does.
    warnings.filterwarnings(
        "ignore",
        message=r"Heartbeat of storage is supposed to be used with Study\.optimize",
        category=UserWarning,
        module=r"optuna\.study\.study|tft_hpo\.worker",  # Python 3.12+ names the caller
    )
    # pytorch-forecasting replaces a non-finite loss by 1e9 with this warning; tft_hpo.finite turns it into
    # the range test's stop_reason or the trial's fail_reason, which say it where it belongs.
    warnings.filterwarnings(
        "ignore",
        message=r"Loss is not finite\. Resetting it to 1e9",
        category=UserWarning,
        module=r"pytorch_forecasting\.metrics\.base_metrics\._base_metrics",
    )
    # Lightning's own pytree helper still calls torch's deprecated LeafSpec on every step.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
