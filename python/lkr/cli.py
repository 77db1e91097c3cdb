"""The ``lkr`` command (also ``python -m lkr``): a registry of subcommands.

Each subcommand is a module of :mod:`lkr.experiments` with ``HELP`` (one line),
``add_arguments(parser)`` and ``command(args) -> int`` (the exit status). Bad option values
end with a one-line message on stderr and exit status 2, as argparse does.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import _interrupt

#: subcommand -> module of lkr.experiments, in the order ``lkr --help`` lists them
COMMANDS = {"info": "info", "fc-vs-cnn": "fc_vs_cnn", "nets-vs-linearized": "nets_vs_linearized",
            "train": "train_one", "check-theory": "check_theory", "bench": "bench"}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2).

    The usage of ``lkr fc-vs-cnn`` spans many lines; the message points to ``--help``
    instead of repeating it.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _module(name):
    return importlib.import_module(f".experiments.{COMMANDS[name]}", __package__)


def _unavailable(name, why):
    def command(args) -> int:
        print(f"lkr {name}: not available in this installation ({why})", file=sys.stderr)
        return 1

    return command


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lkr`` command (all subcommands)."""
    from ._version import __version__

    parser = _Parser(prog="lkr", description="Local kernel renormalisation: "
                     "kernels, theory and experiments for finite-width networks.")
    parser.add_argument("--version", action="version", version=f"lkr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = _module(name)
        except ImportError as exc:
            # keeps `lkr --help` and the other subcommands working without this one
            p = sub.add_parser(name, help="(not available)")
            p.set_defaults(func=_unavailable(name, exc), parser=p)
            continue
        own_help = getattr(mod, "OWN_HELP", False)
        p = sub.add_parser(name, help=mod.HELP, add_help=not own_help)
        mod.add_arguments(p)
        p.set_defaults(func=mod.command, parser=p)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``lkr`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # One Ctrl-C handling for every subcommand (lkr._interrupt): the first Ctrl-C stops the
    # job and the command writes what is finished (exit status 130); a second one ends the
    # process at once.
    with _interrupt.handling(hard_exit=True):
        try:
            return _main(argv)
        except KeyboardInterrupt:
            print("lkr: interrupted", file=sys.stderr)
            return 130


def _main(argv) -> int:
    if argv[:1] == ["bench"]:
        # Everything after `bench` belongs to the bench runner (its own --help included);
        # argparse's REMAINDER would not pass on a leading option.
        return _module("bench").command(argparse.Namespace(bench_args=argv[1:]))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # reported by the subcommand's parser, so the message names `lkr fc-vs-cnn` etc.
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
