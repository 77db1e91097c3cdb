"""The ``lkr`` command (also ``python -m lkr``).

Subcommands: ``info`` (versions, backend, threads), ``fc-vs-cnn`` (the main experiment),
``nets-vs-linearized`` (networks against their linearisations), ``train`` (one network by
Langevin dynamics) and ``bench`` (the microbenchmarks). Bad option
values end with a one-line message on stderr and exit status 2, as argparse does.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from .experiments.argtypes import nonneg_float as _nonneg_float
from .experiments.argtypes import nonneg_int as _nonneg_int
from .experiments.argtypes import positive_float as _positive_float
from .experiments.argtypes import positive_int as _positive_int
from .experiments.argtypes import shape as _shape
from .experiments.argtypes import widths as _widths


def _task(text):
    from .data import TASKS

    name, sep, arg = text.partition(":")
    if name in ("local-teacher", "gaussian-linear", "digits") and not sep:
        return text
    if name in ("mnist", "cifar10"):
        if not arg:
            raise argparse.ArgumentTypeError(f"{name} needs a local directory: {name}:DIR "
                                             "(nothing is downloaded)")
        if not os.path.isdir(arg):
            raise argparse.ArgumentTypeError(f"directory not found: {arg}")
        return text
    raise argparse.ArgumentTypeError(f"unknown task {text!r}; choose one of {', '.join(TASKS)}")


# -- subcommands -----------------------------------------------------------------------------------
def _cmd_info(args) -> int:
    from .backend import info

    data = info()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        width = max(map(len, data))
        for k, v in data.items():
            print(f"{k:<{width}}  {v}")
    return 0


def _cmd_bench(args) -> int:
    from .bench.__main__ import main as bench_main

    return bench_main(args.bench_args)


def _cmd_train(args) -> int:
    from .experiments import train_one

    return train_one.run(args)


def _add_train(sub):
    p = sub.add_parser("train", help="train one FC/CNN/LCN network by Langevin dynamics",
                       description="Sample one network's posterior by Langevin dynamics "
                                   "(lkr.train) and report its test error.")
    try:
        from .experiments import train_one
    except ImportError as exc:
        # Keeps `lkr --help` and the other subcommands working while train_one is absent.
        why = str(exc)
        p.set_defaults(func=lambda a: _unavailable("train", why))
        return
    train_one.add_arguments(p)
    p.set_defaults(func=_cmd_train, parser=p)


def _add_nets_vs_linearized(sub):
    from .experiments import nets_vs_linearized

    p = sub.add_parser(
        "nets-vs-linearized", help="finite-width nets against their linearisations; "
                                   "effective rank of the Jacobian",
        description="Train FC, CNN and LCN networks at several widths by gradient descent "
                    "(one output per class group), and their linearisations around the same "
                    "initialisation with the same optimiser; compare test accuracy and MSE, "
                    "and report the effective rank of the Jacobian at initialisation. Prints "
                    "a table; with --out, writes results.json and nets_vs_linearized.png.",
        epilog="Example: lkr nets-vs-linearized --out runs/nvl (about a minute on two cores).")
    nets_vs_linearized.add_arguments(p)
    p.set_defaults(func=nets_vs_linearized.run, parser=p)


def _unavailable(name, exc) -> int:
    print(f"lkr {name}: not available in this installation ({exc})", file=sys.stderr)
    return 1


def _add_fc_vs_cnn(sub):
    from .experiments.fc_vs_cnn import DEFAULTS

    p = sub.add_parser(
        "fc-vs-cnn", help="the main experiment: FC vs CNN vs LCN test error against width",
        description="Fit the effective actions of one-hidden-layer FC, CNN and LCN networks "
                    "at several widths on one task, and compare their test error (bias^2 + "
                    "variance) with the infinite-width Gaussian processes. Prints a table; "
                    "with --out, writes results.json and fc_vs_cnn.png.",
        epilog="Example: lkr fc-vs-cnn --out results (about a minute on two cores).")
    g = p.add_argument_group("task")
    g.add_argument("--task", type=_task, default=DEFAULTS["task"],
                   help="local-teacher, gaussian-linear, mnist:DIR, cifar10:DIR (local files; "
                        "nothing is downloaded) or digits (scikit-learn's) (default: %(default)s)")
    g.add_argument("-P", "--P", dest="P", type=_positive_int, default=DEFAULTS["P"],
                   help="training set size (default: %(default)s)")
    g.add_argument("--P-test", dest="P_test", type=_positive_int, default=DEFAULTS["P_test"],
                   help="test set size (default: %(default)s)")
    g.add_argument("--seed", type=_nonneg_int, default=DEFAULTS["seed"], help="seeds the task "
                   "(and Langevin sampling) (default: %(default)s)")
    g.add_argument("--classes", default=None,
                   help="image tasks: two classes 'a,b' or groups 'a,c:b,d' (first -> +1); "
                        "default 0,1 for MNIST and digits, 3,5 for CIFAR-10")
    g.add_argument("--color", action="store_true",
                   help="cifar10: keep RGB as 3 channels (default: grayscale)")
    g.add_argument("--downsample", type=_positive_int, default=1, metavar="F",
                   help="image tasks: block-average factor (default: %(default)s)")
    g.add_argument("--teacher-channels", type=_positive_int, default=4, metavar="C",
                   help="local-teacher: hidden channels of the CNN teacher (default: %(default)s)")
    g.add_argument("--noise", type=_nonneg_float, default=0.0,
                   help="local-teacher: standard deviation of label noise (default: %(default)s)")
    g = p.add_argument_group("networks and posterior")
    g.add_argument("--widths", type=_widths, default=None, metavar="N,N,...",
                   help="comma-separated widths N (FC units, CNN/LCN channels); default: "
                        "N = P/alpha for alpha in 0.25, 0.5, 1, 2, 4, 8")
    g.add_argument("-T", "--temperature", type=_positive_float, default=DEFAULTS["temperature"],
                   help="posterior temperature T (default: %(default)s)")
    g.add_argument("--lambda0", type=_positive_float, default=DEFAULTS["lambda0"],
                   help="inverse prior variance of the first-layer weights (default: %(default)s)")
    g.add_argument("--lambda1", type=_positive_float, default=DEFAULTS["lambda1"],
                   help="inverse prior variance of the readout (default: %(default)s)")
    g.add_argument("--activation", choices=("erf", "linear", "relu"),
                   default=DEFAULTS["activation"], help="activation (relu: the actions are "
                   "approximate, see the docs) (default: %(default)s)")
    g = p.add_argument_group("patch geometry (CNN, LCN and the local teacher)")
    g.add_argument("--input-shape", type=_shape, default=None, metavar="SHAPE",
                   help="synthetic tasks: N0 or HxW (default 64); image tasks: from the files")
    g.add_argument("--filter", dest="filter_size", type=_shape, default=DEFAULTS["filter_size"],
                   metavar="M", help="filter size m or mhxmw (default: 4; one number is "
                   "used on every axis)")
    g.add_argument("--stride", type=_shape, default=None, metavar="S", help="stride (default: the filter "
                   "size, non-overlapping patches)")
    g.add_argument("--boundary", choices=("periodic", "valid"), default=DEFAULTS["boundary"],
                   help="patch boundary mode (default: %(default)s)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="write results.json (and fc_vs_cnn.png with matplotlib) into DIR")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar or notes on stderr (the table still goes to stdout, and a "
                        "missing plot is still reported)")
    g = p.add_argument_group("scaling out (pip install lkr[distributed])")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address: fit every (architecture, width) on it")
    g.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="start a local Dask cluster of N workers for the fits")
    g = p.add_argument_group("Langevin sampling of the networks themselves (slow)")
    g.add_argument("--langevin", action="store_true",
                   help="also sample each network by Langevin dynamics at every width and show "
                        "its test error (mean +- standard error over chains)")
    g.add_argument("--langevin-steps", type=_positive_int, default=4000,
                   help="Langevin steps per chain, burn-in included (default: %(default)s)")
    g.add_argument("--burn-in", type=_nonneg_int, default=None,
                   help="steps discarded per chain (default: lkr.train's choice)")
    g.add_argument("--chains", type=_positive_int, default=4, help="independent chains (default: %(default)s)")
    g.add_argument("--lr", type=_positive_float, default=None,
                   help="Langevin step size (default: lkr.train.suggest_lr for each net)")
    p.set_defaults(func=_cmd_fc_vs_cnn, parser=p)


def _cmd_fc_vs_cnn(args) -> int:
    from .experiments import fc_vs_cnn as exp

    parser = args.parser
    if args.burn_in is not None and args.burn_in >= args.langevin_steps:
        parser.error(f"--burn-in {args.burn_in} must be smaller than --langevin-steps "
                     f"{args.langevin_steps}")
    name = args.task.partition(":")[0]
    synthetic = name in ("local-teacher", "gaussian-linear")
    task_options = {}
    if synthetic:
        if name == "local-teacher":
            task_options.update(teacher_channels=args.teacher_channels, noise=args.noise)
        elif args.noise:
            parser.error("--noise applies to the local-teacher task only")
    else:
        task_options.update(classes=args.classes, downsample=args.downsample)
        if name == "cifar10":
            task_options["grayscale"] = not args.color
    if args.scheduler is not None and args.workers is not None:
        parser.error("give --scheduler (a running cluster) or --workers (a local one), not both")
    if args.out is not None:
        # Made now, not after a run of minutes, so that a bad path fails at once.
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as exc:
            parser.error(f"--out {args.out}: cannot create the directory ({exc.strerror or exc})")
    langevin = None
    if args.langevin:
        langevin = dict(chains=args.chains, steps=args.langevin_steps, burn_in=args.burn_in,
                        lr=args.lr)

    def progress(total):
        return exp.Progress(total, enabled=not args.quiet)

    def note(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        # Every user error (missing files, a filter larger than the input, ...) shows up
        # here, before any solver runs; later exceptions are bugs and keep their traceback.
        prepared = exp.prepare(args.task, P=args.P, P_test=args.P_test, widths=args.widths,
                               input_shape=args.input_shape, filter_size=args.filter_size,
                               stride=args.stride, boundary=args.boundary, seed=args.seed,
                               task_options=task_options)
    except (ValueError, TypeError, ImportError) as exc:
        parser.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    kwargs = dict(temperature=args.temperature, activation=args.activation,
                  lambda0=args.lambda0, lambda1=args.lambda1, langevin=langevin,
                  progress=progress, prepared=prepared, boundary=args.boundary, seed=args.seed)
    with contextlib.ExitStack() as stack:
        ex = None
        if args.scheduler is not None or args.workers is not None:
            try:
                from .distributed import executor as dask_executor

                ex = stack.enter_context(dask_executor(scheduler=args.scheduler,
                                                       workers=args.workers))
            except (OSError, TimeoutError) as exc:
                parser.error(f"cannot reach the Dask scheduler {args.scheduler}: {exc}")
            except ImportError as exc:
                msg = str(exc)
                if "pip install" not in msg:
                    msg += "; pip install lkr[distributed]"
                parser.error(f"--scheduler/--workers need Dask: {msg}")
            note(f"fitting on Dask: {getattr(ex, 'client', ex)}")
        results = exp.run(args.task, executor=ex, **kwargs)
    print(exp.format_table(results), flush=True)
    if args.out is not None:
        path = exp.save_results(results, args.out)
        note(f"wrote {path}")
        try:
            png = exp.plot_results(results, os.path.join(args.out, "fc_vs_cnn.png"))
            note(f"wrote {png}")
        except ImportError as exc:
            # said even with --quiet: the plot that --out asks for is missing
            print(f"no plot: {exc}", file=sys.stderr, flush=True)
    else:
        note("(use --out DIR to save results.json and the plot)")
    return 0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2).

    The usage of ``lkr fc-vs-cnn`` spans many lines; the message points to ``--help``
    instead of repeating it.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lkr`` command (all subcommands)."""
    parser = _Parser(prog="lkr", description="Local kernel renormalisation: "
                                     "kernels, theory and experiments for finite-width networks.")
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"lkr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="versions, backend, threads, BLAS, GPU",
                       description="Print versions, the compute backend, threads, BLAS and GPU.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info, parser=p)
    _add_fc_vs_cnn(sub)
    _add_train(sub)
    _add_nets_vs_linearized(sub)
    p = sub.add_parser("bench", help="run the microbenchmarks (see `lkr bench --help`)",
                       add_help=False)
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``lkr`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # Everything after `bench` belongs to the bench runner (its own --help included);
        # argparse's REMAINDER would not pass on a leading option.
        return _cmd_bench(argparse.Namespace(bench_args=argv[1:]))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # reported by the subcommand's parser, so the message names `lkr fc-vs-cnn` etc.
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
