"""Output files that are never left half written: write to a temporary name, then rename.

Every file the ``lkr`` commands write (``results.json``, ``fc_vs_cnn.png``, ``train.json``,
the benchmark JSON) goes through :func:`atomic_write`: the content is written to a hidden
temporary file in the same directory, flushed to disk, and renamed over the final name with
:func:`os.replace` (atomic on POSIX and Windows within one file system). A full disk, a
read-only directory or a Ctrl-C therefore leaves either the previous file or the new one
under the final name, never a truncated one, and no temporary file behind.
"""
from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write", "write_text", "write_json", "savefig", "check_writable_dir",
           "describe"]


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def atomic_write(path, write, binary: bool = False) -> str:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file gets the permissions an ordinary ``open(path, "w")`` would give it. On any
    error (or KeyboardInterrupt) the temporary file is removed, the previous ``path`` is left
    untouched and the exception propagates. Returns ``path`` as a str.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                        {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_text(path, text: str) -> str:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(text))


def write_json(path, obj, **kwargs) -> str:
    """Write ``obj`` as strict JSON (lkr's one converter, :mod:`lkr._json`) atomically, with
    a final newline."""
    from ._json import dumps

    return write_text(path, dumps(obj, **kwargs) + "\n")


def savefig(fig, path, **kwargs) -> str:
    """``fig.savefig`` atomically; the format is taken from the name's extension."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, **kwargs), binary=True)


def check_writable_dir(path) -> str:
    """Create the directory ``path`` if needed and really create (and remove) a file in it,
    so that a read-only or full location fails now rather than after a long computation.

    Raises
    ------
    OSError
        With the operating system's reason.
    """
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".lkr-write-check.", suffix=".tmp")
    try:
        os.write(fd, b"lkr")
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(tmp)
    return path


def describe(exc: BaseException) -> str:
    """One line for an OSError: its reason and, where known, the file."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
