"""The row formats of ``lkr fc-vs-cnn``: one finite-width fit, its order parameter in a few
numbers, the per-architecture summary, and the versions stamped on every results file."""
from __future__ import annotations

import platform

import numpy as np

from .._json import jsonable


def _to_numpy(a):
    from ..backend import to_numpy

    return to_numpy(a)


def _q_summary(arch: str, Q) -> dict:
    """A few numbers that describe the order parameter Qbar (the full matrix is kept too)."""
    Q = np.asarray(_to_numpy(Q), dtype=np.float64)
    if arch == "fc" and Q.ndim == 0:
        return {"Qbar": float(Q)}
    if Q.ndim == 1:  # an LCN solver may return only the diagonal
        Q = np.diag(Q)
    d = np.diag(Q)
    out = {"diag_mean": float(d.mean()), "diag_min": float(d.min()), "diag_max": float(d.max())}
    if arch in ("cnn", "deepcnn", "fc"):  # FC with D outputs: a D x D Qbar
        n = Q.shape[0]
        off = Q[~np.eye(n, dtype=bool)]
        ev = np.linalg.eigvalsh((Q + Q.T) / 2)
        out.update(offdiag_mean=float(off.mean()) if off.size else 0.0,
                   offdiag_absmax=float(np.abs(off).max()) if off.size else 0.0,
                   eig_min=float(ev[0]), eig_max=float(ev[-1]))
    return out


def _versions() -> dict:
    import scipy

    from .._version import __version__

    return {"lkr": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def scores(ev) -> dict:
    """The test scores of an ``evaluate`` result as row entries: error, bias2, variance, and
    for class targets accuracy, confusion (a list of lists) and class_coding."""
    out = {k: float(ev[k]) for k in ("error", "bias2", "variance")}
    if "accuracy" in ev:
        out.update(accuracy=float(ev["accuracy"]), confusion=jsonable(ev["confusion"]),
                   class_coding=ev["class_coding"])
    return out


def _row(arch, width, P, ev, sol) -> dict:
    """The one row format of a finite-width fit (the serial and the executor paths)."""
    return {"width": int(width), "alpha": P / width, **scores(ev),
            "Q_summary": _q_summary(arch, sol.Q),
            "converged": bool(getattr(sol, "converged", True)),
            "filter_dim": getattr(sol, "filter_dim", None),
            "solution": jsonable(sol.to_dict())}


def _summary(architectures, infinite, finite, n_widths) -> dict:
    """Per architecture whose infinite-width limit and every width are finished
    (``n_widths``: the number of widths, or a dict of it per architecture)."""
    summary = {}
    for arch in architectures:
        rows = finite.get(arch) or []
        need = n_widths[arch] if isinstance(n_widths, dict) else n_widths
        if arch not in infinite or len(rows) < need:
            continue
        inf = infinite[arch]["error"]
        best = min(rows, key=lambda r: r["error"])
        narrow = rows[0]
        summary[arch] = {
            "infinite_error": inf, "best_width": best["width"], "best_error": best["error"],
            "narrowest_width": narrow["width"], "narrowest_error": narrow["error"],
            "beats_infinite_at": [r["width"] for r in rows if r["error"] < inf],
            "beats_infinite": best["error"] < inf,
            "relative_change_at_narrowest": (narrow["error"] - inf) / inf}
    return summary
