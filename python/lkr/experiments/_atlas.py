"""The theory atlas behind ``lkr check-theory --atlas``: the share of the finite-width shift
that the effective action captures, (theory - GP) / (exact - GP), over the filter dimension
M, the width ratio alpha and the activation, against the exact collapsed sampler
(docs/validity.md).

The task is the seeded local teacher (Gaussian inputs, a one-layer erf CNN teacher of a few
channels on the student's patches): a 1D input of Np = 4 non-overlapping patches of M sites
(N0 = 4 M), or for ``arch="fc"`` one patch, N0 = M (the FC net then sees N0 = M inputs).
Every (M, activation, alpha) cell fits the action and the GP and samples the network with
``sweeps(alpha) = sweeps * max(alpha, 1/2)`` collapsed sweeps (narrow nets mix more slowly;
wide ones cost more per sweep).
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

from .. import _interrupt
from .._json import jsonable
from .._progress import PhaseBar
from ._theory_check import DEFAULT_TOLERANCE, compare

__all__ = ["run_atlas", "format_atlas", "plot_atlas", "cells", "ATLAS_DEFAULTS",
           "cell_sweeps"]

#: The default atlas: about five minutes on two busy cores.
ATLAS_DEFAULTS = dict(filter_dims=(4, 9, 16, 27, 64), alphas=(0.25, 1.0, 4.0),
                      activations=("erf", "relu"), P=24, P_test=200, temperature=0.1,
                      patches=4, teacher_channels=4, sweeps=1000, chains=4, seed=0,
                      arch="cnn")


def cell_sweeps(sweeps: int, alpha: float) -> int:
    """The sweeps of one cell: ``sweeps * max(alpha, 1/2)``."""
    return max(8, int(round(sweeps * max(alpha, 0.5))))


def _task(M, arch, P, P_test, patches, teacher_channels, seed):
    from .. import data
    from ..geometry import PatchGeometry

    Np = 1 if arch == "fc" else patches
    X, y, Xt, yt, _ = data.load_task("local-teacher", P, P_test, seed, input_shape=(Np * M,),
                                     filter_size=(M,), boundary="periodic",
                                     teacher_channels=teacher_channels, noise=0.0)
    return (X, y, Xt, yt), PatchGeometry((Np * M,), M)


def run_atlas(*, filter_dims: Sequence[int] = ATLAS_DEFAULTS["filter_dims"],
              alphas: Sequence[float] = ATLAS_DEFAULTS["alphas"],
              activations: Sequence[str] = ATLAS_DEFAULTS["activations"],
              P: int = ATLAS_DEFAULTS["P"], P_test: int = ATLAS_DEFAULTS["P_test"],
              temperature: float = ATLAS_DEFAULTS["temperature"],
              patches: int = ATLAS_DEFAULTS["patches"],
              teacher_channels: int = ATLAS_DEFAULTS["teacher_channels"],
              sweeps: int = ATLAS_DEFAULTS["sweeps"], chains: int = ATLAS_DEFAULTS["chains"],
              seed: int = ATLAS_DEFAULTS["seed"], arch: str = ATLAS_DEFAULTS["arch"],
              tol: float = DEFAULT_TOLERANCE, finite_filter: bool = False,
              progress: Optional[Callable] = None, seeds: int = 1) -> dict:
    """Map the share of the finite-width shift over M x activation x alpha.

    Parameters
    ----------
    filter_dims, alphas, activations : the grid (M = the filter dimension; FC: N0)
    P, P_test, temperature, patches, teacher_channels, seed : the task and the posterior
    seeds : int
        Repeat the grid for the tasks (and chains) of seeds ``seed`` ... ``seed + seeds - 1``;
        the table and the plot then average the share over them (+- its standard error
        over seeds, which includes the task's own variation).
    sweeps, chains : the sampler (``sweeps`` at alpha = 1, see :func:`cell_sweeps`)
    arch : {"cnn", "lcn", "fc"}
    tol : float
        The verdict's tolerance on the share (a fraction of the shift).
    finite_filter : bool
        Also the experimental finite-filter action for relu CNN cells.
    progress : callable, optional
        ``progress(total)`` -> a tqdm bar.

    Returns
    -------
    dict
        ``settings``, ``rows`` (one per finished cell: the :func:`compare` row plus ``M``),
        ``timing``, ``interrupted``; on Ctrl-C :class:`lkr._interrupt.Interrupted` carries
        the finished rows with ``interrupted=True`` (the cell cut short is dropped).
    """
    if arch not in ("cnn", "lcn", "fc"):
        raise ValueError(f"the atlas maps arch 'cnn', 'lcn' or 'fc', got {arch!r}")
    t_start = time.perf_counter()
    settings = dict(filter_dims=[int(m) for m in filter_dims], alphas=[float(a) for a in alphas],
                    activations=list(activations), P=int(P), P_test=int(P_test),
                    temperature=float(temperature), patches=1 if arch == "fc" else int(patches),
                    teacher_channels=int(teacher_channels), sweeps=int(sweeps),
                    chains=int(chains), seed=int(seed), arch=arch, tol=float(tol),
                    task="local-teacher", finite_filter=bool(finite_filter),
                    seeds=[int(seed) + k for k in range(int(seeds))])
    rows = []
    bar = PhaseBar(progress, len(filter_dims) * len(alphas) * len(activations) * int(seeds))

    def results(**extra):
        return jsonable(dict(experiment="check-theory --atlas", settings=settings, rows=rows,
                             timing={"total_s": time.perf_counter() - t_start}, **extra))

    grid = [(sd, M) for sd in settings["seeds"] for M in filter_dims]
    try:
        for sd, M in grid:
            data, geometry = _task(int(M), arch, P, P_test, patches, teacher_channels, sd)
            X, y, Xt, yt = data
            for act in activations:
                for a in alphas:
                    width = max(1, int(round(P / a)))
                    label = (f"{'N0' if arch == 'fc' else 'M'}={M} {act} alpha={a:g} (N={width})"
                             + (f" seed {sd}" if seeds > 1 else ""))
                    bar.status(label + " ...")
                    row = compare(arch, width, geometry=geometry, X=X, y=y, X_test=Xt,
                                  y_test=yt, temperature=temperature, activation=act,
                                  sweeps=cell_sweeps(sweeps, P / width), chains=chains,
                                  seed=sd, tol=tol,
                                  finite_filter=finite_filter and act == "relu"
                                  and arch == "cnn")
                    if row.get("interrupted") or _interrupt.requested():
                        raise KeyboardInterrupt
                    row["M"], row["seed"] = int(M), int(sd)
                    rows.append(row)
                    bar.tick(label)
    except KeyboardInterrupt:
        bar.close()
        during = (bar.label or "start-up").replace(" ...", "")
        raise _interrupt.Interrupted(results(interrupted=True, interrupted_during=during),
                                     during) from None
    finally:
        bar.close()
    return results(interrupted=False)


def _ratio(th, ex, gp, se):
    """The pooled share sum(theory - GP) / sum(exact - GP) over seeds and its standard
    error: the sampler's by the delta method for one seed, the jackknife over seeds for
    several (which includes the task's own variation); (None, None) where undefined."""
    import numpy as np

    dt, de = np.asarray(th) - np.asarray(gp), np.asarray(ex) - np.asarray(gp)
    n = len(dt)
    if n == 0 or de.sum() == 0:
        return None, None
    s = float(dt.sum() / de.sum())
    if n == 1:
        return s, float(abs(dt[0]) * se[0] / de[0] ** 2)
    loo = [(dt.sum() - dt[k]) / (de.sum() - de[k]) for k in range(n) if de.sum() != de[k]]
    if len(loo) < n:
        return s, None
    loo = np.asarray(loo)
    return s, float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))


def cells(results: dict) -> dict:
    """(activation, alpha, M) -> the cell pooled over seeds: ``share`` = sum(theory - GP) /
    sum(exact - GP) and ``share_se`` (:func:`_ratio`), ``seeds``, ``flags`` ('*' some
    R-hat > 1.1, '?' the pooled shift is within 4 SE of zero), and the same
    ``ff_share``/``ff_share_se`` of the finite-filter action over the seeds where it is
    defined, with ``ff_undefined`` the others."""
    import numpy as np

    groups = {}
    for r in results["rows"]:
        groups.setdefault((r["activation"], r["alpha"], r["M"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        gp, ex, se = ([r[k] for r in rs] for k in ("gp", "exact", "exact_se"))
        sh, sse = _ratio([r["theory"] for r in rs], ex, gp, se)
        shift = abs(sum(e - g for e, g in zip(ex, gp)))
        flags = ("*" if any(r["verdict"]["status"] == "unmixed" for r in rs) else "") + \
                ("?" if shift < 4 * float(np.sqrt(np.sum(np.square(se)))) else "")
        cell = dict(share=sh, share_se=sse, seeds=len(rs), flags=flags)
        ff = [(r["finite_filter"], r) for r in rs if "finite_filter" in r]
        if ff:
            ok = [(f, r) for f, r in ff if f.get("error") is not None]
            cell["ff_share"], cell["ff_share_se"] = _ratio(
                [f["error"] for f, _ in ok], [r["exact"] for _, r in ok],
                [r["gp"] for _, r in ok], [r["exact_se"] for _, r in ok])
            cell["ff_undefined"] = len(ff) - len(ok)
        out[key] = cell
    return out


def _pct(v, se=None):
    if v is None:
        return "n/a"
    return f"{100 * v:.0f}%" + ("" if se is None else f"+-{100 * se:.0f}")


def format_atlas(results: dict) -> str:
    """The atlas as text: the share table (rows activation x alpha, columns M) and every
    cell's numbers."""
    s = results["settings"]
    sym = "N0" if s["arch"] == "fc" else "M"
    rows = results["rows"]
    lines = [f"Theory atlas ({s['arch'].upper()}, {s['task']} task, P = {s['P']}, "
             f"P_test = {s['P_test']}, T = {s['temperature']:g}, Np = {s['patches']}, "
             f"{s['chains']} chains, {s['sweeps']} sweeps at alpha = 1)",
             "share of the finite-width shift captured by the action, (theory - GP) / "
             "(exact - GP), +- 1 SE; '*' R-hat > 1.1, '?' shift not resolved (< 4 SE)"
             + ("; pooled over the seeds: sum(theory - GP) / sum(exact - GP), jackknife SE"
                if len(s.get("seeds", [0])) > 1 else "")]
    if results.get("interrupted"):
        lines.append(f"INTERRUPTED during {results.get('interrupted_during')}: finished "
                     "cells only")
    ms = s["filter_dims"]
    lines.append("")
    lines.append(f"{'activation':>10} {'alpha':>6}" + "".join(f"{sym + '=' + str(m):>13}"
                                                             for m in ms))
    agg = cells(results)
    ff = any("ff_share" in c for c in agg.values())
    for act in s["activations"]:
        for a in s["alphas"]:
            txt = []
            for m in ms:
                c = _find(agg, act, a, m)
                txt.append(f"{'-':>13}" if c is None else
                           f"{_pct(c['share'], c['share_se']) + c['flags']:>13}")
            lines.append(f"{act:>10} {a:>6g}" + "".join(txt))
    if ff:
        lines.append("")
        lines.append("finite-filter action (experimental, relu), the same shares; 'u' undefined "
                     "for some seed (its chi^2 average does not exist there)")
        for a in s["alphas"]:
            txt = []
            for m in ms:
                c = _find(agg, "relu", a, m)
                if c is None or "ff_share" not in c:
                    txt.append(f"{'-':>13}")
                    continue
                u = "u" if c["ff_undefined"] else ""
                txt.append(f"{_pct(c['ff_share'], c['ff_share_se']) + u:>13}")
            lines.append(f"{'relu':>10} {a:>6g}" + "".join(txt))
    lines.append("")
    multi = len(s.get("seeds", [0])) > 1
    lines.append(("seed" if multi else "") + f"{sym:>4}{'act':>6}{'alpha':>7}{'N':>5}{'GP':>9}{'theory':>9}"
                 f"{'exact':>9}{'SE':>8}{'share':>12}{'R-hat':>7}  verdict"
                 + ("   finite-filter share" if ff else ""))
    for r in rows:
        extra = ""
        if "finite_filter" in r:
            f = r["finite_filter"]
            extra = ("   undefined (conjugate)" if f.get("error") is None
                     else f"   {_pct(f['share'], f['share_se'])} ({f.get('nodes')} nodes)")
        lead = f"{r['seed']:>4}" if multi else ""
        lines.append(f"{lead}{r['M']:>4}{r['activation']:>6}{r['alpha']:>7.3g}{r['width']:>5}"
                     f"{r['gp']:>9.4f}{r['theory']:>9.4f}{r['exact']:>9.4f}"
                     f"{r['exact_se']:>8.4f}{_pct(r['share'], r['share_se']):>12}"
                     f"{r['rhat']:>7.3f}  {r['verdict']['status']}{extra}")
    return "\n".join(lines)


def _find(agg, act, a, m):
    return next((c for (ac, al, mm), c in agg.items()
                 if ac == act and mm == m and abs(al - a) < 1e-9 * max(a, 1)), None)


def plot_atlas(results: dict, path: str) -> str:
    """Share against M (log axis), one line per activation and alpha, +- 1 SE bars; the
    band 1 +- tol marks agreement. Needs matplotlib (the `plot` extra)."""
    from .._io import savefig
    from .report import pyplot

    plt = pyplot()
    s = results["settings"]
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    ax.axhspan(1 - s["tol"], 1 + s["tol"], color="0.9", label=f"1 +- {s['tol']:g} (agreement)")
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.axvline(16, color="0.6", ls=":", lw=1)
    styles = {"erf": "-", "relu": "--", "linear": "-."}
    palette = {"erf": ("tab:blue", "tab:cyan", "navy", "tab:purple"),
               "relu": ("tab:red", "tab:orange", "darkred", "tab:brown"),
               "linear": ("tab:green", "olive", "darkgreen", "tab:gray")}
    markers = ["o", "s", "^", "v", "D"]
    agg = cells(results)
    for act in s["activations"]:
        for k, a in enumerate(s["alphas"]):
            color = palette.get(act, palette["linear"])[k % 4]
            for key, ls, fill, what in (("share", styles.get(act, "-"), None, ""),
                                        ("ff_share", ":", "none", " finite filter")):
                pts = sorted((m, c[key], c[key + "_se"] or 0.0) for m in s["filter_dims"]
                             for c in [_find(agg, act, a, m)]
                             if c is not None and c.get(key) is not None)
                if not pts:
                    continue
                m, v, e = zip(*pts)
                ax.errorbar(m, v, yerr=e, ls=ls, marker=markers[k % 5], mfc=fill,
                            color=color, capsize=2, label=f"{act}{what}, alpha = {a:g}")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(s["filter_dims"])
    ax.set_xticklabels([str(m) for m in s["filter_dims"]])
    sym = "input dimension N0" if s["arch"] == "fc" else "filter dimension M"
    ax.set_xlabel(sym)
    ax.set_ylabel("(theory - GP) / (exact - GP)")
    n = len(s.get("seeds", [0]))
    ax.set_title(f"Share of the finite-width shift captured by the action ({s['arch'].upper()},"
                 f" P = {s['P']}, T = {s['temperature']:g}"
                 + (f", {n} tasks pooled" if n > 1 else "") + ")", fontsize=9)
    ax.set_ylim(-1.0, 2.0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    savefig(fig, path)
    plt.close(fig)
    return path
