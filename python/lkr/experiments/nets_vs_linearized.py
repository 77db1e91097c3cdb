r"""Finite-width networks against their linearisations, on a ladder of tasks, and the
effective rank of the Jacobian.

The experiment behind ``lkr nets-vs-linearized`` (docs/nets-vs-linearized.md). For every
task of a difficulty ladder (default: four rungs of scikit-learn's 8 x 8 digits,
:mod:`lkr.experiments._ladder`), every architecture (FC, CNN, LCN, deep CNN), width and
seed it

1. draws a network at initialisation w0 with one output per class group (D readouts sharing
   the hidden layers, :mod:`lkr.experiments.multioutput`);
2. computes the empirical NTK Theta = J J^T of J = grad_w f(w0, X) on the training set
   (P D rows: samples x outputs) and its eigendecomposition; from the eigenvalues (the
   squared singular values of J) the effective rank exp(H(sigma / sum sigma)) and the
   stable rank sum sigma^2 / sigma_1^2 (:mod:`lkr.spectrum`);
3. trains the network by gradient descent (or SGD with ``batch``) on the squared loss
   (1/2) sum (Y - f)^2 with one-hot targets Y, step size eta = lr_scale / lambda_max(Theta),
   until a stopping rule holds (:class:`~lkr.experiments.multioutput.StopRule`: train loss
   below a fraction of its start, no progress over a window, or a step cap) or for a fixed
   number of steps;
4. trains its linearisation f(w0) + J u around the same w0 with the same optimiser and the
   same stopping rule (exactly, in the NTK's eigenbasis), and solves the kernel regression
   (the linearisation's many-step limit, Theta^+ (Y - f0)) as a third model;
5. reports test accuracy (argmax over the outputs) and test MSE (mean over samples and
   outputs of (Y - f)^2) of all three, the gap net - linearisation per seed (paired), the
   steps taken, and the ranks; per task its difficulty (the kernel solution's test error).

Every point is repeated over ``seeds`` initialisations (the data split is fixed by
``seed``); rows show mean +- standard error over seeds. :func:`run_experiment` returns a
JSON-friendly dict; :func:`format_table`, :func:`save_results` and :func:`plot_results` turn
it into the table, ``results.json`` and ``nets_vs_linearized.png``
(:mod:`lkr.experiments.report_nets_vs_linearized`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Callable, NamedTuple, Optional

import numpy as np

from .. import _interrupt
from .._io import check_writable_dir, describe
from .._validate import is_integer as _is_integer
from .._validate import width as _width
from . import _ladder
from .argtypes import nonneg_float, nonneg_int, positive_float, positive_int, shape
from .argtypes import widths as _int_list
from .multioutput import StopRule
from .report import stderr_note
from .report_nets_vs_linearized import aggregate, format_table, plot_results, save_results

__all__ = ["add_arguments", "command", "prepare", "NetsVsLinearizedSetup", "Prepared",
           "PreparedTask", "run_experiment", "format_table", "save_results",
           "plot_results", "ARCHITECTURES", "DEFAULTS", "HELP", "StopRule"]

HELP = "finite-width nets against their linearisations on a task ladder; rank of the Jacobian"


class Arch(NamedTuple):
    """An architecture of the experiment: name, base width, and ``make(width, geometry,
    activation, seed) -> net`` (a single-output :mod:`lkr.nets` net; ``readout`` its
    readout parameter; ``geometry`` which geometry it takes: ``"patch"``, the task's
    :class:`~lkr.PatchGeometry`, or ``"deep"``, its two-layer :class:`~lkr.DeepGeometry`)."""

    label: str
    base_width: int
    make: Callable
    readout: str = "v"
    geometry: str = "patch"


def _lkr_net(arch):
    """make(width, geometry, activation, seed) of lkr's one-hidden-layer ``arch``
    (:func:`lkr.train._arch.make_net`; FC takes the flattened inputs)."""
    def make(width, geometry, activation, seed):
        from ..train._arch import make_net

        X = np.zeros((1, geometry.input_size))
        return make_net(arch, width, X, geometry=geometry, activation=activation, seed=seed)[0]

    return make


def _deep_cnn(width, geometry, activation, seed):
    """The two-layer :class:`~lkr.nets.DeepCNNNet` with ``width`` channels per layer."""
    from ..nets import DeepCNNNet

    return DeepCNNNet(geometry, width, activation=activation, seed=seed)


#: name -> Arch; a new architecture is one line here
ARCHITECTURES = {
    "fc": Arch("FC", 32, _lkr_net("fc")),
    "cnn": Arch("CNN", 4, _lkr_net("cnn")),
    "lcn": Arch("LCN", 2, _lkr_net("lcn")),
    "deepcnn": Arch("DCNN", 2, _deep_cnn, geometry="deep"),
}

#: the default run (about 100 s of CPU time, see docs/nets-vs-linearized.md)
DEFAULTS = dict(tasks=("ladder",), P=128, P_test=None,
                architectures=("fc", "cnn", "lcn", "deepcnn"), multipliers=(1, 2, 4, 8),
                base_widths=None, activation="relu", filter_size=(3, 3), stride=(1, 1),
                boundary="valid", filter2=(2, 2), stride2=(2, 2), steps=None, tol=1e-2,
                rtol=1e-3, window=200, max_steps=4000,
                lr_scale=1.5, momentum=0.0, batch=None, seeds=3, seed=0)


def stop_rule(steps=None, *, tol=DEFAULTS["tol"], rtol=DEFAULTS["rtol"],
              window=DEFAULTS["window"], max_steps=DEFAULTS["max_steps"]) -> StopRule:
    """The rule of a run: exactly ``steps`` steps when given, else the stopping rule."""
    if steps is not None:
        return StopRule.fixed(steps)
    return StopRule(tol=float(tol), rtol=float(rtol), window=int(window),
                    max_steps=int(max_steps))


# -- one point ----------------------------------------------------------------------------------
def _point(arch, width, seed, task, activation, rule, lr_scale, batch, momentum=0.0):
    """Every number of one (task, architecture, width, seed)
    (:func:`lkr.experiments._nvl_point.point`)."""
    from ._nvl_point import point

    return point(arch, ARCHITECTURES[arch], width, seed, task, activation, rule, lr_scale,
                 batch, momentum)


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
    for a, w in (base_widths or {}).items():
        if a not in ARCHITECTURES:
            raise ValueError(f"base_widths names an unknown architecture {a!r}; choose from "
                             f"{tuple(ARCHITECTURES)}")
        out[a] = _width(w, f"base_widths[{a!r}]")   # '32' or 2.5 refused, not truncated
    return out


class PreparedTask(NamedTuple):
    """One loaded rung: its :class:`~lkr.experiments._ladder.TaskSpec`, the data
    ``(X, g, X_test, g_test, info, D)`` (flat inputs), the CNN/LCN geometry and the deep
    CNN's (None when the images are too small for two layers)."""

    spec: object
    data: tuple
    geometry: object
    deep: Optional[object]


class NetsVsLinearizedSetup(NamedTuple):
    """Loaded tasks and the checked grid: every user error surfaces in :func:`prepare`,
    before any training."""

    tasks: list
    architectures: tuple
    multipliers: list
    bases: dict
    seeds: int
    seed: int
    seconds: float


Prepared = NetsVsLinearizedSetup  # its former name


def _geometries(info, filter_size, stride, boundary, need_deep, filter2=(2, 2), stride2=(2, 2)):
    from ..deep_geometry import DeepGeometry
    from ..geometry import PatchGeometry

    shape_ = tuple(info["input_shape"])
    kw = dict(channels=info.get("channels", 1), layout=info.get("layout", "channels_last"))
    geometry = PatchGeometry(shape_, filter_size, stride, boundary=boundary, **kw)
    deep = None
    if need_deep:
        # the CNN's layer, then filter2 / stride2 (a downsampling convolution by default)
        deep = DeepGeometry(shape_, [tuple(filter_size), tuple(filter2)],
                            [tuple(stride), tuple(stride2)], boundary, **kw)
    return geometry, deep


def prepare(tasks=DEFAULTS["tasks"], *, P=DEFAULTS["P"], P_test=DEFAULTS["P_test"],
            architectures=DEFAULTS["architectures"], multipliers=DEFAULTS["multipliers"],
            base_widths=None, filter_size=DEFAULTS["filter_size"], stride=DEFAULTS["stride"],
            boundary=DEFAULTS["boundary"], filter2=DEFAULTS["filter2"],
            stride2=DEFAULTS["stride2"], downsample=1, seeds=DEFAULTS["seeds"],
            seed=DEFAULTS["seed"], classes=None) -> NetsVsLinearizedSetup:
    """Check the arguments (as :func:`run_experiment`'s) and load the tasks; ValueError /
    TypeError / ImportError (scikit-learn missing) for bad input. ``classes`` (the old
    single-task form): the class groups of every task given without ``@CLASSES``."""
    t0 = time.perf_counter()
    architectures = tuple(architectures)
    for a in architectures:
        if a not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {a!r}; choose from {tuple(ARCHITECTURES)}")
    if not architectures:
        raise ValueError("give at least one architecture")
    if len(set(architectures)) != len(architectures):
        raise ValueError(f"an architecture is repeated in {list(architectures)} (each runs once)")
    multipliers = sorted({_width(k, "multipliers") for k in multipliers})
    if not multipliers:
        raise ValueError("multipliers must not be empty")
    bases = _base_widths(base_widths, architectures)
    if not _is_integer(seeds) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    if not _is_integer(P) or P < 1:
        raise ValueError(f"P must be a positive integer, got {P!r}")
    if isinstance(tasks, str):
        tasks = [tasks]
    if classes is not None:
        if all("@" in t or t.strip() == "ladder" for t in tasks):
            raise ValueError(f"classes={classes!r} would be ignored: every task names its own "
                             "classes (NAME@CLASSES, or the ladder); give them there")
        tasks = [t if "@" in t or t.strip() == "ladder" else f"{t}@{classes}" for t in tasks]
    specs = _ladder.parse_tasks(tasks)
    need_deep = any(ARCHITECTURES[a].geometry == "deep" for a in architectures)
    loaded = []
    for spec in specs:
        X, g, Xt, gt, info, D = _ladder.load(spec, int(P), P_test, seed, downsample)
        try:
            geometry, deep = _geometries(info, filter_size, stride, boundary, need_deep,
                                         filter2, stride2)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{spec.label} ({'x'.join(map(str, info['input_shape']))} images): "
                            f"{exc}") from None
        # flat inputs (P, N0) serve every architecture (the patch nets cut them themselves)
        X, Xt = geometry.flatten(X, "X"), geometry.flatten(Xt, "X_test")
        loaded.append(PreparedTask(spec, (X, g, Xt, gt, info, D), geometry, deep))
    return NetsVsLinearizedSetup(loaded, architectures, multipliers, bases, int(seeds),
                                 int(seed), time.perf_counter() - t0)


def run_experiment(tasks=DEFAULTS["tasks"], *, P=DEFAULTS["P"], P_test=DEFAULTS["P_test"],
                   architectures=DEFAULTS["architectures"], multipliers=DEFAULTS["multipliers"],
                   base_widths=None, activation=DEFAULTS["activation"],
                   filter_size=DEFAULTS["filter_size"], stride=DEFAULTS["stride"],
                   boundary=DEFAULTS["boundary"], filter2=DEFAULTS["filter2"],
                   stride2=DEFAULTS["stride2"], downsample=1, steps=DEFAULTS["steps"],
                   tol=DEFAULTS["tol"], rtol=DEFAULTS["rtol"], window=DEFAULTS["window"],
                   max_steps=DEFAULTS["max_steps"], lr_scale=DEFAULTS["lr_scale"],
                   momentum=DEFAULTS["momentum"], batch=None,
                   seeds=DEFAULTS["seeds"], seed=DEFAULTS["seed"], classes=None, progress=None,
                   prepared=None) -> dict:
    """Run the experiment (see the module docstring) and return every number and setting.

    Parameters
    ----------
    tasks : ``"ladder"`` (the default digits ladder), or one or more ``NAME[@CLASSES]``
        (:mod:`lkr.experiments._ladder`: ``digits@3:8``, ``mnist:DIR@all``, ...), in order
        from easy to hard
    P, P_test : training and test set sizes of every task (``P_test=None``: the images
        left, at most 500)
    architectures : names in :data:`ARCHITECTURES`
    multipliers : widths are multiplier x base width of each architecture
    base_widths : dict arch -> base width, overriding :data:`ARCHITECTURES`
    activation, filter_size, stride, boundary : the nets (CNN/LCN patches: a PatchGeometry;
        the deep CNN's first layer)
    filter2, stride2 : the deep CNN's second layer (default 2 x 2, stride 2)
    momentum : heavy-ball momentum beta of both optimisers (0: plain GD)
    steps : exactly this many GD steps; None (default): the stopping rule ``tol``,
        ``rtol``, ``window``, ``max_steps`` (:class:`~lkr.experiments.multioutput.StopRule`)
    lr_scale, batch : step lr_scale / lambda_max(Theta); SGD with a batch size
    seeds : number of initialisations (seed, seed + 1, ...); ``seed`` also fixes the data
    classes : the class groups of tasks given without ``@CLASSES`` (the old ``--classes``)
    progress : callable(total) -> a tqdm-like bar (``update``, ``set_description_str``,
        ``close``), e.g. :func:`lkr._progress.progress_bar`
    prepared : the output of :func:`prepare`; then the task and grid arguments are its

    Returns
    -------
    dict
        ``settings``, ``tasks`` (per task: its settings and difficulty), ``versions``,
        ``rows`` (aggregated per task, arch and width), ``points`` (every seed),
        ``timing``, ``interrupted``.
    """
    from .fc_vs_cnn import _versions

    t_start = time.perf_counter()
    rule = stop_rule(steps, tol=tol, rtol=rtol, window=window, max_steps=max_steps)
    if prepared is None:
        prepared = prepare(tasks, P=P, P_test=P_test, architectures=architectures,
                           multipliers=multipliers, base_widths=base_widths,
                           filter_size=filter_size, stride=stride, boundary=boundary,
                           filter2=filter2, stride2=stride2, downsample=downsample,
                           seeds=seeds, seed=seed, classes=classes)
    pt = prepared
    grid = [(t, a, mult) for t in pt.tasks for a in pt.architectures for mult in pt.multipliers]
    bar = progress(len(grid) * pt.seeds) if progress else None
    points, interrupted, error = [], False, None
    try:
        for task, a, mult in grid:
            w = pt.bases[a] * mult
            for s in range(pt.seed, pt.seed + pt.seeds):
                if bar is not None:
                    bar.set_description_str(f"{task.spec.label}: {ARCHITECTURES[a].label} "
                                            f"N={w} seed {s}")
                with _one_thread():
                    p = _point(a, w, s, task, activation, rule, lr_scale, batch, momentum)
                points.append(dict(p, multiplier=mult))
                if bar is not None:
                    bar.update(1)
    except KeyboardInterrupt:
        interrupted = True  # what is finished is kept (a partial row when seeds were cut)
    except FloatingPointError as exc:
        # GD diverged (too large a step for this net): stop, keep what is finished, say so
        error = f"{task.spec.label}, {ARCHITECTURES[a].label} N={w} seed {s}: " \
                f"{str(exc).splitlines()[0]}"
    finally:
        if bar is not None:
            bar.close()
    task_info = []
    for t in pt.tasks:
        X, g, Xt, gt, info, D = t.data
        task_info.append(dict(label=t.spec.label, spec=t.spec.spec, task=t.spec.name,
                              classes=[list(c) for c in t.spec.classes], outputs=D,
                              P=int(X.shape[0]), P_test=int(Xt.shape[0]),
                              geometry=t.geometry.to_dict(), num_patches=t.geometry.num_patches,
                              patch_size=t.geometry.patch_size,
                              deep_geometry=None if t.deep is None else t.deep.to_dict(),
                              deep_final_patches=None if t.deep is None else t.deep.num_patches,
                              info=info))
    settings = dict(tasks=[t.spec.label for t in pt.tasks], P=int(pt.tasks[0].data[0].shape[0]),
                    architectures=list(pt.architectures), multipliers=pt.multipliers,
                    base_widths=pt.bases, activation=activation, stop=rule.to_dict(),
                    lr_scale=float(lr_scale), momentum=float(momentum),
                    optimizer=("gd" if batch is None else f"sgd (batch {batch})")
                    + (f", heavy-ball momentum {momentum:g}" if momentum else ""),
                    batch=batch, seeds=list(range(pt.seed, pt.seed + pt.seeds)),
                    seed=int(pt.seed), loss="(1/2) sum_{mu,d} (Y - f)^2, one-hot Y",
                    lr="lr_scale / lambda_max(empirical NTK at init)",
                    mse="mean over samples and outputs of (Y - f)^2",
                    gap="net - linearisation per seed (accuracy); lin - net (test MSE)",
                    difficulty="test error (1 - accuracy) of the kernel solution at the "
                               "widest width, mean over architectures, then over seeds",
                    rank="of J = grad_w f(w0, X_train), rows = P x outputs, via the Gram J J^T")
    results = dict(experiment="nets-vs-linearized", settings=settings, tasks=task_info,
                   versions=_versions(), points=points, interrupted=interrupted, error=error,
                   timing={"data_s": pt.seconds, "total_s": time.perf_counter() - t_start},
                   created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    results.update(aggregate(results))
    return results


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


def _momentum(text):
    v = nonneg_float(text)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"momentum must be in [0, 1), got {text!r}")
    return v


def _tasks_arg(text):
    try:
        return _ladder.parse_tasks(text) and text
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        "Train FC, CNN, LCN and deep CNN (two conv layers) networks at several widths by "
        "gradient descent (one output per class group) on a ladder of tasks from easy to "
        "hard, and their "
        "linearisations around the same initialisation with the same optimiser and stopping "
        "rule; compare test accuracy and MSE (mean +- se over seeds), and report the effective "
        "rank of the Jacobian at initialisation and each task's difficulty. Prints a table; "
        "with --out, writes results.json and nets_vs_linearized.png.")
    parser.epilog = ("Example: lkr nets-vs-linearized --out runs/nvl (about 100 s of CPU time, "
                     "one core); --quick: one seed, two widths.")
    g = parser.add_argument_group("tasks")
    g.add_argument("--tasks", nargs="+", type=_tasks_arg, default=None, metavar="TASK",
                   help="tasks from easy to hard, each NAME[@CLASSES]: NAME digits "
                        "(scikit-learn's 8x8 digits, pip install scikit-learn), mnist:DIR, "
                        "fashion-mnist:DIR (IDX files) or cifar10:DIR (python or binary "
                        "batches); CLASSES groups, one output each ('0:1', '3,8', "
                        "'0,2,4:1,3,5', 'all'; default all). 'ladder' (the default) is "
                        + " ".join(_ladder.LADDER))
    g.add_argument("--task", default=None,
                   help="one task (the older form of --tasks; with --classes)")
    g.add_argument("--classes", default=None,
                   help="class groups of --task (or of tasks given without @CLASSES)")
    g.add_argument("-P", "--P", dest="P", type=positive_int, default=d["P"],
                   help="training set size of every task (default %(default)s)")
    g.add_argument("--P-test", dest="P_test", type=positive_int, default=d["P_test"],
                   help=f"test set size (default: the images left, at most "
                        f"{_ladder.P_TEST_MAX})")
    g.add_argument("--downsample", type=positive_int, default=1,
                   help="block-average factor of the images (default 1)")
    g = parser.add_argument_group("networks")
    g.add_argument("--arch", dest="architectures", type=_archs, default=list(d["architectures"]),
                   help=f"comma-separated, among {', '.join(ARCHITECTURES)} (default all)")
    g.add_argument("--multipliers", dest="multipliers", type=_int_list, default=None,
                   metavar="K,K,...",
                   help="the widths as multipliers K of each architecture's base width: "
                        "N = K x base (default " + ",".join(map(str, d["multipliers"]))
                        + "; --quick: 1,8)")
    # the former spelling (--widths is the widths themselves in lkr fc-vs-cnn)
    g.add_argument("--widths", dest="multipliers", type=_int_list, default=argparse.SUPPRESS,
                   action=_FormerMultipliers, help=argparse.SUPPRESS)
    g.add_argument("--base-widths", type=_base_width_list, default=None, metavar="fc=N,...",
                   help="base widths (default " + ",".join(f"{k}={v.base_width}" for k, v in
                                                           ARCHITECTURES.items()) + ")")
    g.add_argument("--activation", choices=("relu", "erf", "linear"), default=d["activation"],
                   help="activation (default %(default)s)")
    g.add_argument("--filter", dest="filter_size", type=shape, default=d["filter_size"],
                   help="CNN/LCN filter, also the deep CNN's first layer, m or mhxmw (default 3x3)")
    g.add_argument("--stride", type=shape, default=d["stride"], help="stride (default 1x1)")
    g.add_argument("--boundary", choices=("valid", "periodic"), default=d["boundary"],
                   help="patch boundary (default %(default)s)")
    g.add_argument("--filter2", type=shape, default=d["filter2"],
                   help="the deep CNN's second layer: filter (default 2x2)")
    g.add_argument("--stride2", type=shape, default=d["stride2"],
                   help="the deep CNN's second layer: stride (default 2x2)")
    g = parser.add_argument_group("training (the net and its linearisation alike)")
    g.add_argument("--steps", type=nonneg_int, default=None,
                   help="exactly this many GD/SGD steps (default: the stopping rule below)")
    g.add_argument("--tol", type=nonneg_float, default=d["tol"],
                   help="stop when the train MSE is below tol x its initial value "
                        "(default %(default)s)")
    g.add_argument("--rtol", type=nonneg_float, default=d["rtol"],
                   help="stop when the train MSE changed by less than rtol (relative) over "
                        "--window steps (default %(default)s)")
    g.add_argument("--window", type=positive_int, default=d["window"],
                   help="steps of the rtol test, a multiple of 10 (default %(default)s)")
    g.add_argument("--max-steps", type=positive_int, default=d["max_steps"],
                   help="step cap; rows that reach it are flagged (default %(default)s)")
    g.add_argument("--lr-scale", type=positive_float, default=d["lr_scale"],
                   help="step size in units of 1/lambda_max of the NTK at init (< 2 for the "
                        "linearisation to converge) (default %(default)s)")
    g.add_argument("--momentum", type=_momentum, default=d["momentum"],
                   help="heavy-ball momentum beta in [0, 1) of both optimisers (default "
                        "%(default)s: plain GD)")
    g.add_argument("--batch", type=positive_int, default=None,
                   help="SGD minibatch size (default: full-batch GD)")
    g.add_argument("--seeds", type=positive_int, default=None,
                   help=f"initialisations per point, for error bars (default {d['seeds']}; "
                        "--quick: 1)")
    g.add_argument("--seed", type=nonneg_int, default=d["seed"],
                   help="first seed; also fixes the data split (default %(default)s)")
    g.add_argument("--quick", action="store_true",
                   help="one seed and widths 1,8 (no error bars; a first look in a minute)")
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
        # --task/--classes alone: the older one-task form (its default task is the digits)
        tasks = args.tasks or ([args.task or "digits"] if args.task or args.classes
                               else list(DEFAULTS["tasks"]))
        if args.task and args.tasks:
            raise ValueError("give --tasks or --task, not both")
        if args.window % 10:
            raise ValueError(f"--window must be a multiple of 10, got {args.window}")
        seeds = args.seeds or (1 if args.quick else DEFAULTS["seeds"])
        mults = args.multipliers or ([1, 8] if args.quick else list(DEFAULTS["multipliers"]))
        prepared = prepare(tasks, classes=args.classes, P=args.P, P_test=args.P_test,
                           architectures=args.architectures, multipliers=mults,
                           base_widths=args.base_widths, filter_size=args.filter_size,
                           stride=args.stride, boundary=args.boundary, filter2=args.filter2,
                           stride2=args.stride2, downsample=args.downsample, seeds=seeds,
                           seed=args.seed)
    except (ValueError, TypeError, ImportError) as exc:
        parser.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    kw = dict(prepared=prepared, activation=args.activation, steps=args.steps, tol=args.tol,
              rtol=args.rtol, window=args.window, max_steps=args.max_steps,
              lr_scale=args.lr_scale, momentum=args.momentum, batch=args.batch,
              progress=lambda n: progress_bar(n, "", not args.quiet, unit="point", ascii="-#",
                                              bar_format="[{bar:24}] {n_fmt}/{total_fmt} "
                                                         "{elapsed}  {desc}"))
    results = run_experiment(**kw)
    print(format_table(results), flush=True)
    status = _interrupt.exit_status() if results["interrupted"] else 0
    if results.get("error"):
        # GD diverged: the finished points are printed and written, then one line, exit 2
        print(f"lkr nets-vs-linearized: error: {results['error']}", file=sys.stderr,
              flush=True)
        status = 2
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
