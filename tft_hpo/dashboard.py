"""optuna-dashboard for tft-hpo studies: the study-level figures it shows, and serving it on a study's storage."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial
from optuna_dashboard import save_plotly_graph_object, wsgi

from tft_hpo.errors import StorageError
from tft_hpo.figures import study_figures
from tft_hpo.storage import find_study, open_storage, redacted_url, stored_config

_logger = logging.getLogger(__name__)


class DashboardFigures:
    """An Optuna study callback that refreshes the study-level figures in the dashboard after each trial."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        try:
            save_study_figures(study)
        except Exception as error:  # the figures only show the study: failing to draw them must not stop it
            _logger.warning("after trial %d: could not refresh the dashboard's figures: %r", trial.number, error)


def save_study_figures(study: optuna.Study) -> None:
    """Store every study-level figure on the study, replacing the previous version of each."""
    for figure_id, figure in study_figures(study).items():
        save_plotly_graph_object(study, figure, graph_object_id=figure_id)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the standard library's name)
        """One line per request is noise in a terminal that only needs the URL."""


def serve_dashboard(storage_url: str, name: str, host: str, port: int, out: TextIO | None = None) -> None:
    """Serve optuna-dashboard on ``storage_url`` with the study's artifact folder until interrupted.

    Prints the study's URL once the server listens. Raises :class:`StorageError` when the study does not
    exist or the address cannot be bound.
    """
    out = out or sys.stdout
    storage = open_storage(storage_url, must_exist=True)
    study = find_study(storage, name)
    if study is None:
        raise StorageError(f"dashboard: study {name!r} does not exist in {redacted_url(storage_url)}")
    artifact_dir = stored_config(study).study.artifact_path
    app = wsgi(storage, artifact_store=FileSystemArtifactStore(artifact_dir))
    try:
        server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as error:
        raise StorageError(f"dashboard: cannot listen on {host}:{port}: {error.strerror or error}") from None
    study_id = storage.get_study_id_from_name(name)
    shown_host = f"[{host}]" if ":" in host else host
    with server:
        if not Path(artifact_dir).is_dir():
            print(f"no artifact folder at {artifact_dir}: range-test plots will not show", file=out)
        print(
            f"optuna-dashboard for study {name!r} ({redacted_url(storage_url)}), artifacts in {artifact_dir}", file=out
        )
        print(f"open http://{shown_host}:{server.server_port}/dashboard/studies/{study_id}", file=out)
        print("stop it with Ctrl-C", file=out, flush=True)
        server.serve_forever()
