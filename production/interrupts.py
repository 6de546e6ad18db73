"""Ctrl-C for the CLI: never lost, never a traceback.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to be.
Where that is a garbage-collector callback (Hypothesis registers one to time collections)
or a `__del__` method, Python prints "Exception ignored in ..." and carries on: the
interrupt is lost and the run finishes with status 0. `interrupt_guard()` installs a
SIGINT handler that records the interrupt and raises KeyboardInterrupt only outside such
places (inside one, it retries a few milliseconds later from SIGALRM), and the caller
checks `interrupted` after the run, so an interrupt swallowed anywhere else still ends
the process with status 130.

Standard library only: the CLI installs the guard before anything heavy is imported.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
from types import CodeType, FrameType
from typing import Iterator, Optional

# A shell's status for a process ended by SIGINT (128 + 2).
INTERRUPTED_STATUS = 130
# The delay before retrying an interrupt that arrived where Python would swallow it.
RETRY_SECONDS = 0.02


class InterruptGuard:
    """Whether SIGINT arrived while the guard was installed (`interrupted`)."""

    def __init__(self) -> None:
        self.interrupted = False
        self._pending = False

    def on_sigint(self, signum: int, frame: Optional[FrameType]) -> None:
        """SIGINT: record it, then raise KeyboardInterrupt where it cannot be swallowed."""
        self.interrupted = True
        self._raise_when_safe(frame)

    def on_retry(self, signum: int, frame: Optional[FrameType]) -> None:
        """SIGALRM: raise a deferred interrupt, if one is pending and this place is safe."""
        if self._pending:
            self._raise_when_safe(frame)

    def _raise_when_safe(self, frame: Optional[FrameType]) -> None:
        if _in_swallowing_frame(frame):
            self._pending = True
            if hasattr(signal, "setitimer"):
                signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
            return
        self._pending = False
        raise KeyboardInterrupt


def _in_swallowing_frame(frame: Optional[FrameType]) -> bool:
    """Whether `frame` runs inside a gc callback or a `__del__` method, where Python prints
    an exception raised there and drops it."""
    callbacks = {_code_of(callback) for callback in gc.callbacks} - {None}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _code_of(callback: object) -> Optional[CodeType]:
    function = getattr(callback, "__func__", callback)  # bound methods
    return getattr(function, "__code__", None)


@contextlib.contextmanager
def interrupt_guard() -> Iterator[InterruptGuard]:
    """Install the guard's SIGINT (and SIGALRM retry) handlers for the block, restoring the
    previous ones after. Outside the main thread, where Python delivers no signals, the guard
    installs nothing and only reports `interrupted = False`."""
    guard = InterruptGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    retries = hasattr(signal, "setitimer")  # POSIX; elsewhere a deferred interrupt waits for the end of the run
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, guard.on_sigint)}
    if retries:
        previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, guard.on_retry)
    try:
        yield guard
    finally:
        if retries:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: set from C
