"""Ctrl-C and SIGTERM: end the current trial as FAIL ("interrupted") and stop, never mid storage write.

While a run is in progress, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread, wherever
it is (range test, training, waiting), except inside :meth:`InterruptGuard.deferred` sections (storage
bookkeeping such as ``ask`` and ``tell``), where the signal is held back until the section ends. A
second signal while the first is being handled quits at once, as a kill would; the heartbeat then
lets the next run recover the trial.

An :class:`Interrupted` can be lost on its way: raised inside a finalizer or weakref callback (Python
only reports those) or inside a library's ``except BaseException``. The first case is delivered again
at once; for both, the signal stays pending until the code that handles it calls
:meth:`InterruptGuard.acknowledge`, and every deferred section's end (and :meth:`InterruptGuard.check`)
raises it again until then.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_REDELIVERY_DELAY = 0.01


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
        self._previous_hook: Any = None
        self._received: int | None = None
        self._acknowledged = False
        self._redelivering = False
        self._deferring = 0

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._previous_hook is not None:
            sys.unraisablehook, self._previous_hook = self._previous_hook, None

    @property
    def received(self) -> int | None:
        """The first signal received, if any."""
        return self._received

    def acknowledge(self) -> None:
        """Say that :class:`Interrupted` has reached the code that handles it: it is not raised again."""
        self._acknowledged = True

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal arrived whose :class:`Interrupted` has not been acknowledged."""
        if self._received is not None and not self._acknowledged:
            self._raise()

    def deferred(self) -> _DeferredSection:
        """A section (storage bookkeeping) during which a signal waits until the section ends."""
        return _DeferredSection(self)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._received is not None and not self._redelivering:
            os._exit(128 + signum)  # a second signal: quit now, like a kill; the heartbeat recovers the trial
        self._redelivering = False
        self._received = signum
        if not self._deferring:
            self._raise()

    def _unraisable(self, unraisable: Any) -> None:
        """``sys.unraisablehook`` while entered: an :class:`Interrupted` that Python dropped is sent again."""
        if not isinstance(unraisable.exc_value, Interrupted):
            self._previous_hook(unraisable)
            return
        # The handler ran inside a finalizer or weakref callback (e.g. during garbage collection), whose
        # exceptions Python only reports: signal again from a timer thread, so that the handler runs once
        # that callback has returned (a signal raised here would run the handler inside this hook).
        self._redelivering = True
        timer = threading.Timer(_REDELIVERY_DELAY, self._redeliver, args=(unraisable.exc_value.signum,))
        timer.daemon = True
        timer.start()

    def _redeliver(self, signum: int) -> None:
        if self._redelivering and self._previous and not self._acknowledged:  # not raised again yet, still entered
            _thread.interrupt_main(signum)

    def _raise(self) -> None:
        assert self._received is not None
        self._redelivering = False  # raised here: a redelivery still on its way has nothing left to do
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
        if not guard._deferring and exc_type is None:
            guard.check()
