"""The storage stage: RDB storage with heartbeats and retries, and creating or loading tft-hpo studies."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.event
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import make_url

from tft_hpo import __version__
from tft_hpo.config import StudyConfig, StudySection, config_from_dict, search_relevant_differences
from tft_hpo.errors import StorageError

CONFIG_ATTR = "tft_hpo_config"
VERSION_ATTR = "tft_hpo_version"
#: The total of finished trials the study's latest run aimed at; workers joining without --n-trials use it.
TOTAL_ATTR = "tft_hpo_n_trials"
_CONNECT_TIMEOUT_S = 5
_SQLITE_BUSY_TIMEOUT_S = 60
_SCHEMA_RACE_ATTEMPTS = 4
_URL_EXAMPLES = "sqlite:///studies/name.db, postgresql+psycopg://user@host/db or mysql+pymysql://user@host/db"
_DRIVER_HINT = "pip install 'tft-hpo[postgres]' or 'tft-hpo[mysql]', and name the driver in the URL"


def open_storage(url: str, study: StudySection | None = None, must_exist: bool = False) -> RDBStorage:
    """An RDBStorage on ``url``; with ``study``, it runs trial heartbeats and re-runs stale trials.

    Errors (unknown dialect, missing driver, unreachable server, a SQLite directory that cannot be
    created, ``must_exist`` and no SQLite file) become one-line :class:`StorageError`.
    """
    engine_kwargs = _engine_kwargs(url, must_exist)
    try:
        with warnings.catch_warnings():
            # Optuna marks heartbeats and the retry of stale trials experimental; recovering the
            # trials of a killed process needs both.
            warnings.filterwarnings(
                "ignore",
                message=r"(Argument ``heartbeat_interval``|RetryHeartbeatStaleTrialCallback) is (an )?experimental",
                category=ExperimentalWarning,
            )
            heartbeat: dict[str, Any] = {}
            if study is not None:
                heartbeat = {
                    "heartbeat_interval": study.heartbeat_interval,
                    "grace_period": study.grace_period,
                    "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=study.max_retry),
                }
            storage = _create_storage(url, engine_kwargs, heartbeat)
        if study is not None and storage.engine.dialect.name == "sqlite":
            _use_write_ahead_log(storage)
            _lock_for_writing_at_begin(storage.engine)
        return storage
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
        raise StorageError(f"storage: cannot open {redacted_url(url)}: {_first_line(error)}") from None


def check_storage(url: str) -> None:
    """Check ``url`` without writing anything: a known dialect, its driver, a reachable server, or a SQLite
    file whose directory can be made. Errors are the one-line :class:`StorageError` of :func:`open_storage`.
    """
    engine_kwargs = _engine_kwargs(url, must_exist=False, create_dirs=False)
    if make_url(url).get_backend_name() == "sqlite":
        return
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise StorageError(f"storage: cannot open {redacted_url(url)}: {_first_line(error)}") from None
    finally:
        engine.dispose()


def _create_storage(url: str, engine_kwargs: dict[str, Any], heartbeat: dict[str, Any]) -> RDBStorage:
    """``RDBStorage(url)``, again after a moment when another process was creating the same schema.

    Optuna creates its tables (and records their version) on first use without guarding against a
    second process doing the same at that moment; the loser sees "already exists" or a unique violation.
    """
    for attempt in range(1, _SCHEMA_RACE_ATTEMPTS):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except sqlalchemy.exc.SQLAlchemyError as error:
            if not (isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in str(error)):
                raise
            time.sleep(0.5 * attempt)
    return RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)


def _use_write_ahead_log(storage: RDBStorage) -> None:
    # WAL lets readers (status, optuna-dashboard) and one writer work at once, and several workers on one
    # machine take turns writing; the busy timeout makes them wait instead of failing with "database is locked".
    # The journal mode is stored in the database file, so setting it once serves every later connection.
    with storage.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")


def _lock_for_writing_at_begin(engine: sqlalchemy.Engine) -> None:
    # Optuna reads, then writes, in one transaction (e.g. a trial's state: SELECT, then UPDATE). Under WAL a
    # read transaction that another process wrote past cannot become a write transaction: SQLite answers
    # "database is locked" at once, without the busy timeout (seen when two workers stop together). Taking
    # the write lock at BEGIN makes such transactions wait their turn instead (SQLAlchemy's pysqlite recipe:
    # the driver's own implicit BEGIN is turned off so that ours is the one that runs).
    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # the pooled connections were opened before the listeners: open new ones


def stored_total(study: optuna.Study) -> int | None:
    """The total of finished trials the study's latest run aimed at (``None`` for a study from before it was kept)."""
    total = study.user_attrs.get(TOTAL_ATTR)
    return int(total) if total is not None else None


def find_study(storage: RDBStorage, name: str) -> optuna.Study | None:
    """The stored study called ``name``, or ``None``."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def stored_config(study: optuna.Study) -> StudyConfig:
    """The config a tft-hpo study was created with (as last stored)."""
    data = study.user_attrs.get(CONFIG_ATTR)
    if data is None:
        raise StorageError(f"study {study.study_name!r} was not created by tft-hpo (it has no stored config)")
    return config_from_dict(data, origin=f"stored config of study {study.study_name!r}")


def create_or_load_study(
    storage: RDBStorage,
    config: StudyConfig,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    force: bool = False,
) -> optuna.Study:
    """Create the study with its config stored, or load it after checking that its config still matches.

    A stored study whose search-relevant settings differ from ``config`` is refused, naming the
    fields, unless ``force`` (then ``config`` replaces the stored one).
    """
    name = config.study.name
    existing = find_study(storage, name)
    if existing is not None:
        stored = stored_config(existing)
        differences = search_relevant_differences(stored.to_dict(), config.to_dict())
        if differences and not force:
            raise StorageError(
                f"study {name!r} exists with other settings: {'; '.join(differences)} "
                "(use another study name, or --force to go on anyway)"
            )
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=config.study.direction,
        load_if_exists=True,
    )
    if existing is None or force:
        study.set_user_attr(CONFIG_ATTR, config.to_dict())
        study.set_user_attr(VERSION_ATTR, __version__)
    if stored_total(study) != config.study.n_trials:
        study.set_user_attr(TOTAL_ATTR, config.study.n_trials)
    return study


def _engine_kwargs(url: str, must_exist: bool, create_dirs: bool = True) -> dict[str, Any]:
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"storage: {url!r} is not a SQLAlchemy URL (e.g. sqlite:///studies/name.db)") from None
    try:
        parsed.get_dialect().import_dbapi()
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(
            f"storage: unknown database dialect {parsed.drivername!r} in {redacted_url(url)} "
            f"(expected e.g. {_URL_EXAMPLES})"
        ) from None
    except ImportError as error:
        raise StorageError(
            f"storage: the database driver for {parsed.drivername!r} is not installed ({error}); {_DRIVER_HINT}"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        _check_sqlite_path(parsed.database, must_exist, create_dirs)
        return {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_S}}
    if backend in ("postgresql", "mysql", "mariadb"):
        return {"connect_args": {"connect_timeout": _CONNECT_TIMEOUT_S}}
    return {}


def _check_sqlite_path(database: str | None, must_exist: bool, create_dirs: bool) -> None:
    if not database or database == ":memory:":
        raise StorageError("storage: an in-memory SQLite database keeps nothing; give a file (sqlite:///path.db)")
    path = Path(database)
    if must_exist and not path.is_file():
        raise StorageError(f"storage: no SQLite database at {path}")
    if not create_dirs:
        existing = next(parent for parent in path.absolute().parents if parent.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            reason = "Not a directory" if not existing.is_dir() else "Permission denied"
            raise StorageError(f"storage: cannot create the directory {path.parent} for {path}: {reason}")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(f"storage: cannot create the directory {path.parent} for {path}: {error.strerror}") from None


def redacted_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__
