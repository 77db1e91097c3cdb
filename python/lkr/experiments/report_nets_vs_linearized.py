"""Table, results.json and figure of ``lkr nets-vs-linearized``
(:mod:`lkr.experiments.nets_vs_linearized`)."""
from __future__ import annotations

import os

from .._json import dump

__all__ = ["format_table", "save_results", "plot_results"]

_LABELS = {"fc": "FC", "cnn": "CNN", "lcn": "LCN"}


def _label(arch):
    return _LABELS.get(arch, arch.upper())


def _ms(d, digits=3):
    s = f"{d['mean']:.{digits}f}"
    return s + (f"+-{d['se']:.{digits}f}" if d.get("se") is not None else "")


def format_table(results: dict) -> str:
    """The results as plain text: one line per architecture and width."""
    s = results["settings"]
    g = s["geometry"]
    se = len(s["seeds"]) > 1
    lines = [f"nets vs linearisations on {s['task']} {' vs '.join(map(str, s['classes']))}: "
             f"P = {s['P']}, P_test = {s['P_test']}, {s['outputs']} outputs (one-hot), "
             f"{s['activation']}, {s['optimizer']}, {s['steps']} steps, lr = {s['lr_scale']:g} / "
             f"lambda_max, seeds {s['seeds'][0]}..{s['seeds'][-1]}",
             f"CNN/LCN patches: filter {'x'.join(map(str, g['filter_size']))}, stride "
             f"{'x'.join(map(str, g['stride']))}, {g['boundary']}: Np = {s['num_patches']}, "
             f"M = {s['patch_size']}",
             "acc: test accuracy of the net, its linearisation (same GD) and the kernel "
             "solution; gap = net - lin; erank, srank: effective and stable rank of J = "
             "grad_w f(w0, X) (rows = P x outputs)" + ("; mean+-se over seeds" if se else ""),
             ""]
    w = 13 if se else 8
    head = (f"{'arch':<5}{'N':>5}{'params':>8}{'rows':>6}{'erank':>{w + 2}}{'srank':>{w}}"
            f"{'acc net':>{w + 2}}{'acc lin':>{w}}{'acc ker':>{w}}{'gap':>{w + 1}}"
            f"{'mse net':>{w + 2}}{'mse lin':>{w}}{'mse ker':>{w}}{'|dw|/|w0|':>{w + 2}}")
    lines.append(head)
    prev = None
    for r in results["rows"]:
        if prev is not None and r["arch"] != prev:
            lines.append("")
        prev = r["arch"]
        lines.append(
            f"{_label(r['arch']):<5}{r['width']:>5}{r['num_params']:>8}{r['rows']:>6}"
            f"{_ms(r['effective_rank'], 1):>{w + 2}}{_ms(r['stable_rank'], 2):>{w}}"
            f"{_ms(r['net']['test_accuracy']):>{w + 2}}{_ms(r['lin']['test_accuracy']):>{w}}"
            f"{_ms(r['kernel']['test_accuracy']):>{w}}"
            f"{_ms(r['gap']['test_accuracy']):>{w + 1}}"
            f"{_ms(r['net']['test_mse']):>{w + 2}}{_ms(r['lin']['test_mse']):>{w}}"
            f"{_ms(r['kernel']['test_mse']):>{w}}{_ms(r['relative_weight_change']):>{w + 2}}")
    if results.get("interrupted"):
        lines.append("")
        lines.append("interrupted: the rows above are the finished points only")
    return "\n".join(lines)


def save_results(results: dict, out_dir) -> str:
    """Write ``results.json`` into out_dir (lkr's one JSON writer); returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "results.json")
    with open(path, "w") as fh:
        dump(results, fh, indent=1)
        fh.write("\n")
    return path


def plot_results(results: dict, path) -> str:
    """Accuracy of net / linearisation / kernel against width, and the effective rank against
    width with the number of rows of J as a line. ImportError without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("matplotlib is not installed; pip install lkr[plot] for the plot") from None
    s = results["settings"]
    colors = {"fc": "tab:blue", "cnn": "tab:red", "lcn": "tab:green"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3), constrained_layout=True)

    def err(d):
        return None if d["se"] is None else d["se"]

    for a in s["architectures"]:
        rows = [r for r in results["rows"] if r["arch"] == a]
        if not rows:
            continue
        c, lab = colors.get(a), _label(a)
        x = [r["width"] for r in rows]
        for key, style, what in (("net", "o-", "net"), ("lin", "s--", "linearised, same GD"),
                                 ("kernel", "^:", "kernel solution")):
            vals = [r[key]["test_accuracy"] for r in rows]
            ax1.errorbar(x, [v["mean"] for v in vals],
                         yerr=None if vals[0]["se"] is None else [v["se"] for v in vals],
                         fmt=style, color=c, capsize=3, mfc="none" if key != "net" else None,
                         label=f"{lab} {what}")
        er = [r["effective_rank"] for r in rows]
        ax2.errorbar(x, [v["mean"] for v in er], yerr=None if er[0]["se"] is None else
                     [v["se"] for v in er], fmt="o-", color=c, capsize=3,
                     label=f"{lab} effective rank")
        ax2.plot(x, [min(r["num_params"], r["rows"]) for r in rows], ":", color=c, lw=1,
                 label=f"{lab} min(rows, params)")
    ax2.axhline(s["P"] * s["outputs"], color="k", lw=1.2, ls="--",
                label=f"rows of J = P x outputs = {s['P'] * s['outputs']}")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width (FC units; CNN, LCN channels)")
        ax.grid(alpha=0.3, which="both")
    ax2.set_ylim(0, 1.08 * s["P"] * s["outputs"])
    ax1.set_ylabel("test accuracy")
    ax2.set_ylabel("effective rank of grad_w f(w0, X)")
    ax1.legend(fontsize=7, ncol=1)
    ax2.legend(fontsize=7)
    fig.suptitle(f"{s['task']} {' vs '.join(map(str, s['classes']))}: P = {s['P']}, "
                 f"{s['activation']}, {s['optimizer']}, {s['steps']} steps", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
