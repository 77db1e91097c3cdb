"""The theory-regime figures of the experiments' results: each fit's filter dimension M (FC:
N0) against the threshold below which the actions are poor (docs/validity.md), one block
per results file and one line in the table instead of a warning per fit."""
from __future__ import annotations

import contextlib
import warnings

from .._warnings import TheoryRegimeWarning
from ..theory._regime import MIN_FILTER_DIM

__all__ = ["quiet_regime", "block", "table_lines"]


@contextlib.contextmanager
def quiet_regime():
    """Fits without the per-fit :class:`TheoryRegimeWarning`: the experiment reports the
    figure once, in its results (:func:`block`) and its table (:func:`table_lines`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=TheoryRegimeWarning)
        yield


def block(finite: dict, activation: str) -> dict:
    """``{"threshold", "filter_dim": {arch: M (or the smallest over widths)},
    "outside": [arch, ...]}`` from the finite-width rows (their ``filter_dim``); linear
    networks are never outside (their preactivations are exactly Gaussian)."""
    dims = {}
    for arch, rows in finite.items():
        ms = [r.get("filter_dim") for r in rows if r.get("filter_dim") is not None]
        if ms:
            dims[arch] = min(ms)
    outside = [] if activation == "linear" else [a for a, m in dims.items()
                                                  if m < MIN_FILTER_DIM]
    return {"threshold": MIN_FILTER_DIM, "filter_dim": dims, "outside": outside}


def table_lines(results: dict) -> list:
    """One warning line (and its reason) when a fitted architecture is outside the regime."""
    v = results.get("validity") or {}
    outside = v.get("outside") or []
    if not outside:
        return []
    dims = v["filter_dim"]
    names = {"fc": "FC", "cnn": "CNN", "lcn": "LCN", "deepcnn": "DCNN"}
    what = ", ".join(f"{names.get(a, a)} {'N0' if a == 'fc' else 'M'} = {dims[a]:g}" for a in outside)
    return ["", f"WARNING: outside the theories' regime ({what} < {v['threshold']}): the "
                "actions rest on a Gaussian equivalence that needs a large filter dimension "
                "M; there they miss a large part of the finite-width shift (docs/validity.md; "
                "check a setting with `lkr check-theory`)"]
