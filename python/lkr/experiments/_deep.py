"""The deep-CNN rows of ``lkr fc-vs-cnn --depth L`` (docs/deep-cnn.md).

With ``--depth L`` the options ``--filter``, ``--stride`` and ``--padding`` take one entry per
layer (``--filter 3x3,2x2 --stride 1,2 --padding same``; one entry serves every layer). The
one-layer CNN, LCN and the local teacher use the first layer's filter and stride; the deep
CNN (architecture ``"deepcnn"``: :class:`~lkr.theory.DeepCNNTheory`, the deep CNN-GP and
:class:`~lkr.nets.DeepCNNNet`) uses all L layers. Widths below its d final patches are
skipped (the action needs Nc >= d, and Nc >= d D with D one-hot outputs).
"""
from __future__ import annotations

from typing import Optional

__all__ = ["per_layer_option", "deep_geometry", "deep_widths", "first_layer", "add_arguments",
           "layer_options", "gp_row"]

PADDINGS = ("valid", "same", "circular", "periodic")


def per_layer_option(values, depth: Optional[int], name: str):
    """Normalise a parsed ``--filter``/``--stride`` (a list of shapes, one per comma entry).

    Without ``depth``: the one-layer meaning (``8,8`` is 8 x 8, as before ``--depth``).
    With ``depth``: a list of L shapes (one entry repeats for every layer)."""
    if values is None:
        return None
    if isinstance(values, tuple):  # a default: one shape
        values = [values]
    values = [tuple(v) for v in values]
    if depth is None:
        if len(values) == 1:
            return values[0]
        if all(len(v) == 1 for v in values) and len(values) == 2:
            return tuple(v[0] for v in values)
        raise ValueError(f"--{name}: one entry per layer needs --depth (got {len(values)} "
                         "entries)")
    if len(values) == 1:
        values = values * depth
    if len(values) != depth:
        raise ValueError(f"--{name} has {len(values)} entries for --depth {depth}; give one "
                         "per layer or one for all")
    return values


def first_layer(value):
    """The first layer's entry of a per-layer list (the one-layer geometry's)."""
    return value[0] if isinstance(value, list) else value


def deep_geometry(info: dict, depth: int, filter_sizes, strides, padding):
    """The task's DeepGeometry (its input shape, channels and layout)."""
    from ..deep_geometry import DeepGeometry

    shape = tuple(info["input_shape"])

    def axes(v):
        return None if v is None else tuple(v) * len(shape) if len(v) == 1 else tuple(v)

    fs = [axes(f) for f in filter_sizes]
    ss = [None] * depth if strides is None else [axes(s) for s in strides]
    pads = padding if isinstance(padding, list) else [padding] * depth
    if len(pads) == 1:
        pads = pads * depth
    if len(pads) != depth:
        raise ValueError(f"--padding has {len(pads)} entries for --depth {depth}")
    for p in pads:
        if p not in PADDINGS:
            raise ValueError(f"--padding must be one of {PADDINGS}, got {p!r}")
    return DeepGeometry(shape, fs, ss, pads, channels=info["channels"], layout=info["layout"])


def deep_widths(widths, geometry, outputs=1):
    """The widths the deep CNN theory accepts (Nc >= d D, D the outputs)."""
    return [w for w in widths if w >= geometry.num_patches * outputs]


def shapes(text: str):
    """``3x3,2x2`` -> [(3, 3), (2, 2)]; ``8,8`` -> [(8,), (8,)] (see :func:`per_layer_option`)."""
    from .argtypes import shape

    return [shape(p) for p in text.split(",") if p.strip()] or [shape(text)]


def parse_padding(text: str):
    """``same`` or ``same,valid``: one padding or a list per layer."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    import argparse

    for p in parts:
        if p not in PADDINGS:
            raise argparse.ArgumentTypeError(f"padding must be one of {', '.join(PADDINGS)}, "
                                             f"got {p!r}")
    if not parts:
        raise argparse.ArgumentTypeError("expected a padding such as same or same,valid")
    return parts[0] if len(parts) == 1 else parts


def gp_row(data, dg, common) -> dict:
    """The deep CNN-GP's test error (the N = inf row of "deepcnn")."""
    from ..train._arch import make_theory
    from ._rows import scores

    X, y, X_test, y_test = data
    gp = make_theory("deepcnn", None, geometry=dg, **common)
    gp.fit(X, y)
    return {"kernel": "deepcnn", "description": "GP with the deep CNN kernel K_R(I) of the "
            "L-layer recursion (Qbar = I)", **scores(gp.evaluate(X_test, y_test))}


def add_arguments(g) -> None:
    """``--depth`` and ``--padding`` of ``lkr fc-vs-cnn`` (in its geometry group)."""
    from .argtypes import positive_int

    g.add_argument("--depth", type=positive_int, default=None, metavar="L",
                   help="also fit a deep CNN of L convolutional layers (DeepCNNTheory, its "
                        "GP and, with --langevin, DeepCNNNet): --filter/--stride/--padding "
                        "per layer; the one-layer nets use the first layer's filter and stride")
    g.add_argument("--padding", type=parse_padding, default="valid",
                   help="with --depth: valid, same, circular or periodic, one or one per layer "
                        "(default: %(default)s)")


def layer_options(args, parser):
    """(filter_size, stride) of the parsed options, per layer with ``--depth``; a usage
    error (exit 2) for per-layer values without it."""
    try:
        filter_size = per_layer_option(args.filter_size, args.depth, "filter")
        stride = per_layer_option(args.stride, args.depth, "stride")
    except ValueError as exc:
        parser.error(str(exc))
    if args.depth is None and args.padding != "valid":
        parser.error("--padding is for the deep CNN's layers: it needs --depth")
    return filter_size, stride
