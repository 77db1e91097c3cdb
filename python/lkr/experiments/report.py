"""Tables and plots of the experiments' results (``lkr fc-vs-cnn``)."""
from __future__ import annotations

import os
import sys

from .._extras import install_hint
from .._io import describe, savefig, write_json
from ..train._arch import NAMES as _NAMES
from ._validity import table_lines as _validity_lines

__all__ = ["format_table", "save_results", "plot_results", "write_outputs", "RHAT_WARN"]

#: R-hat above this: the chains have not mixed, the tables say so and compare nothing in
#: standard errors (1.05: a common threshold, between Gelman and Rubin's 1.1 and the 1.01
#: of Vehtari et al. 2021 for final results)
RHAT_WARN = 1.05


def _fmt(v, w=9):
    return f"{v:{w}.4f}"


def format_table(results: dict) -> str:
    """The results as plain text: one block per architecture, widths ascending, N = inf last."""
    s = results["settings"]
    g = s["geometry"]
    lines = []
    shape = "x".join(map(str, g["input_shape"]))
    lines.append(f"FC vs CNN vs LCN on {s['task']}: P = {s['P']}, P_test = {s['P_test']}, "
                 f"T = {s['temperature']:g}, {s['activation']}, lambda0 = {s['lambda0']:g}, "
                 f"lambda1 = {s['lambda1']:g}, seed = {s['seed']}")
    lines.append(f"input {shape} x {g['channels']} ch, filter "
                 f"{'x'.join(map(str, g['filter_size']))}, stride "
                 f"{'x'.join(map(str, g['stride']))}, {g['boundary']}: Np = {s['num_patches']} "
                 f"patches of M = {s['patch_size']}")
    lines.append("test error = bias^2 + variance (mean over the test set); alpha = P / N")
    lines.append("Qbar columns: FC the scalar; CNN the mean diagonal and mean off-diagonal entry; "
                 "LCN the mean and range of the diagonal")
    if results.get("interrupted"):
        lines.append(f"INTERRUPTED during {results.get('interrupted_during') or 'the run'}: "
                     "only the finished rows below (the run cut short is dropped)")
    if results.get("langevin_error"):
        lines.append(f"LANGEVIN FAILED: {results['langevin_error']}; the theory rows are "
                     "complete, the sampled column only where it finished")
    inf = results["infinite_width"]
    lang = results.get("langevin") or {}
    unmixed = []
    # class targets: an accuracy column (the argmax, or the sign, of the posterior mean)
    acc = any("accuracy" in r for rows in (results.get("finite_width") or {}).values()
              for r in rows) or any("accuracy" in r for r in inf.values())
    ahead = f"{'acc':>7}" if acc else ""

    def acc_of(r):
        return f"{r['accuracy']:>7.3f}" if acc and r.get("accuracy") is not None else (
            " " * 7 if acc else "")

    if acc:
        coding = next((r["class_coding"] for rows in (results.get("finite_width") or {}).values()
                       for r in rows if "class_coding" in r), None) or next(
            (r["class_coding"] for r in inf.values() if "class_coding" in r), "")
        lines.append(f"acc: test accuracy, the predicted class is the argmax (+-1: the sign) of "
                     f"the posterior mean (targets {coding})")
    for arch in s["architectures"]:
        rows = (results.get("finite_width") or {}).get(arch) or []
        if not rows and arch not in inf:
            continue
        lines.append("")
        if arch == "fc":
            title = "FC   (global renormalisation: one scalar Qbar)"
            qhead = f"{'Qbar':>9}"
        elif arch == "cnn":
            title = "CNN  (local renormalisation: Qbar_ij over patch pairs)"
            qhead = f"{'Qbar_ii':>9}{'Qbar_i!=j':>11}"
        elif arch == "deepcnn":
            dg = s["deep_geometry"]
            layers = ", ".join(f"{'x'.join(map(str, f))}/{'x'.join(map(str, st))} {p}"
                               for f, st, p in zip(dg["filter_sizes"], dg["strides"],
                                                   dg["padding"]))
            title = (f"DCNN (deep CNN, {len(dg['padding'])} layers [{layers}]: Qbar = R^L over "
                     f"its d = {s['deep_num_patches']} final patches)")
            qhead = f"{'Qbar_ii':>9}{'Qbar_i!=j':>11}"
        else:
            title = "LCN  (local, diagonal: Qbar_ii only)"
            qhead = f"{'Qbar_ii':>9}{'min-max':>15}"
        lhead = f"{'sampled':>18}" if lang.get(arch) else ""
        lines.append(title)
        lines.append(f"{'N':>7}{'alpha':>8}{'error':>9}{'bias^2':>9}{'variance':>9}{ahead}  "
                     f"{qhead}{lhead}")
        by_w = {r["width"]: r for r in lang.get(arch, [])}
        for r in rows:
            q = r["Q_summary"]
            if arch == "fc" and "Qbar" in q:
                qs = _fmt(q["Qbar"])
            elif arch == "fc":  # D outputs: the D x D Qbar's mean diagonal and off-diagonal
                qs = _fmt(q["diag_mean"]) + f" ({q['offdiag_mean']:.4f})"
            elif arch in ("cnn", "deepcnn"):
                qs = _fmt(q["diag_mean"]) + f"{q['offdiag_mean']:11.5f}"
            else:
                qs = _fmt(q["diag_mean"]) + f"  {q['diag_min']:.3f}-{q['diag_max']:.3f}".rjust(15)
            flag = "" if r.get("converged", True) else "  (not converged)"
            ls = ""
            if r["width"] in by_w:
                b = by_w[r["width"]]
                se = b.get("error_se")
                ls = f"{b['error']:10.4f} +- " + (f"{se:.4f}" if se is not None else "  n/a ")
                rh = b.get("rhat_max")
                if rh is not None and rh > RHAT_WARN:
                    ls += f" R-hat {rh:.2f}!"
                    unmixed.append(f"{_NAMES[arch]} N={r['width']} (R-hat {rh:.2f})")
            lines.append(f"{r['width']:>7}{r['alpha']:>8.3g}{r['error']:>9.4f}{r['bias2']:>9.4f}"
                         f"{r['variance']:>9.4f}{acc_of(r)}  {qs}{ls}{flag}")
        i = inf.get(arch)
        if i is None:
            continue
        note = {"fc": "GP, FC kernel", "cnn": "GP, CNN kernel, Qbar = I",
                "lcn": "= CNN's limit (Qbar = I)", "deepcnn": "GP, deep CNN kernel"}[arch]
        lines.append(f"{'inf':>7}{0:>8}{i['error']:>9.4f}{i['bias2']:>9.4f}{i['variance']:>9.4f}"
                     f"{acc_of(i)}  {note}")
    p = inf.get("pooled")
    if p:
        lines.append("")
        lines.append(f"for context, infinite-width CNN with global average pooling (Qbar = 11^T/Np): "
                     f"error {p['error']:.4f} (bias^2 {p['bias2']:.4f}, variance {p['variance']:.4f})")
    lines.extend(_validity_lines(results))
    if unmixed:
        lines.append("")
        lines.append(f"WARNING: Langevin chains not mixed (R-hat > {RHAT_WARN}) at "
                     f"{', '.join(unmixed)}: those sampled errors and their standard errors "
                     "are not reliable; run longer (--langevin-steps, or --sweeps) or more chains "
                     "(--chains)")
    lines.append("")
    for arch in s["architectures"]:
        sm = (results.get("summary") or {}).get(arch)
        if sm is None:
            lines.append(f"{_NAMES[arch]:>4}: not finished")
            continue
        verdict = ("below" if sm["best_error"] < sm["infinite_error"] else "not below")
        lines.append(f"{_NAMES[arch]:>4}: best finite-width error {sm['best_error']:.4f} at "
                     f"N = {sm['best_width']}, {verdict} its infinite-width {sm['infinite_error']:.4f}; "
                     f"at N = {sm['narrowest_width']}: {sm['narrowest_error']:.4f} "
                     f"({100 * sm['relative_change_at_narrowest']:+.1f}%)")
    return "\n".join(lines)


def save_results(results: dict, out_dir) -> str:
    """Write ``results.json`` into out_dir (created if needed); returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    # atomically: a failed write leaves the previous results.json, never a truncated one
    return write_json(os.path.join(out_dir, "results.json"), results, indent=1)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend; ImportError with the install
    hint (lkr._extras) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(f"matplotlib is not installed; {install_hint('plot')} for the "
                          "plot") from None
    return plt


def stderr_note(quiet: bool):
    """A ``note(msg)`` function printing progress messages on stderr unless ``quiet``."""
    def note(msg):
        if not quiet:
            print(msg, file=sys.stderr, flush=True)
    return note


def plot_results(results: dict, path) -> str:
    """Test error, bias^2 and variance against width (log axis), with the N = inf lines.

    Raises
    ------
    ImportError
        When matplotlib is missing, with the install hint (lkr._extras).
    """
    plt = pyplot()
    s = results["settings"]
    colors = {"fc": "tab:blue", "cnn": "tab:red", "lcn": "tab:green", "deepcnn": "tab:purple"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    panels = (("error", "test error = bias$^2$ + variance", "test error"),
              ("relative", "test error relative to N = $\\infty$ (%)", "change in test error (%)"),
              ("bias2", "bias$^2$", "bias$^2$"), ("variance", "variance", "variance"))
    for ax, (key, title, ylabel) in zip(axes.flat, panels):
        for arch in s["architectures"]:
            rows = results["finite_width"][arch]
            inf = results["infinite_width"][arch]
            widths = [r["width"] for r in rows]
            if key == "relative":
                vals = [100 * (r["error"] / inf["error"] - 1) for r in rows]
                ref = 0.0
            else:
                vals = [r[key] for r in rows]
                ref = inf[key]
            ax.plot(widths, vals, "o-", color=colors[arch], label=_NAMES[arch])
            # LCN's limit is the CNN's (the same line): red and green dashes interleaved
            # (one starts where the other's gap is), so that both stay visible
            shared = arch == "lcn" and "cnn" in s["architectures"]
            style = {"cnn": (0, (4, 4)), "lcn": (4, (4, 4))}.get(arch, "--")
            if key != "relative" or arch == s["architectures"][0]:
                ax.axhline(ref, ls=style if key != "relative" else "--",
                           color="gray" if key == "relative" else colors[arch], lw=1.2,
                           label=None if key == "relative" else
                           f"{_NAMES[arch]}, N = $\\infty$" + (" (= CNN's)" if shared else ""))
            lang = (results.get("langevin") or {}).get(arch)
            if lang and key == "error":
                ax.errorbar([r["width"] for r in lang], [r["error"] for r in lang],
                            yerr=[r["error_se"] for r in lang], fmt="s", mfc="none",
                            color=colors[arch], capsize=3, label=f"{_NAMES[arch]}, Langevin")
        ax.set_xscale("log")
        ax.set_xlabel("width N (FC units; CNN, LCN channels)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=8, ncol=2)
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(f"{s['task']}: P = {s['P']}, T = {s['temperature']:g}, {s['activation']}, "
                 f"Np = {s['num_patches']} patches of M = {s['patch_size']} "
                 "(dashed: infinite-width GP)", fontsize=10)
    try:
        savefig(fig, path, dpi=110)  # atomically, as results.json
    finally:
        plt.close(fig)
    return os.fspath(path)


def write_outputs(results: dict, out, note) -> int:
    """``lkr fc-vs-cnn --out``: results.json and the plot, each written atomically.

    Returns 0, or 2 after a one-line message on stderr when a file cannot be written. With
    no plot (an interrupted run, no matplotlib) an old plot of an earlier run is removed,
    and stderr says so. ``note(msg)`` reports what was written.
    """
    png = os.path.join(out, "fc_vs_cnn.png")
    try:
        note(f"wrote {save_results(results, out)}")
    except OSError as exc:
        print(f"lkr fc-vs-cnn: error: cannot write {os.path.join(out, 'results.json')}: "
              f"{describe(exc)}", file=sys.stderr, flush=True)
        return 2
    why = None
    if results.get("interrupted"):
        why = "the run was interrupted"
    else:
        try:
            note(f"wrote {plot_results(results, png)}")
        except ImportError as exc:
            why = str(exc)
        except OSError as exc:
            print(f"lkr fc-vs-cnn: error: cannot write {png}: {describe(exc)}", file=sys.stderr,
                  flush=True)
            return 2
    if why is not None:
        # said even with --quiet: the plot that --out asks for is missing; an old one from
        # an earlier run would sit beside the new results.json as if it were theirs
        stale = ""
        if os.path.exists(png):
            try:
                os.remove(png)
                stale = f"; removed the old {png} of an earlier run"
            except OSError as exc:
                stale = f"; the old {png} of an earlier run is still there ({describe(exc)})"
        print(f"no plot: {why}{stale}", file=sys.stderr, flush=True)
    return 0
