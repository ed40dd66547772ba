"""Errors that end a command with a one-line message and exit status 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a study file, a flag, a data set or a storage URL.

    The command line prints ``str(error)`` on one line and exits with status 2.
    """


class ConfigError(UserError):
    """A study file or an override that does not validate."""


class DataError(UserError):
    """A data set that cannot be turned into TimeSeriesDataSets."""


class StorageError(UserError):
    """A storage URL that cannot be used, or a study that cannot be created or found there."""
