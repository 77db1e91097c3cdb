"""``lkr check-theory``: does the effective action describe *this* network?

For one setting (a task as ``lkr fc-vs-cnn`` takes it, an architecture, width, temperature,
activation and geometry) it fits the action and the infinite-width GP and samples the
network's posterior exactly with the collapsed sampler (:func:`lkr.train.collapsed`) on the
same training set, then prints the three test errors, the theory's share of the
finite-width shift with its standard error, the R-hat and a verdict
(:mod:`lkr.experiments._theory_check`). ``--atlas`` maps the share over the filter
dimension, the width ratio and the activation on a teacher task
(:mod:`lkr.experiments._atlas`). docs/validity.md explains the figures.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import _interrupt
from .._io import check_writable_dir, describe, write_json
from .._json import jsonable
from ._atlas import ATLAS_DEFAULTS, format_atlas, plot_atlas, run_atlas
from ._theory_check import DEFAULT_TOLERANCE, RHAT_LIMIT, compare
from .argtypes import (
    add_task_source_options,
    nonneg_int,
    positive_float,
    positive_int,
    shape,
    task_spec,
)

__all__ = ["add_arguments", "command", "check", "format_check", "DEFAULTS"]

HELP = "check the effective action against exact sampling of the network (--atlas: a map)"

#: the single check's defaults (a minute or two on two cores for the default CNN)
DEFAULTS = dict(task="local-teacher", P=100, P_test=500, arch="cnn", temperature=0.1,
                activation="erf", input_shape=None, filter_size=(4,), stride=None,
                boundary="periodic", sweeps=400, chains=4, seed=0)


def check(*, arch=DEFAULTS["arch"], width=None, task=DEFAULTS["task"], P=DEFAULTS["P"],
          P_test=DEFAULTS["P_test"], temperature=DEFAULTS["temperature"],
          activation=DEFAULTS["activation"], lambda0=1.0, lambda1=1.0, input_shape=None,
          filter_size=DEFAULTS["filter_size"], stride=None, boundary=DEFAULTS["boundary"],
          depth=None, padding="valid", task_options=None, sweeps=DEFAULTS["sweeps"],
          burn_in=None, chains=DEFAULTS["chains"], seed=DEFAULTS["seed"],
          tol=DEFAULT_TOLERANCE, finite_filter=False) -> dict:
    """One theory check (the ``lkr check-theory`` computation); returns a JSON-friendly
    dict: ``settings``, ``task`` (its info) and ``check`` (the
    :func:`lkr.experiments._theory_check.compare` row), or ``interrupted`` (True) with
    ``sweeps_done`` when Ctrl-C stopped the sampler."""
    from .fc_vs_cnn import prepare

    if arch not in ("fc", "cnn", "lcn", "deepcnn"):
        raise ValueError(f"arch must be 'fc', 'cnn', 'lcn' or 'deepcnn', got {arch!r}")
    if arch == "deepcnn" and depth is None:
        raise ValueError("arch 'deepcnn' needs --depth L (and per-layer --filter/--stride)")
    width = P if width is None else width
    prepared = prepare(task, P=P, P_test=P_test, widths=[width], input_shape=input_shape,
                       filter_size=filter_size, stride=stride, boundary=boundary, seed=seed,
                       task_options=task_options, depth=depth, padding=padding)
    X, y, Xt, yt, info = prepared.task
    geometry = prepared.deep_geometry if arch == "deepcnn" else prepared.geometry
    row = compare(arch, width, geometry=geometry, X=X, y=y, X_test=Xt, y_test=yt,
                  temperature=temperature, activation=activation, lambda0=lambda0,
                  lambda1=lambda1, sweeps=sweeps, burn_in=burn_in, chains=chains, seed=seed,
                  tol=tol, finite_filter=finite_filter and arch == "cnn"
                  and activation == "relu")
    settings = dict(arch=arch, width=int(width), task=task, P=len(y), P_test=len(yt),
                    temperature=float(temperature), activation=activation,
                    lambda0=float(lambda0), lambda1=float(lambda1), sweeps=int(sweeps),
                    burn_in=burn_in, chains=int(chains), seed=int(seed), tol=float(tol),
                    geometry=None if arch == "fc" else geometry.to_dict(),
                    num_patches=None if arch == "fc" else geometry.num_patches,
                    task_options=prepared.task_options)
    return jsonable(dict(experiment="check-theory", settings=settings, task=info, check=row,
                         interrupted=bool(row.get("interrupted"))))


def format_check(out: dict) -> str:
    """The report ``lkr check-theory`` prints."""
    s, r = out["settings"], out["check"]
    unit = {"fc": "N1", "cnn": "Nc", "lcn": "Nc", "deepcnn": "Nc"}[s["arch"]]
    head = (f"lkr check-theory: {s['arch'].upper()} {unit} = {s['width']} (alpha = P/N = "
            f"{s['P'] / s['width']:.3g}) on {s['task']} (P = {s['P']}, P_test = "
            f"{s['P_test']}), T = {s['temperature']:g}, {s['activation']}")
    if out.get("interrupted"):
        return head + "\n  INTERRUPTED during sampling: no exact result"
    sym = "N0" if s["arch"] == "fc" else "M"
    head += f", {sym} = {r['filter_dim']:g}"
    if s["num_patches"] is not None:
        head += f" (Np = {s['num_patches']})"
    sm = r["sampler"]
    d, dt = r["exact"] - r["gp"], r["theory"] - r["gp"]
    lines = [head,
             f"  GP (infinite width)        {r['gp']:.5f}",
             f"  theory (effective action)  {r['theory']:.5f}"
             + ("" if r["converged"] else "  (solver NOT converged)"),
             f"  exact (collapsed sampler)  {r['exact']:.5f} +- {r['exact_se']:.5f}   "
             f"({sm['chains']} chains, {sm['samples']} samples, R-hat {r['rhat']:.3f}"
             + (f", predictions {r['rhat_predictions']:.3f}" if r.get("rhat_predictions")
                else "") + ")",
             f"  finite-width shift: exact - GP = {d:+.5f} +- {r['exact_se']:.5f}, "
             f"theory - GP = {dt:+.5f}"]
    if r["share"] is not None:
        lines.append(f"  theory's share of the shift: {100 * r['share']:.1f}% +- "
                     f"{100 * r['share_se']:.1f}%")
    if "finite_filter" in r:
        f = r["finite_filter"]
        lines.append("  finite-filter action (experimental): " + (
            f"undefined here ({f['undefined']})" if f.get("error") is None else
            f"{f['error']:.5f}, share {100 * f['share']:.1f}% +- {100 * f['share_se']:.1f}%"))
    v = r["verdict"]
    tol = 100 * s["tol"]
    text = {"within": f"WITHIN tolerance ({tol:.0f}% of the shift + 4 SE)",
            "outside": f"OUTSIDE tolerance ({tol:.0f}% of the shift + 4 SE)",
            "unresolved": ("within tolerance" if v["within"] else "OUTSIDE tolerance")
            + " in absolute terms (the shift itself is not resolved)",
            "unmixed": f"no verdict: R-hat above {RHAT_LIMIT}"}[v["status"]]
    lines.append(f"  verdict: {text}")
    lines.extend(f"    - {why}" for why in v["reasons"])
    return "\n".join(lines)


# -- the command ------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``lkr check-theory``."""
    from ._deep import parse_padding, shapes

    p.description = ("Fit the effective action and the infinite-width GP of one network and "
                     "sample its posterior exactly (collapsed sampler, readout integrated out) "
                     "on the same training set; print the three test errors, the theory's "
                     "share of the finite-width shift and a verdict. --atlas maps the share "
                     "over filter dimension, width ratio and activation.")
    p.epilog = ("Examples: lkr check-theory --filter 16 --input-shape 64 --activation relu; "
                "lkr check-theory --atlas --out atlas (about five minutes on two cores).")
    g = p.add_argument_group("task (as lkr fc-vs-cnn)")
    g.add_argument("--task", type=task_spec, default=DEFAULTS["task"],
                   help="local-teacher, gaussian-linear, mnist:DIR, cifar10:DIR or digits "
                        "(default: %(default)s)")
    g.add_argument("-P", "--P", dest="P", type=positive_int, default=None,
                   help=f"training set size (default: {DEFAULTS['P']}; atlas "
                        f"{ATLAS_DEFAULTS['P']})")
    g.add_argument("--P-test", dest="P_test", type=positive_int, default=None,
                   help=f"test set size (default: {DEFAULTS['P_test']}; atlas "
                        f"{ATLAS_DEFAULTS['P_test']})")
    g.add_argument("--seed", type=nonneg_int, default=0, help="seeds the task and the "
                   "sampler (default: %(default)s)")
    g.add_argument("--classes", default=None, help="image tasks: 'a,b' or 'a,c:b,d'")
    add_task_source_options(g)
    g = p.add_argument_group("network and posterior")
    g.add_argument("--arch", choices=("fc", "cnn", "lcn", "deepcnn"), default=DEFAULTS["arch"],
                   help="architecture (default: %(default)s; deepcnn needs --depth)")
    g.add_argument("--width", type=positive_int, default=None, metavar="N",
                   help="N1 (FC) or channels Nc (default: P, alpha = 1)")
    g.add_argument("-T", "--temperature", type=positive_float, default=DEFAULTS["temperature"],
                   help="posterior temperature (default: %(default)s)")
    g.add_argument("--activation", choices=("erf", "linear", "relu"),
                   default=DEFAULTS["activation"], help="(default: %(default)s)")
    g.add_argument("--lambda0", type=positive_float, default=1.0,
                   help="inverse prior variance of the first layer (default: %(default)s)")
    g.add_argument("--lambda1", type=positive_float, default=1.0,
                   help="inverse prior variance of the readout (default: %(default)s)")
    g = p.add_argument_group("patch geometry (CNN, LCN, deep CNN and the local teacher)")
    g.add_argument("--input-shape", type=shape, default=None, metavar="SHAPE",
                   help="synthetic tasks: N0 or HxW (default 64)")
    g.add_argument("--filter", dest="filter_size", type=shapes, default=DEFAULTS["filter_size"],
                   metavar="M", help="filter size (default: 4); with --depth one per layer")
    g.add_argument("--stride", type=shapes, default=None, metavar="S",
                   help="stride (default: the filter size); with --depth one per layer")
    g.add_argument("--boundary", choices=("periodic", "valid"), default=DEFAULTS["boundary"],
                   help="patch boundary mode (default: %(default)s)")
    g.add_argument("--depth", type=positive_int, default=None, metavar="L",
                   help="--arch deepcnn: the number of convolutional layers")
    g.add_argument("--padding", type=parse_padding, default="valid",
                   help="--arch deepcnn: valid, same, circular or periodic, one or one per "
                        "layer (default: %(default)s)")
    g = p.add_argument_group("exact sampler and verdict")
    g.add_argument("--sweeps", type=positive_int, default=None,
                   help=f"collapsed sweeps per chain, burn-in included (default: "
                        f"{DEFAULTS['sweeps']}; atlas {ATLAS_DEFAULTS['sweeps']} at alpha = 1, "
                        "scaled by max(alpha, 1/2))")
    g.add_argument("--burn-in", type=nonneg_int, default=None,
                   help="sweeps discarded per chain (default: a quarter)")
    g.add_argument("--chains", type=positive_int, default=DEFAULTS["chains"],
                   help="independent chains, at least 2 for a standard error "
                        "(default: %(default)s)")
    g.add_argument("--tolerance", type=positive_float, default=DEFAULT_TOLERANCE,
                   help="allowed |share - 1|, a fraction of the shift, before 4 SE are added "
                        "(default: %(default)s)")
    g.add_argument("--finite-filter", action="store_true",
                   help="relu CNN: also the experimental finite-filter action "
                        "(CNNTheory(filter_norm='exact'))")
    g = p.add_argument_group("atlas")
    g.add_argument("--atlas", action="store_true",
                   help="map the share over --atlas-M x --atlas-alphas x --atlas-activations "
                        "on the local teacher with Np = 4 patches (FC: one) of M sites")
    g.add_argument("--atlas-M", type=_int_list, default=None,
                   metavar="M,M,...", help="filter dimensions (FC: N0) (default: 4,9,16,27,64)")
    g.add_argument("--atlas-alphas", type=_float_list, default=None,
                   metavar="A,A,...", help="width ratios P/N (default: 0.25,1,4)")
    g.add_argument("--atlas-activations", type=_acts, default=None,
                   metavar="ACT,...", help="(default: erf,relu)")
    g.add_argument("--atlas-seeds", type=positive_int, default=None, metavar="K",
                   help="repeat the grid for K tasks (seeds seed .. seed+K-1) and average the "
                        "share over them (default: 1)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="write check_theory.json (atlas: atlas.json and atlas.png) into DIR")
    g.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _grid(values, text):
    """A grid axis: at least one value, none repeated (a repeat would run its cells twice)."""
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a value is repeated in {text!r}")
    return values


def _int_list(text):
    return _grid(tuple(positive_int(t) for t in text.split(",") if t.strip()), text)


def _float_list(text):
    return _grid(tuple(positive_float(t) for t in text.split(",") if t.strip()), text)


def _acts(text):
    out = tuple(t.strip() for t in text.split(",") if t.strip())
    for a in out:
        if a not in ("erf", "relu", "linear"):
            raise argparse.ArgumentTypeError(f"unknown activation {a!r}; choose erf, relu, "
                                             "linear")
    return _grid(out, text)


#: (option, dest) of the single check that the atlas would ignore (it sets them per cell)
_SINGLE_ONLY = (("--width", "width"), ("--activation", "activation"), ("--lambda0", "lambda0"),
                ("--lambda1", "lambda1"), ("--input-shape", "input_shape"),
                ("--filter", "filter_size"), ("--stride", "stride"), ("--boundary", "boundary"),
                ("--depth", "depth"), ("--padding", "padding"), ("--burn-in", "burn_in"))
_ATLAS_ONLY = (("--atlas-M", "atlas_M"), ("--atlas-alphas", "atlas_alphas"),
               ("--atlas-activations", "atlas_activations"), ("--atlas-seeds", "atlas_seeds"))


def _check_options(args, parser) -> None:
    """Refuse options the chosen mode would ignore or that leave nothing to judge, before
    any work; then fill in the atlas defaults."""
    base = parser.parse_args([])     # every default, converted as the options are
    if args.chains < 2:
        parser.error(f"--chains {args.chains}: the verdict needs a standard error over chains; "
                     "use --chains 2 or more")
    if args.atlas:
        ignored = [o for o, d in _SINGLE_ONLY if getattr(args, d) != getattr(base, d)]
        if ignored:
            parser.error(f"{', '.join(ignored)}: not used by --atlas (its cells take width, "
                         "activation and geometry from --atlas-M, --atlas-alphas and "
                         "--atlas-activations, lambda0 = lambda1 = 1, the default burn-in)")
        acts = args.atlas_activations or ATLAS_DEFAULTS["activations"]
        if args.finite_filter and (args.arch != "cnn" or "relu" not in acts):
            parser.error("--finite-filter is for relu CNN cells: --arch cnn with relu in "
                         "--atlas-activations")
    else:
        given = [o for o, d in _ATLAS_ONLY if getattr(args, d) is not None]
        if given:
            parser.error(f"{', '.join(given)}: only with --atlas")
        if args.finite_filter and (args.arch != "cnn" or args.activation != "relu"):
            parser.error("--finite-filter is for --arch cnn --activation relu (the finite-filter "
                         "action exists only there)")
        sweeps = args.sweeps or DEFAULTS["sweeps"]
        if args.burn_in is not None and args.burn_in >= sweeps:
            parser.error(f"--burn-in {args.burn_in} must be smaller than --sweeps {sweeps}")
    args.atlas_M = args.atlas_M or ATLAS_DEFAULTS["filter_dims"]
    args.atlas_alphas = args.atlas_alphas or ATLAS_DEFAULTS["alphas"]
    args.atlas_activations = args.atlas_activations or ATLAS_DEFAULTS["activations"]
    args.atlas_seeds = args.atlas_seeds or 1


def _task_options(args, parser) -> dict:
    """The task options the user set, checked against the task (as ``lkr fc-vs-cnn``)."""
    from ..data import TASK_OPTIONS, check_task_options

    try:
        check_task_options(args.task, classes=args.classes, downsample=args.downsample,
                           color=args.color or None, teacher_channels=args.teacher_channels,
                           noise=args.noise)
    except ValueError as exc:
        parser.error(str(exc))
    name = args.task.partition(":")[0]
    if name == "local-teacher":
        return dict(teacher_channels=args.teacher_channels or 4, noise=args.noise or 0.0)
    if name in TASK_OPTIONS["classes"]:
        opts = dict(classes=args.classes, downsample=args.downsample or 1)
        if name == "cifar10":
            opts["grayscale"] = not args.color
        return opts
    return {}


def command(args) -> int:
    """Run ``lkr check-theory`` with parsed options; returns the exit status."""
    from .._progress import progress_bar
    from .report import stderr_note

    parser = args.parser
    note = stderr_note(args.quiet)
    _check_options(args, parser)
    if args.out is not None:
        try:
            check_writable_dir(args.out)
        except OSError as exc:
            parser.error(f"--out {args.out}: cannot write there ({describe(exc)})")
    status = 0
    if args.atlas:
        if args.arch not in ("cnn", "lcn", "fc"):
            parser.error("--atlas maps --arch cnn, lcn or fc")
        if args.task != DEFAULTS["task"] or args.noise:
            parser.error("--atlas runs on the local-teacher task without label noise (its "
                         "--teacher-channels are honoured)")
        _task_options(args, parser)    # --classes, --downsample, --color: refused here
        try:
            results = run_atlas(filter_dims=args.atlas_M, alphas=args.atlas_alphas,
                                activations=args.atlas_activations,
                                P=args.P or ATLAS_DEFAULTS["P"],
                                P_test=args.P_test or ATLAS_DEFAULTS["P_test"],
                                temperature=args.temperature,
                                teacher_channels=args.teacher_channels or 4,
                                sweeps=args.sweeps or ATLAS_DEFAULTS["sweeps"],
                                chains=args.chains, seed=args.seed, arch=args.arch,
                                tol=args.tolerance, finite_filter=args.finite_filter,
                                seeds=args.atlas_seeds, progress=lambda n: progress_bar(
                                    n, "", not args.quiet, unit="cell", ascii="-#",
                                    bar_format="[{bar:24}] {n_fmt}/{total_fmt} {elapsed}  "
                                               "{desc}"))
        except _interrupt.Interrupted as exc:
            results, status = exc.results, _interrupt.exit_status()
            print(f"lkr check-theory: interrupted during {exc.during}; writing the finished "
                  "cells", file=sys.stderr, flush=True)
        print(format_atlas(results), flush=True)
        return _write(results, args.out, "atlas", note) or status
    task_options = _task_options(args, parser)
    from ._deep import layer_options

    filter_size, stride = layer_options(args, parser)
    if args.arch == "deepcnn" and args.depth is None:
        parser.error("--arch deepcnn needs --depth L")
    if args.depth is not None and args.arch != "deepcnn":
        parser.error("--depth is for --arch deepcnn")
    try:
        note("lkr check-theory: fitting the action and the GP, then sampling (Ctrl-C stops) ...")
        out = check(arch=args.arch, width=args.width, task=args.task, P=args.P or DEFAULTS["P"],
                    P_test=args.P_test or DEFAULTS["P_test"], temperature=args.temperature,
                    activation=args.activation, lambda0=args.lambda0, lambda1=args.lambda1,
                    input_shape=args.input_shape, filter_size=filter_size, stride=stride,
                    boundary=args.boundary, depth=args.depth, padding=args.padding,
                    task_options=task_options, sweeps=args.sweeps or DEFAULTS["sweeps"],
                    burn_in=args.burn_in, chains=args.chains, seed=args.seed,
                    tol=args.tolerance, finite_filter=args.finite_filter)
    except (ValueError, TypeError, ImportError) as exc:
        parser.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if out.get("interrupted"):
        status = _interrupt.exit_status()
    print(format_check(out), flush=True)
    return _write(out, args.out, "check_theory", note) or status


def _write(results, out, stem, note) -> int:
    """results as ``DIR/stem.json`` (and the atlas plot); 0, or 2 when a file cannot be
    written."""
    if out is None:
        return 0
    path = os.path.join(out, stem + ".json")
    try:
        note(f"wrote {write_json(path, results, indent=1)}")
        if stem == "atlas" and not results.get("interrupted") and results["rows"]:
            try:
                note(f"wrote {plot_atlas(results, os.path.join(out, 'atlas.png'))}")
            except ImportError as exc:
                print(f"lkr check-theory: no plot ({exc})", file=sys.stderr, flush=True)
    except OSError as exc:
        print(f"lkr check-theory: error: cannot write into {out}: {describe(exc)}",
              file=sys.stderr, flush=True)
        return 2
    return 0
