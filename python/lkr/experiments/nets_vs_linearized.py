r"""Finite-width networks against their linearisations, and the effective rank of the Jacobian.

The experiment behind ``lkr nets-vs-linearized``. On a classification task (default: two
groups of scikit-learn's 8 x 8 digits), for every architecture and every width it

1. draws a network at initialisation w0 with one output per class group (D readouts sharing
   the hidden layer, :mod:`lkr.experiments.multioutput`);
2. computes the empirical NTK Theta = J J^T of J = grad_w f(w0, X) on the training set
   (P D rows: samples x outputs), and from its eigenvalues (the squared singular values of
   J) the effective rank exp(H(sigma / sum sigma)) and the stable rank
   sum sigma^2 / sigma_1^2 (:mod:`lkr.spectrum`);
3. trains the network by gradient descent (or SGD with ``batch``) on the squared loss
   (1/2) sum (Y - f)^2 with one-hot targets Y, step size eta = lr_scale / lambda_max(Theta);
4. trains its linearisation f(w0) + J u around the same w0 with the same optimiser, steps
   and minibatches (exactly, in function space), and solves the kernel regression
   (the linearisation's many-step limit, Theta^+ (Y - f0)) as a second reference;
5. reports test accuracy (argmax over the outputs) and test MSE (mean over samples and
   outputs of (Y - f)^2) of all three, the gap net - linearisation, and the ranks.

Every point is repeated over ``seeds`` initialisations (the data split is fixed by
``seed``); tables show mean +- standard error. :func:`run_experiment` returns a JSON-friendly
dict; :func:`format_table`, :func:`save_results` and :func:`plot_results` turn it into the
table, ``results.json`` and ``nets_vs_linearized.png``
(:mod:`lkr.experiments.report_nets_vs_linearized`).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from typing import Callable, NamedTuple

import numpy as np

from .. import _interrupt
from .._io import check_writable_dir, describe
from .._validate import is_integer as _is_integer
from .argtypes import nonneg_int, positive_float, positive_int, shape
from .argtypes import widths as _int_list
from .report import stderr_note
from .report_nets_vs_linearized import format_table, plot_results, save_results

__all__ = ["add_arguments", "command", "prepare", "NetsVsLinearizedSetup", "run_experiment", "format_table",
           "save_results", "plot_results", "ARCHITECTURES", "DEFAULTS", "HELP"]

HELP = "finite-width nets against their linearisations; effective rank of the Jacobian"


class Arch(NamedTuple):
    """An architecture of the experiment: name, base width, and ``make(width, geometry,
    activation, seed) -> net`` (a single-output :mod:`lkr.nets` net; ``readout`` its
    readout parameter)."""

    label: str
    base_width: int
    make: Callable
    readout: str = "v"


def _lkr_net(arch):
    """make(width, geometry, activation, seed) of lkr's one-hidden-layer ``arch``
    (:func:`lkr.train._arch.make_net`; FC takes the flattened inputs)."""
    def make(width, geometry, activation, seed):
        from ..train._arch import make_net

        X = np.zeros((1, geometry.input_size))
        return make_net(arch, width, X, geometry=geometry, activation=activation, seed=seed)[0]

    return make


#: name -> Arch; a new architecture (e.g. the deep CNN) is one line here
ARCHITECTURES = {
    "fc": Arch("FC", 32, _lkr_net("fc")),
    "cnn": Arch("CNN", 4, _lkr_net("cnn")),
    "lcn": Arch("LCN", 2, _lkr_net("lcn")),
}

#: the default run (about a minute of CPU time, see docs/nets-vs-linearized.md)
DEFAULTS = dict(task="digits", classes="0,2,4,6,8:1,3,5,7,9", P=256, P_test=512,
                architectures=("fc", "cnn", "lcn"), multipliers=(1, 2, 4, 8), base_widths=None,
                activation="relu", filter_size=(3, 3), stride=(1, 1), boundary="valid",
                steps=1000, lr_scale=1.5, batch=None, seeds=1, seed=0)


# -- data ---------------------------------------------------------------------------------------
def _load(task, P, P_test, seed, classes, downsample):
    """(X, group, X_test, group_test, info, D)."""
    from .. import data

    name = task.partition(":")[0]
    if name == "digits":
        X, g, Xt, gt, info = data.digits_groups(P, P_test, seed, classes=classes,
                                                downsample=downsample)
        return X, g, Xt, gt, info, int(info["groups"])
    if name in ("mnist", "cifar10"):
        t = data.load_task(task, P, P_test, seed, classes=classes, downsample=downsample)
        # +1 is the first group, -1 the second
        return (t.X, (t.y < 0).astype(int), t.X_test, (t.y_test < 0).astype(int), dict(t.info,
                groups=2), 2)
    raise ValueError(f"task must be digits, mnist:DIR or cifar10:DIR (a classification task), "
                     f"got {task!r}")


# -- one point ----------------------------------------------------------------------------------
def _metrics(F, groups, Y):
    return {"accuracy": float(np.mean(np.argmax(F, axis=1) == groups)),
            "mse": float(np.mean((Y - F) ** 2))}


def _point(arch, width, seed, geometry, activation, X, g, Xt, gt, D, steps, lr_scale, batch,
           stop=None):
    """Every number of one (architecture, width, seed)."""
    from .. import spectrum
    from . import multioutput as mo

    spec = ARCHITECTURES[arch]
    t0 = time.perf_counter()
    net = spec.make(width, geometry, activation, seed)
    m = mo.MultiOutput(net, D, seed=seed, readout=spec.readout)
    from ..data import one_hot

    Y, Yt = one_hot(g, D), one_hot(gt, D)
    K = mo.ntk(m, X)                      # Gram path: Theta = J J^T on the training set
    Kt = mo.ntk(m, Xt, X)
    s = spectrum.singular_values(K, gram=True)
    t_kernel = time.perf_counter() - t0
    lam_max = float(s[0]) ** 2
    lr = lr_scale / lam_max
    F0, F0t = m.forward(X), m.forward(Xt)

    t1 = time.perf_counter()
    params, done = mo.train_net(m, X, Y, lr, steps, batch, seed, stop=stop)
    t_net = time.perf_counter() - t1
    Fn, Fnt = m.forward(X, params), m.forward(Xt, params)
    moved = math.sqrt(sum(float(((params[k] - m.params[k]) ** 2).sum()) for k in params))
    norm0 = math.sqrt(sum(float((m.params[k] ** 2).sum()) for k in params))

    t2 = time.perf_counter()
    alpha = mo.train_linearized(K, F0, Y, lr, done, batch, seed, D)
    a_star = mo.kernel_solution(K, F0, Y)
    t_lin = time.perf_counter() - t2
    P, Pt = X.shape[0], Xt.shape[0]
    out = {"arch": arch, "width": int(width), "seed": int(seed), "num_params": m.num_params,
           "rows": P * D, "effective_rank": spectrum.effective_rank(s, values=True),
           "stable_rank": spectrum.stable_rank(s, values=True), "lambda_max": lam_max,
           "lr": lr, "steps": int(done), "relative_weight_change": moved / norm0}
    for name, Ftr, Fte in (("net", Fn, Fnt),
                           ("lin", F0 + (K @ alpha).reshape(P, D), F0t + (Kt @ alpha).reshape(Pt, D)),
                           ("kernel", F0 + (K @ a_star).reshape(P, D),
                            F0t + (Kt @ a_star).reshape(Pt, D))):
        te, tr = _metrics(Fte, gt, Yt), _metrics(Ftr, g, Y)
        out[name] = {"test_accuracy": te["accuracy"], "test_mse": te["mse"],
                     "train_accuracy": tr["accuracy"], "train_mse": tr["mse"]}
    out["gap"] = {"test_accuracy": out["net"]["test_accuracy"] - out["lin"]["test_accuracy"],
                  "test_mse": out["lin"]["test_mse"] - out["net"]["test_mse"]}
    out["timing"] = {"kernel_and_rank_s": t_kernel, "net_s": t_net, "linearized_s": t_lin,
                     "total_s": time.perf_counter() - t0}
    return out


_NUMBERS = ("effective_rank", "stable_rank", "relative_weight_change", "lr", "lambda_max")
_NESTED = ("net", "lin", "kernel", "gap")


def _mean_se(values):
    a = np.asarray(values, dtype=np.float64)
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else None
    return {"mean": float(a.mean()), "se": se, "n": int(a.size)}


def _aggregate(points, arch, width, multiplier):
    row = {"arch": arch, "width": width, "multiplier": multiplier,
           "num_params": points[0]["num_params"], "rows": points[0]["rows"],
           "seeds": [p["seed"] for p in points]}
    for k in _NUMBERS:
        row[k] = _mean_se([p[k] for p in points])
    for k in _NESTED:
        row[k] = {m: _mean_se([p[k][m] for p in points]) for m in points[0][k]}
    return row


# -- the experiment -----------------------------------------------------------------------------
@contextlib.contextmanager
def _one_thread():
    """BLAS and lkr's compiled kernels on one thread. Why: every step is small (P in the
    hundreds); on the 2-core machine under load, two threads made a step 2-3x slower in CPU
    time (and 100x for BLAS alone), see docs/nets-vs-linearized.md."""
    from .. import backend
    from .._blas import blas_threads

    old = backend.get_num_threads()
    backend.set_num_threads(1)
    try:
        with blas_threads(1):
            yield
    finally:
        backend.set_num_threads(old)


def _base_widths(base_widths, architectures):
    out = {a: ARCHITECTURES[a].base_width for a in architectures}
    out.update(base_widths or {})
    return out


class NetsVsLinearizedSetup(NamedTuple):
    """A loaded task, its geometry and the checked grid: every user error surfaces in
    :func:`prepare`, before any training."""

    task: str
    data: tuple
    geometry: object
    architectures: tuple
    multipliers: list
    bases: dict
    seeds: int
    seed: int
    seconds: float


Prepared = NetsVsLinearizedSetup  # its former name


def prepare(task=DEFAULTS["task"], *, classes=DEFAULTS["classes"], P=DEFAULTS["P"],
            P_test=DEFAULTS["P_test"], architectures=DEFAULTS["architectures"],
            multipliers=DEFAULTS["multipliers"], base_widths=None,
            filter_size=DEFAULTS["filter_size"], stride=DEFAULTS["stride"],
            boundary=DEFAULTS["boundary"], downsample=1, seeds=DEFAULTS["seeds"],
            seed=DEFAULTS["seed"]) -> NetsVsLinearizedSetup:
    """Check the arguments (as :func:`run_experiment`'s) and load the task; ValueError /
    TypeError / ImportError (scikit-learn missing) for bad input."""
    from ..geometry import PatchGeometry

    t0 = time.perf_counter()
    architectures = tuple(architectures)
    for a in architectures:
        if a not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {a!r}; choose from {tuple(ARCHITECTURES)}")
    multipliers = sorted({int(k) for k in multipliers})
    if not multipliers or multipliers[0] < 1:
        raise ValueError(f"multipliers must be positive integers, got {multipliers}")
    bases = _base_widths(base_widths, architectures)
    if not _is_integer(seeds) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    X, g, Xt, gt, info, D = _load(task, P, P_test, seed, classes, downsample)
    geometry = PatchGeometry(tuple(info["input_shape"]), filter_size, stride, boundary=boundary)
    # flat inputs (P, N0) serve every architecture (the patch nets cut them themselves)
    X, Xt = geometry.flatten(X, "X"), geometry.flatten(Xt, "X_test")
    return NetsVsLinearizedSetup(task, (X, g, Xt, gt, info, D), geometry, architectures,
                                 multipliers, bases, int(seeds), int(seed),
                                 time.perf_counter() - t0)


def run_experiment(task=DEFAULTS["task"], *, classes=DEFAULTS["classes"], P=DEFAULTS["P"],
                   P_test=DEFAULTS["P_test"], architectures=DEFAULTS["architectures"],
                   multipliers=DEFAULTS["multipliers"], base_widths=None,
                   activation=DEFAULTS["activation"], filter_size=DEFAULTS["filter_size"],
                   stride=DEFAULTS["stride"], boundary=DEFAULTS["boundary"], downsample=1,
                   steps=DEFAULTS["steps"], lr_scale=DEFAULTS["lr_scale"], batch=None,
                   seeds=DEFAULTS["seeds"], seed=DEFAULTS["seed"], progress=None,
                   prepared=None) -> dict:
    """Run the experiment (see the module docstring) and return every number and setting.

    Parameters
    ----------
    task : ``"digits"``, ``"mnist:DIR"`` or ``"cifar10:DIR"``
    classes : groups of classes, one output each (see :func:`lkr.data.parse_class_groups`;
        MNIST and CIFAR-10 take two groups)
    P, P_test : training and test set sizes
    architectures : names in :data:`ARCHITECTURES`
    multipliers : widths are multiplier x base width of each architecture
    base_widths : dict arch -> base width, overriding :data:`ARCHITECTURES`
    activation, filter_size, stride, boundary : the nets (CNN/LCN patches: a PatchGeometry)
    steps, lr_scale, batch : GD (SGD with a batch size), step lr_scale / lambda_max(Theta)
    seeds : number of initialisations (seed, seed + 1, ...); ``seed`` also fixes the data
    progress : callable(total) -> a tqdm-like bar (``update``, ``set_description_str``,
        ``close``), e.g. :func:`lkr._progress.progress_bar`
    prepared : the output of :func:`prepare`; then the task and grid arguments are its

    Returns
    -------
    dict
        ``settings``, ``task``, ``versions``, ``rows`` (aggregated per arch and width),
        ``points`` (every seed), ``timing``, ``interrupted``.
    """
    from .fc_vs_cnn import _versions

    t_start = time.perf_counter()
    if prepared is None:
        prepared = prepare(task, classes=classes, P=P, P_test=P_test,
                           architectures=architectures, multipliers=multipliers,
                           base_widths=base_widths, filter_size=filter_size, stride=stride,
                           boundary=boundary, downsample=downsample, seeds=seeds, seed=seed)
    task, architectures, multipliers = prepared.task, prepared.architectures, prepared.multipliers
    bases, seeds, seed, geometry = prepared.bases, prepared.seeds, prepared.seed, prepared.geometry
    X, g, Xt, gt, info, D = prepared.data
    P, P_test, downsample = X.shape[0], Xt.shape[0], info.get("downsample", downsample)
    t_data = prepared.seconds

    grid = [(a, m) for a in architectures for m in multipliers]
    bar = progress(len(grid) * seeds) if progress else None
    points, rows, interrupted = [], [], False
    try:
        for a, mult in grid:
            w = bases[a] * mult
            done = []
            for s in range(seed, seed + seeds):
                if bar is not None:
                    bar.set_description_str(f"{ARCHITECTURES[a].label} N={w} seed {s}")
                with _one_thread():
                    done.append(_point(a, w, s, geometry, activation, X, g, Xt, gt, D, steps,
                                       lr_scale, batch))
                points.append(done[-1])
                if bar is not None:
                    bar.update(1)
            rows.append(_aggregate(done, a, w, mult))
    except KeyboardInterrupt:
        interrupted = True  # what is finished is kept (a partial row when seeds were cut)
        if done:
            rows.append(dict(_aggregate(done, a, w, mult), interrupted=True))
    finally:
        if bar is not None:
            bar.close()
    settings = dict(task=task, classes=info["classes"], outputs=D, P=int(P), P_test=int(P_test),
                    architectures=list(architectures), multipliers=multipliers,
                    base_widths=bases, activation=activation, geometry=geometry.to_dict(),
                    num_patches=geometry.num_patches, patch_size=geometry.patch_size,
                    steps=int(steps), lr_scale=float(lr_scale),
                    optimizer="gd" if batch is None else f"sgd (batch {batch})",
                    batch=batch, seeds=list(range(seed, seed + seeds)), seed=int(seed),
                    downsample=int(downsample), loss="(1/2) sum_{mu,d} (Y - f)^2, one-hot Y",
                    lr="lr_scale / lambda_max(empirical NTK at init)",
                    mse="mean over samples and outputs of (Y - f)^2",
                    rank="of J = grad_w f(w0, X_train), rows = P x outputs, via the Gram J J^T")
    return dict(experiment="nets-vs-linearized", settings=settings, task=info,
                versions=_versions(), rows=rows, points=points, interrupted=interrupted,
                timing={"data_s": t_data, "total_s": time.perf_counter() - t_start},
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


# -- command line -------------------------------------------------------------------------------
def _base_width_list(text):
    out = {}
    for part in (p for p in text.replace(" ", "").split(",") if p):
        name, sep, val = part.partition("=")
        if not sep or name not in ARCHITECTURES:
            raise argparse.ArgumentTypeError(f"expected arch=width pairs like fc=32,cnn=4 "
                                             f"(archs {', '.join(ARCHITECTURES)}), got {text!r}")
        out[name] = positive_int(val)
    return out


def _archs(text):
    names = [p for p in text.replace(" ", "").split(",") if p]
    bad = [n for n in names if n not in ARCHITECTURES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"architectures must be among "
                                         f"{', '.join(ARCHITECTURES)}, got {text!r}")
    return names


class _FormerMultipliers(argparse.Action):
    """``--widths K,K,...``: the former name of ``--multipliers``, with a note on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("lkr nets-vs-linearized: --widths is now --multipliers (multipliers of the base "
              "widths; --widths means the widths themselves in lkr fc-vs-cnn)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lkr nets-vs-linearized``."""
    d = DEFAULTS
    parser.description = (
        "Train FC, CNN and LCN networks at several widths by gradient descent (one output "
        "per class group), and their linearisations around the same initialisation with the "
        "same optimiser; compare test accuracy and MSE, and report the effective rank of the "
        "Jacobian at initialisation. Prints a table; with --out, writes results.json and "
        "nets_vs_linearized.png.")
    parser.epilog = "Example: lkr nets-vs-linearized --out runs/nvl (about a minute on two cores)."
    g = parser.add_argument_group("task")
    g.add_argument("--task", default=d["task"],
                   help="digits (scikit-learn's 8x8 digits, pip install lkr[data]), mnist:DIR "
                        "or cifar10:DIR (default %(default)s)")
    g.add_argument("--classes", default=d["classes"],
                   help="class groups, one output each: 'a,b', 'a,c:b,d', 'a:b:c' or 'all' "
                        "(digits) (default %(default)s)")
    g.add_argument("-P", "--P", dest="P", type=positive_int, default=d["P"],
                   help="training set size (default %(default)s)")
    g.add_argument("--P-test", dest="P_test", type=positive_int, default=d["P_test"],
                   help="test set size (default %(default)s)")
    g.add_argument("--downsample", type=positive_int, default=1,
                   help="block-average factor of the images (default 1)")
    g = parser.add_argument_group("networks")
    g.add_argument("--arch", dest="architectures", type=_archs, default=list(d["architectures"]),
                   help=f"comma-separated, among {', '.join(ARCHITECTURES)} (default all)")
    g.add_argument("--multipliers", dest="multipliers", type=_int_list,
                   default=list(d["multipliers"]), metavar="K,K,...",
                   help="the widths as multipliers K of each architecture's base width: "
                        "N = K x base (default 1,2,4,8)")
    # the former spelling (--widths is the widths themselves in lkr fc-vs-cnn)
    g.add_argument("--widths", dest="multipliers", type=_int_list, default=argparse.SUPPRESS,
                   action=_FormerMultipliers, help=argparse.SUPPRESS)
    g.add_argument("--base-widths", type=_base_width_list, default=None, metavar="fc=N,...",
                   help="base widths (default " + ",".join(f"{k}={v.base_width}" for k, v in
                                                           ARCHITECTURES.items()) + ")")
    g.add_argument("--activation", choices=("relu", "erf", "linear"), default=d["activation"],
                   help="activation (default %(default)s)")
    g.add_argument("--filter", dest="filter_size", type=shape, default=d["filter_size"],
                   help="CNN/LCN filter, m or mhxmw (default 3x3)")
    g.add_argument("--stride", type=shape, default=d["stride"], help="stride (default 1x1)")
    g.add_argument("--boundary", choices=("valid", "periodic"), default=d["boundary"],
                   help="patch boundary (default %(default)s)")
    g = parser.add_argument_group("training")
    g.add_argument("--steps", type=nonneg_int, default=d["steps"],
                   help="GD/SGD steps of the net and of its linearisation (default %(default)s)")
    g.add_argument("--lr-scale", type=positive_float, default=d["lr_scale"],
                   help="step size in units of 1/lambda_max of the NTK at init (< 2 for the "
                        "linearisation to converge) (default %(default)s)")
    g.add_argument("--batch", type=positive_int, default=None,
                   help="SGD minibatch size (default: full-batch GD)")
    g.add_argument("--seeds", type=positive_int, default=d["seeds"],
                   help="initialisations per point, for error bars (default %(default)s)")
    g.add_argument("--seed", type=nonneg_int, default=d["seed"],
                   help="first seed; also fixes the data split (default %(default)s)")
    g = parser.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="write results.json (and nets_vs_linearized.png with matplotlib) to DIR")
    g.add_argument("--quiet", action="store_true", help="no progress on stderr")


def command(args) -> int:
    """``lkr nets-vs-linearized``: the table on stdout, files with --out; 130 on Ctrl-C."""
    from .._progress import progress_bar

    parser = args.parser
    if args.out is not None:
        # really creates (and removes) a file: a read-only or full --out fails now, not
        # after the training (lkr._io)
        try:
            check_writable_dir(args.out)
        except OSError as exc:
            parser.error(f"--out {args.out}: cannot write there ({describe(exc)})")

    note = stderr_note(args.quiet)

    try:
        # every user error (no scikit-learn, bad classes, sizes, geometry) shows up here,
        # before any training; later exceptions are bugs and keep their traceback
        prepared = prepare(args.task, classes=args.classes, P=args.P, P_test=args.P_test,
                           architectures=args.architectures, multipliers=args.multipliers,
                           base_widths=args.base_widths, filter_size=args.filter_size,
                           stride=args.stride, boundary=args.boundary,
                           downsample=args.downsample, seeds=args.seeds, seed=args.seed)
    except (ValueError, TypeError, ImportError) as exc:
        parser.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    kw = dict(prepared=prepared, activation=args.activation, steps=args.steps,
              lr_scale=args.lr_scale, batch=args.batch,
              progress=lambda n: progress_bar(n, "", not args.quiet, unit="point", ascii="-#",
                                              bar_format="[{bar:24}] {n_fmt}/{total_fmt} "
                                                         "{elapsed}  {desc}"))
    try:
        results = run_experiment(args.task, **kw)
    except FloatingPointError as exc:
        # as lkr train: one line, exit status 2
        print(f"lkr nets-vs-linearized: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(format_table(results), flush=True)
    status = _interrupt.exit_status() if results["interrupted"] else 0
    if args.out is None:
        note("(use --out DIR to save results.json and the plot)")
        return status
    # each file atomically (lkr._io); a failed write is one line and exit status 2
    png = os.path.join(args.out, "nets_vs_linearized.png")
    for what, write in (("results.json", lambda: save_results(results, args.out)),
                        ("the plot", lambda: plot_results(results, png))):
        try:
            note(f"wrote {write()}")
        except ImportError as exc:
            msg = f"no plot: {exc}"
            if os.path.exists(png):  # an old plot would pass for this run's
                try:
                    os.remove(png)
                    msg += f"; removed the old {png} of an earlier run"
                except OSError as err:
                    msg += f"; the old {png} of an earlier run is still there ({describe(err)})"
            print(msg, file=sys.stderr, flush=True)
        except OSError as exc:
            print(f"lkr nets-vs-linearized: error: cannot write {what} in {args.out}: "
                  f"{describe(exc)}", file=sys.stderr, flush=True)
            return 2
    return status
