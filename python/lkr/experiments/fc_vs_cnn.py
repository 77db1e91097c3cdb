"""FC versus CNN versus LCN: test error against width, against the infinite-width limits.

The experiment behind ``lkr fc-vs-cnn``. On one task (seeded), for every width N it fits the
effective actions of the three one-hidden-layer architectures (docs/theory.md section 2):

FC
    one scalar order parameter Qbar renormalises the whole NNGP kernel (*global*
    renormalisation): K_R = Qbar K / lambda1;
CNN
    a matrix Qbar_ij over pairs of patches renormalises the local kernel (*local*
    renormalisation): K_R = (1 / (lambda1 Np)) sum_ij Qbar_ij K_ij;
LCN
    the same with Qbar diagonal (a filter per patch: no patch-patch coupling survives),

and evaluates the Bayesian predictor's test error = bias^2 + variance. The infinite-width
references are the Gaussian processes with Q = I: the FC kernel for FC, and K_R(I) for the
CNN. The LCN's infinite-width limit is the same GP as the CNN's (with Q = I the cross-patch
terms drop out of both), so one line serves both. The pooled GP (Q = 11^T / Np, a CNN with
global average pooling at infinite width) is recorded too, for context.

:func:`run` returns a JSON-friendly dict, phase by phase (the infinite-width GPs, the
finite-width theories, optionally Langevin sampling of the networks, the summary);
:func:`~lkr.experiments.report.format_table`, :func:`~lkr.experiments.report.save_results` and
:func:`~lkr.experiments.report.plot_results` turn it into the table, ``results.json`` and
``fc_vs_cnn.png``. :func:`add_arguments` and :func:`command` are the ``lkr fc-vs-cnn``
subcommand.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from .. import _interrupt, _memory
from .._extras import install_hint
from .._io import check_writable_dir, describe
from .._json import jsonable
from .._progress import PhaseBar, progress_bar
from .._validate import integer as _integer
from ..train._arch import ARCHITECTURES
from ..train._arch import NAMES as _NAMES
from . import _deep, _validity
from ._phases import (
    IMAGE_BOUNDARY,
    _finite_width_executor,
    _finite_width_serial,
    _infinite_width,
    _outputs,
    _widths,
    default_boundary,
    default_sizes,
    min_width,
)
from ._rows import _q_summary, _row, _summary, _versions  # noqa: F401 (_q_summary: tests)
from ._sampling import LangevinFailed, checkpointer, estimate_seconds, sample_widths
from .argtypes import (
    add_task_source_options,
    nonneg_int,
    positive_float,
    positive_int,
    shape,
    task_spec,
    widths,
)
from .report import format_table, plot_results, save_results, stderr_note, write_outputs

__all__ = ["run", "prepare", "FcVsCnnSetup", "default_widths", "format_table", "save_results",
           "plot_results", "Progress", "ARCHITECTURES", "DEFAULTS", "add_arguments", "command"]

#: alpha = P / N of the default widths (from wide to narrow)
DEFAULT_ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

#: The default run: sized to finish within 3 minutes on 2 cores (see the README).
DEFAULTS = dict(task="local-teacher", P=400, P_test=1000, widths=None, temperature=0.1,
                activation="erf", lambda0=1.0, lambda1=1.0, input_shape=(64,),
                filter_size=(4,), stride=None, boundary="periodic", seed=0)

HELP = "the main experiment: FC vs CNN vs LCN test error against width"


def default_widths(P: int, alphas: Sequence[float] = DEFAULT_ALPHAS) -> list:
    """Widths N = round(P / alpha) for the default alphas, ascending, duplicates dropped."""
    return sorted({max(1, int(round(P / a))) for a in alphas})


def Progress(total: int, stream=None, enabled: bool = True):
    """The experiment's progress bar (lkr's one tqdm bar): ``[####----] k/n time  what``.

    ``enabled=None`` shows it only on a terminal; ``lkr fc-vs-cnn`` shows it unless
    ``--quiet`` (one redrawn line on a terminal, updates in a log).
    """
    return progress_bar(total, "", enabled, unit="fit", stream=stream, ascii="-#",
                        bar_format="[{bar:24}] {n_fmt}/{total_fmt} {elapsed}  {desc}")


# -- helpers ----------------------------------------------------------------------------------
def _per_axis(value, ndim):
    """A filter or stride per axis: one number serves every axis (a square filter in 2D)."""
    if value is None:
        return None
    v = (value,) if np.ndim(value) == 0 else tuple(value)
    return v * ndim if len(v) == 1 else v


class FcVsCnnSetup(NamedTuple):
    """A loaded task with its geometry and widths: everything checked before any fit."""

    task: object
    geometry: object
    widths: list
    task_options: dict
    seconds: float
    spec: str
    seed: int
    deep_geometry: object = None


Prepared = FcVsCnnSetup  # its former name


def prepare(task: str = DEFAULTS["task"], *, P: Optional[int] = None,
            P_test: Optional[int] = None, widths=None, input_shape=None,
            filter_size=DEFAULTS["filter_size"], stride=None, boundary=None,
            seed: int = DEFAULTS["seed"], task_options: Optional[dict] = None,
            depth: Optional[int] = None, padding="valid") -> FcVsCnnSetup:
    """Load the task and build the patch geometry (arguments as in :func:`run`; ``P``,
    ``P_test`` and ``boundary`` None take :func:`default_sizes` and
    :func:`default_boundary`).

    With ``depth`` L, ``filter_size`` and ``stride`` are lists of L per-layer entries and
    ``padding`` one or L paddings: the deep CNN's :class:`~lkr.DeepGeometry`; the one-layer
    geometry (and the teacher's) takes the first layer's filter and stride.

    Every user error (unknown task, missing or corrupt files, a geometry that does not fit
    the input, bad widths) surfaces here as a ``ValueError``/``TypeError``, before any
    solver runs.
    """
    from .. import data
    from ..geometry import PatchGeometry

    t0 = time.perf_counter()
    if not isinstance(task, str):
        raise TypeError(f"task must be a string, got {task!r}")
    P, P_test = default_sizes(task, P, P_test, (task_options or {}).get("classes"))
    if boundary is None:
        boundary = default_boundary(task)
    if widths is None:
        widths = default_widths(P)
    widths = list(widths)
    for w in widths:
        _integer(w, "widths", 1)
    if not widths:
        raise ValueError("widths must not be empty")
    widths = sorted({int(w) for w in widths})
    _memory.check_theory_sizes(P, P_test)   # before the task is made (it can take long)
    task_options = dict(task_options or {})
    deep_filters, deep_strides = filter_size, stride
    if depth is not None:
        depth = _integer(depth, "depth", 1)
        filter_size, stride = _deep.first_layer(filter_size), _deep.first_layer(stride)
    is_synthetic = task.partition(":")[0] not in ("mnist", "cifar10", "digits")
    if input_shape is None and is_synthetic:
        input_shape = DEFAULTS["input_shape"]
    if input_shape is not None:
        ndim = 1 if np.ndim(input_shape) == 0 else len(tuple(input_shape))
        filter_size, stride = _per_axis(filter_size, ndim), _per_axis(stride, ndim)
    loaded = data.load_task(task, P, P_test, seed, input_shape=input_shape,
                            filter_size=filter_size, stride=stride, boundary=boundary,
                            **task_options)
    info = loaded.info
    shape = tuple(info["input_shape"])
    geometry = PatchGeometry(shape, _per_axis(filter_size, len(shape)),
                             _per_axis(stride, len(shape)), channels=info["channels"],
                             boundary=boundary, layout=info["layout"])
    dg = None
    D = _outputs(loaded.y)
    if depth is not None:
        dg = _deep.deep_geometry(info, depth, deep_filters, deep_strides, padding)
        if max(widths) < min_width("deepcnn", dg, D):
            need = (f"its d = {dg.num_patches} final patches" if D == 1 else
                    f"d D = {dg.num_patches * D}: its d = {dg.num_patches} final patches x {D} "
                    "outputs")
            raise ValueError(f"the deep CNN needs widths >= {need}; got widths {widths}")
    for arch in ("fc", "cnn", "lcn"):
        need = min_width(arch, geometry, D)
        if max(widths) < need:
            raise ValueError(f"with {D} outputs the {_NAMES[arch]} needs widths >= {need} "
                             f"({'Np D' if arch == 'cnn' else 'D'}); got widths {widths}")
    return FcVsCnnSetup(loaded, geometry, widths, task_options, time.perf_counter() - t0, task,
                    int(seed), dg)


# -- the experiment, phase by phase ---------------------------------------------------------------
def run(task: str = DEFAULTS["task"], *, P: Optional[int] = None, P_test: Optional[int] = None,
        widths: Optional[Sequence[int]] = None, temperature: float = DEFAULTS["temperature"],
        activation: str = DEFAULTS["activation"], lambda0: float = DEFAULTS["lambda0"],
        lambda1: float = DEFAULTS["lambda1"], input_shape=None, filter_size=DEFAULTS["filter_size"],
        stride=None, boundary: Optional[str] = None, seed: int = DEFAULTS["seed"],
        task_options: Optional[dict] = None, architectures: Sequence[str] = ARCHITECTURES,
        executor=None, langevin: Optional[dict] = None,
        progress: Optional[Callable] = None,
        prepared: Optional[FcVsCnnSetup] = None, depth: Optional[int] = None,
        padding="valid", checkpoint: Optional[Callable] = None) -> dict:
    """Run the FC-versus-CNN experiment and return every number and setting.

    Parameters
    ----------
    task : str
        A :func:`lkr.data.load_task` spec: ``"local-teacher"`` (default),
        ``"gaussian-linear"``, ``"mnist:DIR"``, ``"cifar10:DIR"``, ``"digits"``.
    P, P_test : int, optional
        Training and test set sizes; default 400 and 1000, for the digits sizes that fit the
        classes (:func:`default_sizes`).
    widths : sequence of int, optional
        Hidden widths N (FC units, CNN/LCN channels); default :func:`default_widths` (P).
    temperature, activation, lambda0, lambda1
        The Bayesian posterior (docs/theory.md section 2).
    input_shape : tuple of int, optional
        Synthetic tasks: ``(N0,)`` or ``(H, W)``, default ``(64,)``; image tasks: taken
        from the images.
    filter_size, stride, boundary
        The patch geometry of CNN and LCN (and of the local teacher); ``boundary`` default
        "periodic" for the synthetic tasks, "valid" for images (:func:`default_boundary`).
    seed : int
        Seeds the task (and Langevin sampling).
    task_options : dict, optional
        Extra :func:`lkr.data.load_task` arguments (``classes``, ``grayscale``,
        ``downsample``, ``teacher_channels``, ``noise``). Digits with more than two class
        groups (``classes="all"``) have one-hot targets: every theory fits one output per
        class, each architecture only at the widths its action admits (:func:`min_width`),
        and the rows carry ``accuracy`` and ``confusion``.
    architectures : sequence of {"fc", "cnn", "lcn"}
    executor : concurrent.futures.Executor, optional
        Fit every (architecture, width) independently through :func:`lkr.theory.sweep` on
        this executor (e.g. from :func:`lkr.distributed.executor`) instead of the serial,
        warm-started path.
    langevin : dict, optional
        When given, also sample the networks at every width
        (:func:`lkr.train.sampled_test_error`); keys ``sampler`` ("langevin", the default
        here, or "collapsed"), ``chains``, ``burn_in`` and Langevin's ``steps``, ``lr`` or
        the collapsed sampler's ``sweeps``.
    progress : callable, optional
        ``progress(total)`` -> a tqdm bar (e.g. :func:`Progress`); called once with the
        number of steps.
    prepared : FcVsCnnSetup, optional
        The output of :func:`prepare`; then the task arguments above (task, P, P_test,
        widths, input_shape, filter_size, stride, boundary, seed, task_options) are taken
        from it.
    depth, padding : optional
        Add the deep CNN of ``depth`` layers (``"deepcnn"``; :mod:`lkr.experiments._deep`).
    checkpoint : callable, optional
        With ``langevin``: ``checkpoint(results, phase)`` gets the results so far (marked
        ``"in_progress": True``) when the theory is finished and the sampling time estimated
        (``timing["sampling_estimate"]``, :mod:`lkr.experiments._sampling`), before any
        sampling (phase ``"theory"``), and after each sampled width (``"sampled"``).

    Returns
    -------
    dict
        ``settings``, ``task``, ``versions``, ``infinite_width``, ``finite_width``
        (per architecture, a row per width, with its ``filter_dim``), ``langevin`` (or None),
        ``summary``, ``validity`` (the filter dimension M of each architecture, FC: N0, and
        those below 16, where the actions are poor: docs/validity.md; the fits' own
        warnings are not repeated), ``timing``, ``interrupted`` (False).

    Raises
    ------
    lkr._interrupt.Interrupted
        On Ctrl-C (a KeyboardInterrupt); its ``results`` hold what was finished, with
        ``interrupted=True`` and ``interrupted_during`` (a cut Langevin run is dropped).
    LangevinFailed
        When Langevin sampling diverges (a FloatingPointError); its ``results`` hold the
        theory and the sampled rows finished before, with ``langevin_error``.
    """
    t_start = time.perf_counter()
    architectures = tuple(architectures)
    for a in architectures:
        if a not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {a!r}; choose from {ARCHITECTURES}")
    if prepared is None:
        prepared = prepare(task, P=P, P_test=P_test, widths=widths, input_shape=input_shape,
                           filter_size=filter_size, stride=stride, boundary=boundary, seed=seed,
                           task_options=task_options, depth=depth, padding=padding)
    X, y, X_test, y_test, info = prepared.task
    geometry, widths = prepared.geometry, prepared.widths
    dg = prepared.deep_geometry
    if dg is not None and "deepcnn" not in architectures:
        architectures = tuple(architectures) + ("deepcnn",)
    geoms = {a: (dg if a == "deepcnn" else geometry) for a in architectures}
    D = _outputs(prepared.task.y)
    if langevin and D > 1:
        raise ValueError(f"Langevin sampling runs one-output networks; the task has {D} "
                         "outputs (one-hot classes): drop the sampling or choose two classes")
    task, seed = prepared.spec, prepared.seed  # what the data were made with
    P, P_test = len(y), len(y_test)
    common = dict(temperature=temperature, activation=activation, lambda0=lambda0,
                  lambda1=lambda1)
    data = (X, y, X_test, y_test)
    n_rows = {a: len(_widths(a, widths, geoms, y)) for a in architectures}
    n_points = sum(n_rows.values())
    bar = PhaseBar(progress, 3 + n_points + (n_points if langevin else 0))

    settings = dict(task=task, P=int(P), P_test=int(P_test), widths=widths,
                    temperature=float(temperature), activation=activation,
                    lambda0=float(lambda0), lambda1=float(lambda1), seed=int(seed),
                    geometry=geometry.to_dict(), num_patches=geometry.num_patches,
                    patch_size=geometry.patch_size, input_size=geometry.input_size,
                    architectures=list(architectures), task_options=prepared.task_options,
                    deep_geometry=None if dg is None else dg.to_dict(),
                    deep_num_patches=None if dg is None else dg.num_patches,
                    mode=("serial, warm-started along the widths (Theory.fit_path)"
                          if executor is None else "independent fits on an executor"),
                    langevin=langevin or None)
    # Every phase fills these as it goes, so that an interrupted or failed run still has
    # every finished row to report and save.
    infinite, finite = {}, {a: [] for a in architectures}
    sampled = {a: [] for a in architectures} if langevin else None
    timing = {"data_s": prepared.seconds}

    def results(**extra):
        for rows in finite.values():
            rows.sort(key=lambda r: r["width"])
        timing["total_s"] = time.perf_counter() - t_start
        return jsonable(dict(experiment="fc-vs-cnn", settings=settings, task=info,
                             versions=_versions(), infinite_width=infinite,
                             finite_width=finite, langevin=sampled,
                             summary=_summary(architectures, infinite, finite, n_rows),
                             validity=_validity.block(finite, activation),
                             timing=timing, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             **extra))

    try:
        t0 = time.perf_counter()
        _infinite_width(infinite, data, geometry, common, bar, dg)
        timing["infinite_width_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with _validity.quiet_regime():  # reported once, in results["validity"]
            if executor is None:
                _finite_width_serial(finite, architectures, widths, data, geoms, common, bar)
            else:
                _finite_width_executor(finite, architectures, widths, data, geoms, common,
                                       bar, executor)
        timing["finite_width_s"] = time.perf_counter() - t0
        if langevin:
            t0 = time.perf_counter()
            runs = [(a, w) for a in architectures for w in _widths(a, widths, geoms, data[1])]
            if checkpoint is not None:
                timing["sampling_estimate"] = estimate_seconds(runs, data, geoms, common,
                                                               langevin, seed, bar)
                checkpoint(results(interrupted=False, in_progress=True), "theory")
            try:
                sample_widths(sampled, runs, data, geoms, common, langevin, seed, bar,
                              on_row=None if checkpoint is None else lambda: checkpoint(
                                  results(interrupted=False, in_progress=True), "sampled"))
            except FloatingPointError as exc:
                msg = str(exc).splitlines()[0]
                raise LangevinFailed(results(interrupted=False, langevin_error=msg),
                                     msg) from None
            timing["langevin_s"] = time.perf_counter() - t0
    except KeyboardInterrupt:
        bar.close()
        during = (bar.label or "start-up").replace(" ...", "")
        raise _interrupt.Interrupted(results(interrupted=True, interrupted_during=during),
                                     during) from None
    finally:
        bar.close()
    return results(interrupted=False)




# -- `lkr fc-vs-cnn` -------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``lkr fc-vs-cnn``."""
    p.description = ("Fit the effective actions of one-hidden-layer FC, CNN and LCN networks "
                     "(and, with --depth, a deep CNN) at several widths on one task, and "
                     "compare their test error (bias^2 + variance; with class targets also the "
                     "accuracy) with the infinite-width Gaussian processes. Prints a table; "
                     "with --out, writes results.json and fc_vs_cnn.png. What is exact: the "
                     "GPs (every activation); the odd (erf, linear) FC action at large input "
                     "dimension N0. Approximate: the relu FC action (two order parameters, a "
                     "saddle point of the Gaussian-equivalent model, also large N0). "
                     "Experimental: the CNN, LCN and deep-CNN actions (odd and relu) rest on "
                     "a Gaussian equivalence of each channel's patch features that holds at "
                     "large filter dimension M = C_in k_h k_w (M >= 64; at M = 4-16 they miss "
                     "a large part of the finite-width effect); the deep CNN renormalises its "
                     "last layer only. See docs/theory-beyond-odd.md.")
    p.epilog = ("Examples: lkr fc-vs-cnn --out results (about a minute on two cores); "
                "lkr fc-vs-cnn --task digits (0 vs 1, 180 + 180 images); lkr fc-vs-cnn --task "
                "digits --classes all --depth 2 --filter 3,2 --stride 1,2 (ten classes, "
                "one-hot, accuracy columns; minutes: a D-output CNN fit costs (P D)^3).")
    g = p.add_argument_group("task")
    g.add_argument("--task", type=task_spec, default=DEFAULTS["task"],
                   help="local-teacher, gaussian-linear, mnist:DIR, cifar10:DIR (local files; "
                        "nothing is downloaded) or digits (scikit-learn's) (default: %(default)s)")
    g.add_argument("-P", "--P", dest="P", type=positive_int, default=None,
                   help=f"training set size (default: {DEFAULTS['P']}; digits: what the classes "
                        "hold, min(400, n/2): 180 for 0,1)")
    g.add_argument("--P-test", dest="P_test", type=positive_int, default=None,
                   help=f"test set size (default: {DEFAULTS['P_test']}; digits: min(1000, the "
                        "images left): 180 for 0,1)")
    g.add_argument("--seed", type=nonneg_int, default=DEFAULTS["seed"], help="seeds the task "
                   "(and Langevin sampling) (default: %(default)s)")
    g.add_argument("--classes", default=None,
                   help="image tasks: two classes 'a,b' or groups 'a,c:b,d' (first -> +1); "
                        "digits also 'all' (ten classes) or more groups 'a:b:c', one-hot "
                        "targets with one output per class; default 0,1 for MNIST and digits, "
                        "3,5 for CIFAR-10")
    add_task_source_options(g)
    g = p.add_argument_group("networks and posterior")
    g.add_argument("--widths", type=widths, default=None, metavar="N,N,...",
                   help="the hidden widths N, comma-separated (N1 units for FC, channels Nc "
                        "for CNN/LCN); default: N = P/alpha for alpha in 0.25, 0.5, 1, 2, 4, 8")
    g.add_argument("-T", "--temperature", type=positive_float, default=DEFAULTS["temperature"],
                   help="posterior temperature T (default: %(default)s)")
    g.add_argument("--lambda0", type=positive_float, default=DEFAULTS["lambda0"],
                   help="inverse prior variance of the first-layer weights (default: %(default)s)")
    g.add_argument("--lambda1", type=positive_float, default=DEFAULTS["lambda1"],
                   help="inverse prior variance of the readout (default: %(default)s)")
    g.add_argument("--activation", choices=("erf", "linear", "relu"),
                   default=DEFAULTS["activation"], help="activation; relu: the non-central "
                   "actions (an order parameter and its conjugate; FC approximate, "
                   "CNN/LCN/deep CNN experimental) (default: %(default)s)")
    g = p.add_argument_group("patch geometry (CNN, LCN and the local teacher)")
    g.add_argument("--input-shape", type=shape, default=None, metavar="SHAPE",
                   help="synthetic tasks: N0 or HxW (default 64); image tasks: from the files")
    g.add_argument("--filter", dest="filter_size", type=_deep.shapes,
                   default=DEFAULTS["filter_size"], metavar="M",
                   help="filter size m or mhxmw (default: 4; one number is used on every "
                        "axis); with --depth one per layer, e.g. 3x3,2x2")
    g.add_argument("--stride", type=_deep.shapes, default=None, metavar="S",
                   help="stride (default: the filter size, non-overlapping patches); with "
                        "--depth one per layer, e.g. 1,2")
    g.add_argument("--boundary", choices=("periodic", "valid"), default=None,
                   help="patch boundary mode (default: periodic for the synthetic tasks; "
                        f"{IMAGE_BOUNDARY} for image tasks, so that no window wraps around an "
                        "image)")
    _deep.add_arguments(g)
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="write results.json (and fc_vs_cnn.png with matplotlib) into DIR")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar or notes on stderr (the table still goes to stdout, and a "
                        "missing plot is still reported)")
    g = p.add_argument_group('scaling out (pip install "dask[distributed]")')
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address: fit every (architecture, width) on it")
    g.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="start a local Dask cluster of N workers for the fits")
    g = p.add_argument_group("Langevin sampling of the networks themselves (slow)")
    g.add_argument("--langevin", action="store_true",
                   help="also sample each network by Langevin dynamics at every width and show "
                        "its test error (mean +- standard error over chains)")
    g.add_argument("--langevin-steps", type=positive_int, default=None,
                   help="Langevin steps per chain, burn-in included (default: 4000)")
    g.add_argument("--burn-in", type=nonneg_int, default=None,
                   help="steps discarded per chain (default: lkr.train's choice)")
    g.add_argument("--chains", type=positive_int, default=None,
                   help="independent chains (default: 4)")
    g.add_argument("--lr", type=positive_float, default=None,
                   help="Langevin step size (default: lkr.train.suggest_lr for each net)")
    g.add_argument("--sampler", choices=("langevin", "collapsed"), default=None,
                   help="with --langevin: Langevin dynamics (default) or the exact collapsed "
                        "sampler (lkr.train.collapsed: readout integrated out, no step-size "
                        "bias, smaller standard errors for the time)")
    g.add_argument("--sweeps", type=positive_int, default=None,
                   help="collapsed sampler: sweeps per chain, burn-in included (default: "
                        "400)")


def _sampling_options(args, parser) -> None:
    """Refuse sampling options that would be ignored (no --langevin, or the other sampler's
    length), then fill in their defaults."""
    given = [opt for opt, v in (("--sampler", args.sampler), ("--sweeps", args.sweeps),
                                ("--langevin-steps", args.langevin_steps),
                                ("--chains", args.chains), ("--burn-in", args.burn_in),
                                ("--lr", args.lr)) if v is not None]
    if given and not args.langevin:
        parser.error(f"{', '.join(given)}: only for sampling the networks; add --langevin")
    args.sampler = args.sampler or "langevin"
    if args.sampler == "collapsed" and args.langevin_steps is not None:
        parser.error("--langevin-steps is Langevin's; the collapsed sampler runs --sweeps")
    if args.sampler == "langevin" and args.sweeps is not None:
        parser.error("--sweeps is the collapsed sampler's: add --sampler collapsed, or give "
                     "--langevin-steps")
    args.langevin_steps = 4000 if args.langevin_steps is None else args.langevin_steps
    args.sweeps = 400 if args.sweeps is None else args.sweeps
    args.chains = 4 if args.chains is None else args.chains


def command(args) -> int:
    """Run ``lkr fc-vs-cnn`` with parsed options; returns the exit status."""
    parser = args.parser
    _sampling_options(args, parser)
    length, length_opt = ((args.sweeps, "--sweeps") if args.sampler == "collapsed"
                          else (args.langevin_steps, "--langevin-steps"))
    if args.burn_in is not None and args.burn_in >= length:
        parser.error(f"--burn-in {args.burn_in} must be smaller than {length_opt} {length}")
    if args.sampler == "collapsed" and args.lr is not None:
        parser.error("--lr is Langevin's step size; the collapsed sampler adapts its own")
    from ..data import TASK_OPTIONS, check_task_options

    try:
        # options the task would silently ignore are refused before anything runs
        check_task_options(args.task, classes=args.classes, downsample=args.downsample,
                           color=args.color or None, teacher_channels=args.teacher_channels,
                           noise=args.noise)
    except ValueError as exc:
        parser.error(str(exc))
    name = args.task.partition(":")[0]
    task_options = {}
    if name == "local-teacher":
        task_options.update(teacher_channels=4 if args.teacher_channels is None
                            else args.teacher_channels,
                            noise=0.0 if args.noise is None else args.noise)
    elif name in TASK_OPTIONS["classes"]:  # the image tasks
        task_options.update(classes=args.classes, downsample=args.downsample or 1)
        if name == "cifar10":
            task_options["grayscale"] = not args.color
    if args.scheduler is not None and args.workers is not None:
        parser.error("give --scheduler (a running cluster) or --workers (a local one), not both")
    if args.out is not None:
        # Checked now, not after a run of minutes: a path that cannot be created or written
        # (read-only, full, a file in the way) fails at once.
        try:
            check_writable_dir(args.out)
        except OSError as exc:
            parser.error(f"--out {args.out}: cannot write there ({describe(exc)})")
    langevin = None
    filter_size, stride = _deep.layer_options(args, parser)
    if args.langevin:
        langevin = dict(chains=args.chains, steps=args.langevin_steps, burn_in=args.burn_in,
                        lr=args.lr)
        if args.sampler == "collapsed":
            langevin = dict(sampler="collapsed", chains=args.chains, sweeps=args.sweeps,
                            burn_in=args.burn_in)

    def progress(total):
        return Progress(total, enabled=not args.quiet)

    note = stderr_note(args.quiet)

    try:
        # Every user error (missing files, a filter larger than the input, ...) shows up
        # here, before any solver runs; later exceptions are bugs and keep their traceback.
        prepared = prepare(args.task, P=args.P, P_test=args.P_test, widths=args.widths,
                               input_shape=args.input_shape, filter_size=filter_size,
                               stride=stride, boundary=args.boundary, seed=args.seed,
                               task_options=task_options, depth=args.depth,
                               padding=args.padding)
    except (ValueError, TypeError, ImportError) as exc:
        parser.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if langevin and _outputs(prepared.task.y) > 1:
        parser.error(f"--langevin samples one-output networks, but --classes {args.classes} "
                     f"gives {_outputs(prepared.task.y)} one-hot outputs: choose two class "
                     "groups, or drop --langevin")
    kwargs = dict(temperature=args.temperature, activation=args.activation,
                  lambda0=args.lambda0, lambda1=args.lambda1, langevin=langevin,
                  progress=progress, prepared=prepared, boundary=args.boundary, seed=args.seed,
                  checkpoint=checkpointer(args.out, note) if langevin else None)
    with contextlib.ExitStack() as stack:
        ex = None
        if args.scheduler is not None or args.workers is not None:
            try:
                from ..distributed import executor as dask_executor

                ex = stack.enter_context(dask_executor(scheduler=args.scheduler,
                                                       workers=args.workers))
            except (OSError, TimeoutError) as exc:
                parser.error(f"cannot reach the Dask scheduler {args.scheduler}: {exc}")
            except ImportError as exc:
                msg = str(exc)
                if "pip install" not in msg:
                    msg += f"; {install_hint('distributed')}"
                parser.error(f"--scheduler/--workers need Dask: {msg}")
            note(f"fitting on Dask: {getattr(ex, 'client', ex)}")
        status, failure = 0, None
        try:
            results = run(args.task, executor=ex, **kwargs)
        except _interrupt.Interrupted as exc:
            results, status = exc.results, _interrupt.exit_status()
            print(f"lkr fc-vs-cnn: interrupted during {exc.during}; writing what is finished "
                  "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)
        except LangevinFailed as exc:
            results, status, failure = exc.results, 2, str(exc)
    print(format_table(results), flush=True)
    if failure:
        print(f"lkr fc-vs-cnn: error: Langevin sampling failed: {failure}", file=sys.stderr,
              flush=True)
    if args.out is not None:
        return write_outputs(results, args.out, note) or status
    note("(use --out DIR to save results.json and the plot)")
    return status
