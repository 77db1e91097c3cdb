"""The one progress bar of lkr: tqdm on stderr, shown only on a terminal."""
from __future__ import annotations

import sys

__all__ = ["progress_bar", "PhaseBar"]


def progress_bar(total: int, desc: str, enabled=None, *, unit: str = "steps", delay: float = 0.0,
                 stream=None, **options):
    """A ``tqdm`` bar of ``total`` items.

    Parameters
    ----------
    enabled : bool or None
        None (auto): only when the stream (stderr by default) is a terminal, so logs and
        pipes stay clean; then also ``delay`` seconds late, so short runs stay quiet.
    """
    from tqdm.auto import tqdm

    stream = sys.stderr if stream is None else stream
    if enabled is None:
        isatty = getattr(stream, "isatty", None)
        enabled = bool(isatty and isatty())
    else:
        delay = 0.0
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, delay=delay,
                file=stream, dynamic_ncols=True, leave=True, **options)


class PhaseBar:
    """A job's progress over steps: ``status(label)`` for the step now running (remembered
    in ``label``, e.g. to say what an interrupt cut short), ``tick(label)`` after a finished
    one. ``progress(total)`` makes the bar (e.g. :func:`progress_bar`); None: no bar."""

    def __init__(self, progress, total):
        self.bar = progress(total) if progress else None
        self.label = ""  # the step running now (what an interrupt cut short)

    def status(self, label):
        self.label = label
        if self.bar is not None:
            self.bar.set_description_str(label)

    def tick(self, label):
        self.label = ""
        if self.bar is not None:
            self.bar.set_description_str(label, refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
