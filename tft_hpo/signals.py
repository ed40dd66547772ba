"""Ctrl-C and SIGTERM: end the current trial as FAIL ("interrupted") and stop, never mid storage write.

While a run is in progress, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread, wherever
it is (range test, training, waiting), except inside :meth:`InterruptGuard.deferred` sections (storage
bookkeeping such as ``ask`` and ``tell``), where the signal is held back until the section ends. A
second signal while the first is being handled quits at once, as a kill would; the heartbeat then
lets the next run recover the trial.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run.

    A ``BaseException`` like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it, but not
    a ``KeyboardInterrupt``: Lightning turns that into ``sys.exit(1)`` in the middle of a trial.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        #: How to go on, for the message that ends the process (set by the runner that knows the study).
        self.resume_hint = "run the same command again"

    @property
    def exit_status(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class InterruptGuard:
    """A context manager that turns SIGINT/SIGTERM into :class:`Interrupted` while it is entered.

    Outside the main thread it installs nothing (Python delivers signals to the main thread only) and
    its sections do nothing.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._received: int | None = None
        self._raised = False
        self._deferring = 0

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def received(self) -> int | None:
        """The first signal received, if any."""
        return self._received

    def deferred(self) -> _DeferredSection:
        """A section (storage bookkeeping) during which a signal waits until the section ends."""
        return _DeferredSection(self)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._received is not None:
            os._exit(128 + signum)  # a second signal: quit now, like a kill; the heartbeat recovers the trial
        self._received = signum
        if not self._deferring:
            self._raise()

    def _raise(self) -> None:
        assert self._received is not None
        self._raised = True
        raise Interrupted(self._received)


class _DeferredSection:
    def __init__(self, guard: InterruptGuard) -> None:
        self._guard = guard

    def __enter__(self) -> None:
        self._guard._deferring += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        guard = self._guard
        guard._deferring -= 1
        if not guard._deferring and guard._received is not None and not guard._raised and exc_type is None:
            guard._raise()
