"""Ctrl-C and SIGTERM, one way for the whole package: the first stops the job cleanly, a
second at once.

:func:`handling` installs a SIGINT handler (main thread only; restored on exit; nested uses
share one handler); with ``terminate=True`` (the ``lkr`` commands) SIGTERM, which batch
schedulers and ``timeout`` send, is handled the same way. The first signal sets a flag that
stays set until the outermost :func:`handling` exits:

* inside a :func:`polling` region (a loop that checks :func:`requested` every step, e.g. the
  Langevin steps) nothing else happens: the loop stops at the end of its current step, so
  its state stays consistent;
* anywhere else it raises :class:`KeyboardInterrupt` at once (the default behaviour), which
  the command catches to write what is finished.

A second signal raises :class:`KeyboardInterrupt` at once; with ``hard_exit=True`` (the
``lkr`` commands) it ends the process at once with exit status 128 + its number (130 for
SIGINT, 143 for SIGTERM) instead, so that even a slow write or cleanup cannot hold it.
:func:`exit_status` is the status a command returns after the first (130 or 143), the
shell's convention for a process ended by that signal.

From Python (without ``terminate``), SIGTERM keeps its default action: it ends the process,
rather than returning partial results to a script that would carry on.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

__all__ = ["handling", "polling", "requested", "check", "Interrupted", "exit_status",
           "describe"]

_depth = 0          # nested handling() contexts
_polling = 0        # active polling() regions
_requested = False  # a Ctrl-C arrived (stays set until the outermost handling() exits)
_hard_exit = False
_signum = None      # the first signal received (SIGINT or SIGTERM)
_old = {}           # signal -> the handler it had before the outermost handling()

_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def _handler(signum, frame):
    global _requested, _signum
    if _requested:
        if _hard_exit:
            os.write(2, f"\nlkr: second interrupt ({_NAMES.get(signum, signum)}): "
                        "aborted\n".encode())
            os._exit(128 + int(signum))
        raise KeyboardInterrupt
    _requested, _signum = True, signum
    if _polling == 0:
        raise KeyboardInterrupt


def exit_status() -> int:
    """128 + the number of the first signal received (130 for Ctrl-C, 143 for SIGTERM); 130
    when none was (a KeyboardInterrupt raised otherwise)."""
    return 128 + int(signal.SIGINT if _signum is None else _signum)


def describe() -> str:
    """``"interrupted"`` (Ctrl-C) or ``"terminated (SIGTERM)"``, for messages."""
    return "terminated (SIGTERM)" if _signum == signal.SIGTERM else "interrupted"


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C or SIGTERM that stopped a job, carrying what was finished (``results``)."""

    def __init__(self, results=None, during: str = ""):
        super().__init__(during or "interrupted")
        self.results = results
        self.during = during


def requested() -> bool:
    """True once Ctrl-C (or a handled SIGTERM) arrived inside the current :func:`handling`
    context."""
    return _requested


def check() -> None:
    """Raise :class:`KeyboardInterrupt` when :func:`requested` (a cheap poll point)."""
    if _requested:
        raise KeyboardInterrupt


@contextlib.contextmanager
def handling(hard_exit: bool = False, terminate: bool = False):
    """Install lkr's SIGINT handler (and with ``terminate`` its SIGTERM handler) for the
    duration (see the module docstring).

    Only in the main thread (elsewhere signals cannot be handled and this does nothing).
    ``hard_exit`` and ``terminate`` apply when this is the outermost context.
    """
    global _depth, _requested, _hard_exit, _signum
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM) if terminate else (signal.SIGINT,):
                _old[sig] = signal.signal(sig, _handler)
        except (ValueError, OSError):  # pragma: no cover - e.g. embedded interpreters
            _restore()
            yield
            return
        _requested, _hard_exit, _signum = False, bool(hard_exit), None
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _restore()
            _requested, _hard_exit, _signum = False, False, None


def _restore():
    while _old:
        sig, old = _old.popitem()
        signal.signal(sig, old)


@contextlib.contextmanager
def polling():
    """A region that polls :func:`requested` often: the first signal only sets the flag."""
    global _polling
    with handling():
        _polling += 1
        try:
            yield
        finally:
            _polling -= 1
