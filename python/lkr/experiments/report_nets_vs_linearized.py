"""Rows, summaries, table, results.json and figure of ``lkr nets-vs-linearized``
(:mod:`lkr.experiments.nets_vs_linearized`).

Standard errors are over seeds (initialisations; the data split is fixed): a row's
``{"mean", "se", "n"}`` is the mean over its seeds and s / sqrt(n) with s the sample standard
deviation (ddof = 1; ``se`` None for one seed). Gaps are formed per seed (net and
linearisation share the initialisation), then averaged. A task's summary averages each
seed's numbers over the rows (architectures and widths) first, then takes mean and standard
error over the seeds.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .._io import savefig, write_json
from .report import pyplot

__all__ = ["aggregate", "mean_se", "format_table", "save_results", "plot_results", "figure",
           "offsets"]

_LABELS = {"fc": "FC", "cnn": "CNN", "lcn": "LCN", "deepcnn": "DCNN"}
_NUMBERS = ("effective_rank", "stable_rank", "relative_weight_change", "lr", "lambda_max")
_MODELS = ("net", "lin", "kernel", "gap")


def _label(arch):
    return _LABELS.get(arch, arch.upper())


def mean_se(values) -> dict:
    """{"mean", "se", "n"}: the mean and its standard error s / sqrt(n) (ddof = 1; None for
    one value)."""
    a = np.asarray(values, dtype=np.float64)
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else None
    return {"mean": float(a.mean()), "se": se, "n": int(a.size)}


def _row(points, n_seeds):
    p0 = points[0]
    row = {"task": p0["task"], "arch": p0["arch"], "width": p0["width"],
           "multiplier": p0.get("multiplier"), "num_params": p0["num_params"],
           "rows": p0["rows"], "seeds": [p["seed"] for p in points]}
    for k in _NUMBERS:
        row[k] = mean_se([p[k] for p in points])
    for k in _MODELS:
        row[k] = {m: mean_se([p[k][m] for p in points]) for m in p0[k]
                  if isinstance(p0[k][m], (int, float))}
    for k in ("net", "lin"):
        stops = [p[k].get("stopped") for p in points]
        row[k]["stopped"] = {s: stops.count(s) for s in sorted(set(map(str, stops)))}
        row[k]["capped"] = stops.count("cap")
    if len(points) < n_seeds:
        row["interrupted"] = True
    return row


def _per_seed(points, key):
    """Each seed's mean of key(point) over the points, then mean and se over seeds."""
    by = {}
    for p in points:
        by.setdefault(p["seed"], []).append(key(p))
    return mean_se([float(np.mean(v)) for v in by.values()]) if by else None


def _task_summary(label, points):
    mults = sorted({p.get("multiplier") for p in points if p.get("multiplier") is not None})

    def rel(p):
        return p["gap"]["test_mse"] / p["lin"]["test_mse"] if p["lin"]["test_mse"] > 0 else 0.0

    # difficulty: the kernel solution's test error at the widest width, where no net is
    # near its interpolation threshold (parameters ~ rows), at which the minimum-norm
    # solution's error peaks
    widest = [p for p in points if p.get("multiplier") == mults[-1]] if mults else points
    out = {"task": label, "points": len(points),
           "difficulty": _per_seed(widest, lambda p: 1.0 - p["kernel"]["test_accuracy"]),
           "net_test_error": _per_seed(points, lambda p: 1.0 - p["net"]["test_accuracy"]),
           "gap_accuracy": _per_seed(points, lambda p: p["gap"]["test_accuracy"]),
           "gap_mse": _per_seed(points, lambda p: p["gap"]["test_mse"]),
           "gap_mse_relative": _per_seed(points, rel),
           "erank_over_rows": _per_seed(points, lambda p: p["effective_rank"] / p["rows"]),
           "net_capped": sum(p["net"].get("stopped") == "cap" for p in points),
           "lin_capped": sum(p["lin"].get("stopped") == "cap" for p in points)}
    if len(mults) > 1:
        for name, m in (("narrowest", mults[0]), ("widest", mults[-1])):
            sel = [p for p in points if p.get("multiplier") == m]
            out[f"gap_accuracy_{name}"] = _per_seed(sel, lambda p: p["gap"]["test_accuracy"])
            out[f"gap_mse_relative_{name}"] = _per_seed(sel, rel)
        out["multipliers"] = [mults[0], mults[-1]]
    return out


def aggregate(results: dict) -> dict:
    """``rows`` (per task, arch and width, in run order) and ``summary`` (per task) from
    ``results["points"]``."""
    n_seeds = len(results["settings"]["seeds"])
    groups, order = {}, []
    for p in results["points"]:
        key = (p["task"], p["arch"], p["width"])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(p)
    rows = [_row(groups[k], n_seeds) for k in order]
    labels = [t["label"] for t in results["tasks"]]
    summary = [_task_summary(t, [p for p in results["points"] if p["task"] == t])
               for t in labels if any(p["task"] == t for p in results["points"])]
    return {"rows": rows, "summary": summary}


# -- the table ----------------------------------------------------------------------------------
def _ms(d, digits=3, sign=False):
    if d is None:
        return "-"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    s = f.format(d["mean"])
    return s + (("+-" + f"{{:.{digits}f}}".format(d["se"])) if d.get("se") is not None else "")


def _stop_text(stop):
    if stop.get("rule") == "fixed":
        return f"{stop['steps']} steps"
    return (f"stop at train MSE < {stop['tol']:g} x start, or < {stop['rtol']:g} relative "
            f"change over {stop['window']} steps, or at {stop['max_steps']} steps (*: a seed "
            "reached that cap)")


def _steps(r):
    def one(m):
        d = r[m].get("steps")
        if d is None:
            return "-"
        return f"{d['mean']:.0f}" + ("*" if r[m].get("capped") else "")
    return f"{one('net')}/{one('lin')}"


def format_table(results: dict) -> str:
    """The results as plain text: per task a header and one line per architecture and
    width, then the difficulty ladder (one line per task)."""
    s = results["settings"]
    se = len(s["seeds"]) > 1
    lines = [f"nets vs linearisations: P = {s['P']} per task, {s['activation']}, "
             f"{s['optimizer']} at lr = {s['lr_scale']:g} / lambda_max, "
             f"seeds {s['seeds'][0]}..{s['seeds'][-1]}"
             + (" (mean+-se over seeds)" if se else " (one seed: no error bars)"),
             f"training of net and linearisation alike: {_stop_text(s['stop'])}",
             "acc/mse: test accuracy and MSE of the net, its linearisation (same GD) and the "
             "kernel solution; gap acc = net - lin, gap mse = lin - net (> 0: the net is "
             "better); erank: effective rank of J = grad_w f(w0, X) (rows = P x outputs); "
             "steps: mean steps of net/lin"]
    tasks = {t["label"]: t for t in results["tasks"]}
    summ = {x["task"]: x for x in results.get("summary", [])}
    # column widths: "mean+-se" (with seeds) or "mean", and a space
    e, a, ga, m, gm, d = (12, 13, 14, 15, 16, 11) if se else (8, 8, 8, 9, 9, 8)
    head = (f"{'arch':<5}{'N':>5}{'params':>8}{'rows':>6}{'erank':>{e}}{'steps':>11}"
            f"{'acc net':>{a}}{'acc lin':>{a}}{'gap acc':>{ga}}"
            f"{'mse net':>{m}}{'mse lin':>{m}}{'gap mse':>{gm}}"
            f"{'acc ker':>{a}}{'|dw|/|w0|':>{max(d, 10)}}")
    cur = None
    for r in results["rows"]:
        if r["task"] != cur:
            cur = r["task"]
            t, x = tasks.get(cur, {}), summ.get(cur)
            diff = "" if x is None else (f"; difficulty (kernel solution's test error, "
                                         f"widest nets) {_ms(x['difficulty'])}")
            g = t.get("geometry", {})
            lines += ["", f"== {cur}: {t.get('outputs')} outputs, P_test = {t.get('P_test')}, "
                          f"Np = {t.get('num_patches')} patches of "
                          f"{'x'.join(map(str, g.get('filter_size', [])))}"
                          + (f", deep CNN d = {t['deep_final_patches']}"
                             if t.get("deep_final_patches") else "") + diff, head]
        lines.append(
            f"{_label(r['arch']):<5}{r['width']:>5}{r['num_params']:>8}{r['rows']:>6}"
            f"{_ms(r['effective_rank'], 1):>{e}}{_steps(r):>11}"
            f"{_ms(r['net']['test_accuracy']):>{a}}{_ms(r['lin']['test_accuracy']):>{a}}"
            f"{_ms(r['gap']['test_accuracy'], sign=True):>{ga}}"
            f"{_ms(r['net']['test_mse'], 4):>{m}}{_ms(r['lin']['test_mse'], 4):>{m}}"
            f"{_ms(r['gap']['test_mse'], 4, sign=True):>{gm}}"
            f"{_ms(r['kernel']['test_accuracy']):>{a}}"
            f"{_ms(r['relative_weight_change'], 2):>{max(d, 10)}}"
            + ("  (interrupted)" if r.get("interrupted") else ""))
    if results.get("summary"):
        # the ladder's own columns: at least as wide as their headers (one seed: no "+-se")
        a, ga, d = max(a, 11), max(ga, 13), max(d, 10)
        lines += ["", "difficulty ladder (each seed averaged over architectures and widths, "
                      "then mean+-se over seeds; relative gap mse = (lin - net) / lin):",
                  f"{'task':<24}{'difficulty':>{a}}{'net error':>{a}}"
                  f"{'gap acc':>{ga}}{'narrowest':>{ga}}{'widest':>{ga}}"
                  f"{'rel gap mse':>{ga - 1}}{'erank/rows':>{d + 1}}{'capped':>10}"]
        for x in results["summary"]:
            lines.append(f"{x['task'][:23]:<24}{_ms(x['difficulty']):>{a}}"
                         f"{_ms(x['net_test_error']):>{a}}"
                         f"{_ms(x['gap_accuracy'], sign=True):>{ga}}"
                         f"{_ms(x.get('gap_accuracy_narrowest'), sign=True):>{ga}}"
                         f"{_ms(x.get('gap_accuracy_widest'), sign=True):>{ga}}"
                         f"{_ms(x['gap_mse_relative'], 2, sign=True):>{ga - 1}}"
                         f"{_ms(x['erank_over_rows'], 2):>{d + 1}}"
                         f"{x['net_capped']:>6}/{x['lin_capped']:<3}")
        lines.append("(narrowest, widest: the gap in accuracy at the smallest and largest "
                     "width multiplier; capped: points whose net/linearisation hit the step cap)")
    if results.get("interrupted"):
        lines += ["", "interrupted: the rows above are the finished points only"]
    if results.get("error"):
        lines += ["", f"stopped: {results['error']}; the rows above are the finished points"]
    return "\n".join(lines)


def save_results(results: dict, out_dir) -> str:
    """Write ``results.json`` into out_dir (lkr's one JSON writer); returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    # atomically: a failed write leaves the previous results.json, never a truncated one
    return write_json(os.path.join(out_dir, "results.json"), results, indent=1)


# -- the figure ---------------------------------------------------------------------------------
_STYLE = {"fc": ("tab:blue", "o"), "cnn": ("tab:red", "s"), "lcn": ("tab:green", "^"),
          "deepcnn": ("tab:purple", "D")}
_OTHER = [("tab:orange", "v"), ("tab:brown", "P"), ("tab:gray", "X")]


def plot_results(results: dict, path) -> str:
    """Write the figure of :func:`figure` to path (atomically); ImportError without
    matplotlib."""
    plt = pyplot()
    fig = figure(results)
    try:
        savefig(fig, path, dpi=110)  # atomically
    finally:
        plt.close(fig)
    return os.fspath(path)


def offsets(archs) -> dict:
    """arch -> the factor its points are shifted by along the (log 2) width axis: distinct
    per architecture, centred on 1, so that no line sits on another."""
    n = len(archs)
    return {a: 2 ** (0.09 * (i - (n - 1) / 2)) for i, a in enumerate(archs)}


def figure(results: dict):
    """One column per task (easy to hard, left to right): the accuracy gap net - lin
    (top), the test-MSE gap lin - net relative to the linearisation's (middle) and the
    effective rank of J over its rows (bottom) against the width multiplier, one colour and
    marker per architecture, each shifted a little along the (log) width axis so that no
    line hides another; error bars are standard errors over seeds (with more than one).
    ImportError without matplotlib."""
    plt = pyplot()
    s = results["settings"]
    tasks = [t["label"] for t in results["tasks"]]
    summ = {x["task"]: x for x in results.get("summary", [])}
    archs = list(s["architectures"])
    n = max(1, len(tasks))
    fig, axes = plt.subplots(3, n, figsize=(3.3 * n + 0.8, 8.2), squeeze=False,
                             sharex=True, sharey="row", constrained_layout=True)
    shift = offsets(archs)
    for j, t in enumerate(tasks):
        for i, a in enumerate(archs):
            rows = [r for r in results["rows"] if r["task"] == t and r["arch"] == a]
            if not rows:
                continue
            c, mk = _STYLE.get(a, _OTHER[i % len(_OTHER)])
            x = [r["multiplier"] * shift[a] for r in rows]

            def rel(r):
                ln, g = r["lin"]["test_mse"], r["gap"]["test_mse"]
                return {"mean": g["mean"] / ln["mean"] if ln["mean"] > 0 else 0.0,
                        "se": None if g["se"] is None or not ln["mean"] > 0
                        else g["se"] / ln["mean"]}

            for k, vals in enumerate(([r["gap"]["test_accuracy"] for r in rows],
                                      [rel(r) for r in rows],
                                      [{"mean": r["effective_rank"]["mean"] / r["rows"],
                                        "se": None if r["effective_rank"]["se"] is None
                                        else r["effective_rank"]["se"] / r["rows"]}
                                       for r in rows])):
                se = [v["se"] for v in vals]
                axes[k][j].errorbar(x, [v["mean"] for v in vals],
                                    yerr=None if any(e is None for e in se) else se,
                                    fmt=mk + "-", color=c, mfc="white" if k == 2 else c,
                                    ms=5, lw=1.2, capsize=3, label=_label(a))
        x = summ.get(t)
        title = t if x is None else f"{t}\ndifficulty {x['difficulty']['mean']:.3f}"
        axes[0][j].set_title(title, fontsize=9)
        for k in range(3):
            ax = axes[k][j]
            ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3, which="both")
            if k < 2:
                ax.axhline(0.0, color="k", lw=0.8)
        axes[2][j].set_xlabel("width / base width")
    axes[0][0].set_ylabel("test accuracy: net - lin")
    axes[1][0].set_ylabel("test MSE: (lin - net) / lin")
    axes[2][0].set_ylabel("effective rank of J / rows")
    axes[0][0].legend(fontsize=7, loc="best")
    err = "error bars: se over " + (f"{len(s['seeds'])} seeds" if len(s["seeds"]) > 1
                                    else "seeds (one seed: none)")
    fig.suptitle(f"nets vs linearisations, P = {s['P']}, {s['activation']}, "
                 f"{s['optimizer']}; {err}", fontsize=10)
    return fig
