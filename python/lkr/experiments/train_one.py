"""``lkr train``: sample one network's posterior (the exact collapsed sampler, or Langevin
with ``--sampler langevin``), beside its theory.

One one-hidden-layer network (FC, CNN or LCN) on one task (:func:`lkr.data.load_task`) is
sampled by :func:`lkr.train.collapsed` (or :func:`lkr.train.langevin`) at temperature T; its
test error (bias^2 + variance, with a standard error over the independent chains) is
printed next to the effective-action theory's at the same width (:mod:`lkr.theory`) and the
infinite-width GP's, in standard errors only when the chains have mixed (R-hat at most
1.05). With ``--out DIR`` every setting and result goes to ``DIR/train.json``.

Example::

    lkr train --arch cnn --width 16 -P 64 --sweeps 400 --chains 8 --out runs/cnn16
    lkr train --sampler langevin --steps 16000

From Python, :func:`run_experiment` does the same and returns the dict that is saved.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

from .. import _interrupt
from .._io import check_writable_dir, describe, write_json
from .._json import dumps, jsonable
from ..train._arch import NAMES
from .argtypes import nonneg_int, positive_float, positive_int, shape
from .report import RHAT_WARN

__all__ = ["add_arguments", "command", "run", "run_experiment", "DEFAULTS", "HELP"]

HELP = "sample one FC/CNN/LCN network's posterior (Langevin or the collapsed sampler)"

#: defaults of ``lkr train`` (about 10-30 s on two cores). The sampler is the exact collapsed
#: one: on the default task its chains mix (R-hat 1.01-1.02 in 400 sweeps, seeds 0 and 1),
#: where Langevin's 4000 steps did not (1.12; 3.3 on digits) and 16000 steps (four times
#: the time) only just did (1.03-1.04); ``--sampler langevin`` keeps Langevin.
DEFAULTS = dict(arch="cnn", task="local-teacher", P=64, P_test=200, width=16, temperature=0.1,
                activation="erf", lambda0=1.0, lambda1=1.0, input_shape=(64,), filter_size=(4,),
                stride=None, boundary="periodic", steps=4000, burn_in=None, thin=4, chains=8,
                lr=None, seed=0, sampler="collapsed", sweeps=400)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lkr train``."""
    parser.description = ("Sample one network's posterior (the exact collapsed sampler, or "
                          "Langevin dynamics with --sampler langevin; lkr.train) "
                          "and report its test error.")
    d = DEFAULTS
    g = parser.add_argument_group("network and posterior")
    g.add_argument("--arch", choices=("fc", "cnn", "lcn"), default=d["arch"],
                   help=f"architecture (default {d['arch']})")
    g.add_argument("--width", "-N", type=positive_int, default=d["width"],
                   help=f"hidden units (FC) or channels (CNN/LCN) (default {d['width']})")
    g.add_argument("-T", "--temperature", type=positive_float, default=d["temperature"],
                   help=f"posterior temperature T (default {d['temperature']})")
    g.add_argument("--activation", choices=("erf", "linear", "relu"), default=d["activation"],
                   help="activation (default erf; relu: the theory is approximate)")
    g.add_argument("--lambda0", type=positive_float, default=d["lambda0"],
                   help="prior precision of the first layer (default 1)")
    g.add_argument("--lambda1", type=positive_float, default=d["lambda1"],
                   help="prior precision of the readout (default 1)")
    g = parser.add_argument_group("task")
    g.add_argument("--task", default=d["task"],
                   help="local-teacher, gaussian-linear, mnist:DIR or cifar10:DIR (local "
                        "files; nothing is downloaded) (default local-teacher)")
    g.add_argument("-P", "--P", dest="P", type=positive_int, default=d["P"],
                   help=f"training set size (default {d['P']})")
    g.add_argument("--P-test", dest="P_test", type=positive_int, default=d["P_test"],
                   help=f"test set size (default {d['P_test']})")
    g.add_argument("--seed", type=nonneg_int, default=d["seed"],
                   help="seeds the task, the initial draws and the noise (default 0)")
    g.add_argument("--classes", default=None, help="image tasks: 'a,b' or 'a,c:b,d'")
    g.add_argument("--downsample", type=positive_int, default=None,
                   help="image tasks: block-average factor (default 1)")
    g.add_argument("--input-shape", type=shape, default=None,
                   help="synthetic tasks: N0 or HxW (default 64)")
    g.add_argument("--filter", dest="filter_size", type=shape, default=d["filter_size"],
                   help="filter size m or mhxmw (CNN/LCN and the local teacher; default 4)")
    g.add_argument("--stride", type=shape, default=None,
                   help="stride (default: the filter size)")
    g.add_argument("--boundary", choices=("periodic", "valid"), default=d["boundary"],
                   help="patch boundary mode (default periodic)")
    g = parser.add_argument_group("sampling")
    g.add_argument("--sampler", choices=("collapsed", "langevin"), default=d["sampler"],
                   help="collapsed (default): the exact sampler with the readout integrated "
                        "out (lkr.train.collapsed; no step-size bias, mixes where Langevin's "
                        "defaults did not); langevin: Langevin dynamics on every weight")
    g.add_argument("--sweeps", type=positive_int, default=None,
                   help=f"collapsed sampler: sweeps per chain, burn-in included (default "
                        f"{d['sweeps']})")
    g.add_argument("--steps", type=positive_int, default=None,
                   help=f"with --sampler langevin: steps per chain, burn-in included "
                        f"(default {d['steps']})")
    g.add_argument("--burn-in", type=nonneg_int, default=None,
                   help="sweeps or steps discarded first (default: a quarter of --sweeps; "
                        "Langevin: half of --steps)")
    g.add_argument("--thin", type=positive_int, default=None,
                   help=f"keep every k-th state (default {d['thin']}; collapsed: 1)")
    g.add_argument("--chains", type=positive_int, default=d["chains"],
                   help=f"independent chains, sampled together (default {d['chains']})")
    g.add_argument("--lr", type=positive_float, default=None,
                   help="with --sampler langevin: step size (default: lkr.train.suggest_lr, "
                        "a quarter of the stability limit)")
    g = parser.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="write every setting and result to DIR/train.json")
    g.add_argument("--no-theory", action="store_true", help="skip the theory's prediction")
    g.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    g.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


# -- the experiment --------------------------------------------------------------------------
def run_experiment(*, arch=DEFAULTS["arch"], task=DEFAULTS["task"], P=DEFAULTS["P"],
                   P_test=DEFAULTS["P_test"], width=DEFAULTS["width"],
                   temperature=DEFAULTS["temperature"], activation=DEFAULTS["activation"],
                   lambda0=DEFAULTS["lambda0"], lambda1=DEFAULTS["lambda1"], input_shape=None,
                   filter_size=DEFAULTS["filter_size"], stride=None,
                   boundary=DEFAULTS["boundary"], steps=DEFAULTS["steps"], burn_in=None,
                   thin=None, chains=DEFAULTS["chains"], lr=None,
                   seed=DEFAULTS["seed"], task_options=None, theory=True, progress=None,
                   sampler=DEFAULTS["sampler"], sweeps=DEFAULTS["sweeps"]) -> dict:
    """Sample one network and (optionally) evaluate its theory; returns a JSON-friendly dict.

    Keys: ``settings``, ``task`` (the task's info), ``langevin`` (the
    :meth:`~lkr.train.LangevinResult.to_dict` of the run, test error included),
    ``sampled`` (error, error_se, bias2, variance, chains, samples), ``theory`` and ``gp``
    (error, bias2, variance, Q summary) or None, ``difference_in_se`` and ``versions``.
    """
    from ..train import collapsed, default_burn_in, langevin
    from ..train._arch import check_arch, make_net, make_theory
    from .fc_vs_cnn import prepare

    check_arch(arch)
    if sampler not in ("langevin", "collapsed"):
        raise ValueError(f"sampler must be 'langevin' or 'collapsed', got {sampler!r}")
    if sampler == "collapsed":
        steps = sweeps
    if thin is None:
        thin = 1 if sampler == "collapsed" else DEFAULTS["thin"]
    if burn_in is None:
        burn_in = default_burn_in(steps) if sampler == "langevin" else steps // 4
    prepared = prepare(task, P=P, P_test=P_test, widths=[width], input_shape=input_shape,
                       filter_size=filter_size, stride=stride, boundary=boundary, seed=seed,
                       task_options=task_options)
    X, y, X_test, y_test, info = prepared.task
    g = prepared.geometry
    common = dict(activation=activation, lambda0=lambda0, lambda1=lambda1)
    net, X, X_test = make_net(arch, width, X, X_test, geometry=g, seed=seed, **common)
    if progress is not False:  # a line to show the sampling has started (Ctrl-C stops it)
        print(f"lkr train: sampling {chains} chains x {steps} "
              f"{'sweeps' if sampler == 'collapsed' else 'steps'} (Ctrl-C stops and keeps "
              "what is finished) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if sampler == "collapsed":
        res = collapsed(net, X, y, temperature, sweeps=steps, burn_in=burn_in, thin=thin,
                        X_test=X_test, y_test=y_test, chains=chains, seed=seed,
                        progress=progress)
    else:
        res = langevin(net, X, y, temperature, lr="auto" if lr is None else lr, steps=steps,
                       burn_in=burn_in, thin=thin, X_test=X_test, y_test=y_test,
                       chains=chains, seed=seed, progress=progress)
    t_sample = time.perf_counter() - t0
    out = dict(settings=dict(arch=arch, task=task, P=P, P_test=P_test, width=width,
                             alpha=P / width, temperature=temperature, steps=steps,
                             burn_in=burn_in, thin=thin, chains=chains,
                             lr=res.settings.get("lr"), sampler=sampler,
                             seed=seed, geometry=None if arch == "fc" else g.to_dict(),
                             **common),
               task=info, interrupted=res.interrupted, sampler=sampler)
    out["collapsed" if sampler == "collapsed" else "langevin"] = res.to_dict()
    sampled = res.test_error() if res.samples else None
    out["sampled"] = sampled
    out["theory"] = out["gp"] = out["difference_in_se"] = None
    timing = dict(sampling_s=t_sample)
    if theory and not res.interrupted:  # Ctrl-C stops the whole job: no theory after it
        t0 = time.perf_counter()
        try:
            model = make_theory(arch, width, geometry=g, temperature=temperature, **common)
            gp = make_theory(arch, None, geometry=g, temperature=temperature, **common)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sol = model.fit(X, y)
                ev = model.evaluate(X_test, y_test)
            gp.fit(X, y)
            Q = np.asarray(sol.Q, dtype=np.float64)
            out["theory"] = dict(name=type(model).__name__, converged=bool(sol.converged),
                                 Q_mean_diag=float(np.mean(np.diag(Q)) if Q.ndim == 2
                                                   else np.mean(Q)),
                                 warnings=[str(w.message) for w in caught],
                                 **{k: float(v) for k, v in ev.items()})
            out["gp"] = {k: float(v) for k, v in gp.evaluate(X_test, y_test).items()}
            se = None if sampled is None else sampled["error_se"]
            if se is not None and se == se and se > 0:
                out["difference_in_se"] = (sampled["error"] - ev["error"]) / se
        except KeyboardInterrupt:
            # Ctrl-C during the theory: keep the sampled part, say what is missing
            out["theory"] = out["gp"] = out["difference_in_se"] = None
            out["interrupted"] = True
            out["interrupted_during"] = "theory"
        timing["theory_s"] = time.perf_counter() - t0
    out["timing"] = timing
    from .. import __version__

    out["versions"] = dict(lkr=__version__, numpy=np.__version__, python=platform.python_version())
    return jsonable(out)


def format_report(out: dict) -> str:
    """The human-readable summary ``lkr train`` prints."""
    s = out["settings"]
    collapsed = out.get("sampler") == "collapsed"
    lg = out["collapsed" if collapsed else "langevin"]
    name = NAMES[s["arch"]]
    unit = "N1" if s["arch"] == "fc" else "Nc"
    lines = [f"lkr train: {name} {unit}={s['width']} (alpha = P/N = {s['alpha']:.3g}) on "
             f"{s['task']} (P={s['P']}, P_test={s['P_test']}), T={s['temperature']}, "
             f"{s['activation']}"]
    rh = lg.get("rhat_max")
    # the worst of R-hat and split R-hat (which also catches a drift within chains)
    worst = max([r for r in (rh, lg.get("rhat_split_max")) if r is not None], default=None)
    unmixed = worst is not None and worst > RHAT_WARN
    if collapsed:
        rs = lg.get("rhat_split_max")
        lines.append(f"  collapsed: {s['chains']} chains x {lg['samples_per_chain']} samples "
                     f"({lg['sweeps_done']} sweeps, burn-in {s['burn_in']}, thin {s['thin']}, "
                     f"step {lg['step']:.3g}, acceptance {lg['acceptance']:.2f}), "
                     f"{lg['sweeps_per_s']:.1f} sweeps/s"
                     + (f", R-hat max {rh:.2f}" if rh is not None else "")
                     + (f", split {rs:.2f}" if rs is not None else "")
                     + (" [INTERRUPTED]" if out["interrupted"] else ""))
    else:
        lines.append(f"  Langevin: {s['chains']} chains x {lg['samples_per_chain']} samples "
                     f"({lg['steps_done']} steps, burn-in {s['burn_in']}, thin {s['thin']}, "
                     f"lr {s['lr']:.3g}), {lg['steps_per_s']:.0f} steps/s"
                     + (f", R-hat max {rh:.2f}" if rh is not None else "")
                     + (" [INTERRUPTED]" if out["interrupted"] else ""))
    sm = out["sampled"]
    if sm is None:
        lines.append("  no samples were taken")
        return "\n".join(lines)
    se = sm["error_se"]
    se_txt = f" +- {se:.4f}" if se is not None and se == se else ""
    lines.append(f"  {'sampled test error':<22}{sm['error']:.4f}{se_txt}   (bias2 {sm['bias2']:.4f}, "
                 f"variance {sm['variance']:.4f})")
    th = out.get("theory")
    if th:
        lines.append(f"  {th['name'] + ' (theory)':<22}{th['error']:.4f}"
                     f"{' ' * len(se_txt)}   (bias2 {th['bias2']:.4f}, variance "
                     f"{th['variance']:.4f}){'' if th['converged'] else '  [not converged]'}")
        gp = out["gp"]
        lines.append(f"  {'GP (infinite width)':<22}{gp['error']:.4f}{' ' * len(se_txt)}   "
                     f"(bias2 {gp['bias2']:.4f}, variance {gp['variance']:.4f})")
        d = out.get("difference_in_se")
        diff = f"  sampled - theory = {sm['error'] - th['error']:+.4f}"
        if d is not None and not unmixed:
            lines.append(f"{diff} ({d:+.1f} standard errors)")
        elif unmixed:
            # a standard error of chains that have not mixed measures nothing: no verdict
            lines.append(f"{diff} (not in standard errors: the chains have not mixed)")
    elif out.get("interrupted_during") == "theory":
        lines.append("  theory: interrupted (not computed)")
    if unmixed:
        longer = "--sweeps" if collapsed else "--steps"
        lines.append(f"  WARNING: R-hat {worst:.2f} > {RHAT_WARN}: the chains have not mixed, so "
                     "the sampled error and its standard error are not reliable and are not "
                     f"compared with the theory; run longer ({longer}) or more chains "
                     "(--chains)")
    return "\n".join(lines)


def command(args) -> int:
    """Entry point of ``lkr train`` (``args`` from a parser set up by :func:`add_arguments`).
    Returns the exit status: 0, or 130 (Ctrl-C) / 143 (SIGTERM) when interrupted (partial
    results are still printed and saved)."""
    from ..train import default_burn_in

    collapsed = args.sampler == "collapsed"
    given = [o for o, v in (("--steps", args.steps), ("--lr", args.lr)) if v is not None]
    if collapsed and given:
        # Langevin's options with the default sampler: said, not ignored
        print(f"lkr train: error: {' and '.join(given)} {'are' if len(given) > 1 else 'is'} "
              "Langevin's; add --sampler langevin (the default sampler, collapsed, runs "
              "--sweeps and adapts its own step)", file=sys.stderr)
        return 2
    if not collapsed and args.sweeps is not None:
        # the collapsed sampler's length with Langevin: said, not ignored
        print("lkr train: error: --sweeps is the collapsed sampler's; with --sampler langevin "
              "give --steps", file=sys.stderr)
        return 2
    args.sweeps = DEFAULTS["sweeps"] if args.sweeps is None else args.sweeps
    steps = DEFAULTS["steps"] if args.steps is None else args.steps
    length, length_opt = (args.sweeps, "--sweeps") if collapsed else (steps, "--steps")
    if args.burn_in is None:
        burn_in = length // 4 if collapsed else default_burn_in(steps)
    else:
        burn_in = args.burn_in
    if burn_in >= length:
        print(f"lkr train: error: --burn-in {burn_in} must be smaller than {length_opt} "
              f"{length}", file=sys.stderr)
        return 2
    thin = args.thin if args.thin is not None else (1 if collapsed else DEFAULTS["thin"])
    if (length - burn_in) // thin < 2:
        # too few samples per chain for a mean, a variance or R-hat: refused, not a warning
        print(f"lkr train: error: {length_opt} {length} with burn-in {burn_in} and --thin "
              f"{thin} keep {(length - burn_in) // thin} sample(s) per chain; need at least "
              f"2 (raise {length_opt})", file=sys.stderr)
        return 2
    if args.out is not None:
        # really writes (and removes) a file: a read-only or full --out fails now
        try:
            check_writable_dir(args.out)
        except OSError as exc:
            print(f"lkr train: error: --out {args.out}: cannot write there ({describe(exc)})",
                  file=sys.stderr)
            return 2
    from ..data import TASK_OPTIONS, check_task_options

    try:
        check_task_options(args.task, classes=args.classes, downsample=args.downsample)
    except ValueError as exc:
        print(f"lkr train: error: {exc}", file=sys.stderr)
        return 2
    name = args.task.partition(":")[0]
    task_options = {}
    if name in TASK_OPTIONS["classes"]:  # the image tasks
        task_options.update(classes=args.classes, downsample=args.downsample or 1)
    try:
        out = run_experiment(arch=args.arch, task=args.task, P=args.P, P_test=args.P_test,
                             width=args.width, temperature=args.temperature,
                             activation=args.activation, lambda0=args.lambda0,
                             lambda1=args.lambda1, input_shape=args.input_shape,
                             filter_size=args.filter_size, stride=args.stride,
                             boundary=args.boundary, steps=steps, burn_in=burn_in,
                             thin=thin, chains=args.chains, lr=args.lr, seed=args.seed,
                             task_options=task_options or None, theory=not args.no_theory,
                             progress=False if args.quiet else None, sampler=args.sampler,
                             sweeps=args.sweeps)
    except (ValueError, TypeError, FloatingPointError) as exc:
        print(f"lkr train: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(dumps(out, indent=1))
    else:
        print(format_report(out))
    status = _interrupt.exit_status() if out["interrupted"] else 0
    if out["interrupted"]:
        print("lkr train: interrupted; the results above are what was finished",
              file=sys.stderr)
    if args.out is not None:
        path = os.path.join(args.out, "train.json")
        try:
            write_json(path, out, indent=1)  # atomically: never a truncated train.json
        except OSError as exc:
            print(f"lkr train: error: cannot write {path}: {describe(exc)}", file=sys.stderr)
            return 2
        if not args.quiet:
            print(f"saved settings and results to {path}", file=sys.stderr)
    return status


run = command  # the name ``lkr train``'s entry point has had


def main(argv=None) -> int:  # pragma: no cover - `lkr train` is the entry point
    parser = argparse.ArgumentParser(prog="lkr train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
