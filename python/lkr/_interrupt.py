"""Ctrl-C, one way for the whole package: the first stops the job cleanly, a second at once.

:func:`handling` installs a SIGINT handler (main thread only; restored on exit; nested uses
share one handler). The first Ctrl-C sets a flag that stays set until the outermost
:func:`handling` exits:

* inside a :func:`polling` region (a loop that checks :func:`requested` every step, e.g. the
  Langevin steps) nothing else happens: the loop stops at the end of its current step, so
  its state stays consistent;
* anywhere else it raises :class:`KeyboardInterrupt` at once (the default behaviour), which
  the command catches to write what is finished.

A second Ctrl-C raises :class:`KeyboardInterrupt` at once; with ``hard_exit=True`` (the
``lkr`` commands) it ends the process at once with exit status 130 instead, so that even a
slow write or cleanup cannot hold it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

__all__ = ["handling", "polling", "requested", "check", "Interrupted"]

_depth = 0          # nested handling() contexts
_polling = 0        # active polling() regions
_requested = False  # a Ctrl-C arrived (stays set until the outermost handling() exits)
_hard_exit = False
_old = None


def _handler(signum, frame):
    global _requested
    if _requested:
        if _hard_exit:
            os.write(2, b"\nlkr: second Ctrl-C: aborted\n")
            os._exit(130)
        raise KeyboardInterrupt
    _requested = True
    if _polling == 0:
        raise KeyboardInterrupt


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C that stopped a job, carrying what was finished (``results``)."""

    def __init__(self, results=None, during: str = ""):
        super().__init__(during or "interrupted")
        self.results = results
        self.during = during


def requested() -> bool:
    """True once Ctrl-C was pressed inside the current :func:`handling` context."""
    return _requested


def check() -> None:
    """Raise :class:`KeyboardInterrupt` when Ctrl-C was pressed (a cheap poll point)."""
    if _requested:
        raise KeyboardInterrupt


@contextlib.contextmanager
def handling(hard_exit: bool = False):
    """Install lkr's SIGINT handler for the duration (see the module docstring).

    Only in the main thread (elsewhere signals cannot be handled and this does nothing).
    ``hard_exit`` applies when this is the outermost context.
    """
    global _depth, _requested, _hard_exit, _old
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        try:
            _old = signal.signal(signal.SIGINT, _handler)
        except (ValueError, OSError):  # pragma: no cover - e.g. embedded interpreters
            yield
            return
        _requested, _hard_exit = False, bool(hard_exit)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            signal.signal(signal.SIGINT, _old)
            _old, _requested, _hard_exit = None, False, False


@contextlib.contextmanager
def polling():
    """A region that polls :func:`requested` often: the first Ctrl-C only sets the flag."""
    global _polling
    with handling():
        _polling += 1
        try:
            yield
        finally:
            _polling -= 1
