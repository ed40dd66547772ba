"""The interrupt guard: a signal becomes Interrupted in the code that was running, even via a finalizer."""

from __future__ import annotations

import signal
import time

import pytest

from tft_hpo.signals import Interrupted, InterruptGuard


class _SignalledWhileFinalized:
    """Its finalizer receives SIGTERM, as a real signal can arrive during garbage collection."""

    completed: list[bool] = []

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGTERM)
        for _ in range(100):  # bytecode boundaries: the handler runs (and raises) in here
            pass
        self.completed.append(True)


def test_an_interrupt_that_lands_in_a_finalizer_is_raised_after_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Interrupted) as raised, InterruptGuard() as guard:
        _SignalledWhileFinalized()  # dropped at once: its finalizer runs here
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pass
        pytest.fail("the interrupt was lost in the finalizer")

    assert _SignalledWhileFinalized.completed == []  # the handler raised inside the finalizer, which Python drops
    assert raised.value.signum == signal.SIGTERM and guard.received == signal.SIGTERM
    assert "Exception ignored" not in capsys.readouterr().err


def test_an_interrupt_raises_where_the_code_is() -> None:
    with pytest.raises(Interrupted) as raised, InterruptGuard():
        signal.raise_signal(signal.SIGINT)
        for _ in range(100):
            pass
        pytest.fail("the signal did not interrupt the running code")
    assert raised.value.exit_status == 130


def test_an_interrupt_a_library_swallows_is_raised_again_at_the_next_deferred_section() -> None:
    with pytest.raises(Interrupted), InterruptGuard() as guard:
        try:
            signal.raise_signal(signal.SIGTERM)
            for _ in range(100):
                pass
        except BaseException:  # noqa: BLE001 - a library that swallows everything
            pass
        with guard.deferred():
            pass
        pytest.fail("the swallowed interrupt was not raised again")


def test_an_acknowledged_interrupt_is_not_raised_again() -> None:
    with InterruptGuard() as guard:
        with pytest.raises(Interrupted):
            signal.raise_signal(signal.SIGINT)
            for _ in range(100):
                pass
        guard.acknowledge()
        with guard.deferred():  # the handler's own bookkeeping
            pass
        guard.check()
    assert guard.received == signal.SIGINT
