"""One theory check: the effective action, the GP and the exact collapsed sampler on the same
training set, the theory's share of the finite-width shift and a verdict (docs/validity.md).

The share is s = (theory - GP) / (exact - GP) of the test error (bias^2 + variance, T not
added); its standard error follows from the sampler's (over independent chains) by the
delta method, se_s = |theory - GP| se / (exact - GP)^2 (the GP and the theory are exact
numbers). The verdict:

* ``unmixed``: an R-hat (of the sampled test-error series, split or not) above 1.1: the
  exact number is not reliable yet;
* ``unresolved``: |exact - GP| < 4 se, the sampler does not resolve the finite-width shift;
  the theory is then judged by |theory - exact| <= tol |exact - GP| + 4 se;
* ``within`` / ``outside``: |s - 1| <= tol + 4 se_s (default tol = 0.1: 10% of the shift).

The reasons list why a check fails or is doubtful: a filter dimension M (FC: N0) below 16,
an unresolved shift, unmixed chains, a solver that did not converge.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings

import numpy as np

from .._validate import count as _count
from .._warnings import SamplingWarning, TheoryRegimeWarning
from ..theory._regime import MIN_FILTER_DIM

__all__ = ["compare", "verdict", "share", "RHAT_LIMIT", "DEFAULT_TOLERANCE"]

#: R-hat above this: the chains have not mixed
RHAT_LIMIT = 1.1
#: the tolerance on the share, as a fraction of the finite-width shift
DEFAULT_TOLERANCE = 0.1


def share(theory, gp, exact, se):
    """(s, se_s): the theory's share of the finite-width shift and its standard error."""
    d = exact - gp
    if d == 0:
        return float("nan"), float("nan")
    return (theory - gp) / d, abs(theory - gp) * se / (d * d)


def verdict(theory, gp, exact, se, rhat=None, *, filter_dim=None, activation="erf",
            tol=DEFAULT_TOLERANCE, converged=True, arch="cnn") -> dict:
    """``{"status", "within", "reasons"}`` of one comparison (see the module docstring);
    ``within`` is None where the exact number cannot judge (unmixed chains)."""
    reasons = []
    sym = "N0" if arch == "fc" else "M"
    if filter_dim is not None and filter_dim < MIN_FILTER_DIM and activation != "linear":
        reasons.append(f"{sym} = {filter_dim:g} is below {MIN_FILTER_DIM}: the action's Gaussian"
                       " equivalence needs a large filter dimension")
    if not converged:
        reasons.append("the saddle-point solver did not converge")
    if rhat is not None and np.isfinite(rhat) and rhat > RHAT_LIMIT:
        reasons.append(f"the chains have not mixed (R-hat {rhat:.3g} > {RHAT_LIMIT}): "
                       "run more sweeps")
        return {"status": "unmixed", "within": None, "reasons": reasons}
    d = exact - gp
    if not np.isfinite(se) or abs(d) < 4 * se:
        ok = abs(theory - exact) <= tol * abs(d) + 4 * (se if np.isfinite(se) else 0.0)
        reasons.append(f"the exact result is not resolved from the GP (|exact - GP| = "
                       f"{abs(d):.3g} < 4 SE = {4 * se:.3g}): the finite-width shift is below "
                       "the sampler's resolution (more sweeps or chains), so only "
                       "|theory - exact| is judged")
        return {"status": "unresolved", "within": bool(ok), "reasons": reasons}
    s, s_se = share(theory, gp, exact, se)
    ok = abs(s - 1) <= tol + 4 * s_se
    if not ok:
        reasons.insert(0, f"the theory captures {100 * s:.0f}% +- {100 * s_se:.0f}% of the "
                          f"finite-width shift (tolerance {100 * tol:.0f}% + 4 SE)")
    elif 4 * s_se > tol:
        reasons.append(f"the share is known to +- {100 * s_se:.0f}% only: 4 SE exceed the "
                       f"tolerance, so more sweeps or chains would sharpen the verdict")
    return {"status": "within" if ok else "outside", "within": bool(ok), "reasons": reasons}


@contextlib.contextmanager
def _quiet():
    """The regime is reported in the row, and an interrupted sampler is dropped: neither
    warns here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=TheoryRegimeWarning)
        warnings.filterwarnings("ignore", category=SamplingWarning)
        yield


def compare(arch, width, *, geometry, X, y, X_test, y_test, temperature, activation="erf",
            lambda0=1.0, lambda1=1.0, sweeps=1000, burn_in=None, chains=4, seed=0,
            tol=DEFAULT_TOLERANCE, finite_filter=False) -> dict:
    """Theory, GP and exact sampler of one network on one training set.

    Parameters
    ----------
    arch : {"fc", "cnn", "lcn", "deepcnn"}
    width : int
        N1 (FC) or the channels Nc.
    geometry : PatchGeometry or DeepGeometry
        The patches (None for FC).
    X, y, X_test, y_test : the task (y one output)
    temperature, activation, lambda0, lambda1 : the posterior
    sweeps, burn_in, chains, seed : the collapsed sampler (:func:`lkr.train.collapsed`)
    tol : float
        Tolerance on the share of the shift.
    finite_filter : bool
        Also the experimental finite-filter action (CNN, relu): ``finite_filter`` entry.

    Returns
    -------
    dict
        ``gp``, ``theory``, ``exact``, ``exact_se``, ``rhat`` (max of the test-error
        series' R-hat and split R-hat), ``rhat_predictions`` (max over test points),
        ``share``, ``share_se``, ``filter_dim``, ``converged``, ``verdict``, ``sampler``
        (samples, acceptance, step, seconds), ``interrupted``; an interrupted sampler gives
        only ``interrupted`` (True) and ``sweeps_done``.
    """
    from ..train import collapsed
    from ..train._arch import make_net, make_theory

    # before the fits: one chain gives no standard error, so no share and no verdict
    chains = _count(chains, "chains (at least 2 for a standard error)", 2)
    common = dict(temperature=temperature, activation=activation, lambda0=lambda0,
                  lambda1=lambda1)
    geo = None if arch == "fc" else geometry
    t0 = time.perf_counter()
    with _quiet():
        th = make_theory(arch, width, geometry=geo, **common)
        sol = th.fit(X, y)
        ev = th.evaluate(X_test, y_test)
        gp = make_theory(arch, None, geometry=geo, **common)
        gp.fit(X, y)
        ev0 = gp.evaluate(X_test, y_test)
        t_theory = time.perf_counter() - t0
        net, Xn, Xtn = make_net(arch, width, X, X_test, geometry=geo, activation=activation,
                                lambda0=lambda0, lambda1=lambda1, seed=seed)
        t0 = time.perf_counter()
        res = collapsed(net, Xn, y, temperature, sweeps=sweeps, burn_in=burn_in, chains=chains,
                        X_test=Xtn, y_test=y_test, seed=seed, progress=False)
    if res.interrupted:
        return {"interrupted": True, "sweeps_done": res.sweeps_done}
    te = res.test_error()
    rh = [r for r in (te.get("rhat"), te.get("rhat_split")) if r is not None]
    rhat = float(max(rh)) if rh else float("nan")
    d = res.to_dict()
    out = dict(arch=arch, width=int(width), alpha=len(y) / width, P=len(y),
               temperature=float(temperature), activation=activation,
               filter_dim=sol.filter_dim, gp=float(ev0["error"]), theory=float(ev["error"]),
               exact=float(te["error"]), exact_se=float(te["error_se"]), rhat=rhat,
               rhat_predictions=d.get("rhat_max"), converged=bool(sol.converged),
               sampler=dict(sweeps=sweeps, chains=chains, samples=te["samples"],
                            acceptance=float(res.acceptance), step=float(res.step),
                            seconds=time.perf_counter() - t0),
               theory_seconds=t_theory, interrupted=False)
    out["share"], out["share_se"] = share(out["theory"], out["gp"], out["exact"],
                                          out["exact_se"])
    out["verdict"] = verdict(out["theory"], out["gp"], out["exact"], out["exact_se"], rhat,
                             filter_dim=sol.filter_dim, activation=activation, tol=tol,
                             converged=sol.converged, arch=arch)
    if finite_filter:
        out["finite_filter"] = _finite_filter(geo, width, X, y, X_test, y_test, common, out)
    for k in ("share", "share_se"):
        if not math.isfinite(out[k]):
            out[k] = None
    return out


def _finite_filter(geometry, width, X, y, X_test, y_test, common, row) -> dict:
    """The experimental finite-filter action on the same data: its error and share, or why
    it does not exist here."""
    from ..theory import CNNTheory

    try:
        with _quiet():
            th = CNNTheory(geometry=geometry, width=width, filter_norm="exact", **common)
            sol = th.fit(X, y)
            err = float(th.evaluate(X_test, y_test)["error"])
    except (ValueError, ArithmeticError) as exc:
        return {"error": None, "share": None, "share_se": None,
                "undefined": str(exc).splitlines()[0]}
    s, s_se = share(err, row["gp"], row["exact"], row["exact_se"])
    return {"error": err, "share": s, "share_se": s_se, "nodes": sol.extra.get("nodes"),
            "converged": bool(sol.converged)}
