"""Geometry of an L-layer convolutional network (docs/deep-cnn.md).

Layer 1 cuts the input into patches as a :class:`~lkr.geometry.PatchGeometry` does; layer
l >= 2 cuts the output grid of layer l - 1 the same way (its own filter, stride and
padding), so that each layer's output grid is the next one's input. The last layer's grid
holds the d final patches that the readout sees (``num_patches``).

The kernels need only positions beyond the first layer: ``layers[0]`` has the input's
channels, ``layers[l]`` (l >= 1) one channel per site (the kernel recursion sums over a
layer's channels analytically). A network with Nc channels uses :meth:`layer` with
``channels=Nc`` for its own patch extraction.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np

from .geometry import _BOUNDARIES, _LAYOUTS, PatchGeometry

__all__ = ["DeepGeometry"]


def _per_layer(value, name: str, depth):
    """A list of per-layer entries: a list/tuple is per layer, anything else one for all."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise ValueError(f"{name} must not be empty")
        if depth is not None and len(value) != depth:
            raise ValueError(f"{name} has {len(value)} entries but another argument gives "
                             f"{depth} layers: {value!r}")
        return list(value)
    return None if depth is None else [value] * depth


class DeepGeometry:
    """The layers of a deep CNN: filter sizes, strides and paddings, one per layer.

    Parameters
    ----------
    input_shape : int or tuple of int
        ``(N0,)`` or ``(H, W)``: the spatial shape of the input (no channels).
    filter_sizes : int, tuple or list
        Per layer: a list (or tuple) with one entry per layer, each an int (the same size
        on every axis) or a tuple per axis; or a single int used by every layer.
        In 2D, ``(3, 3)`` therefore means *two layers* of 3 x 3 filters; one layer of
        5 x 5 is ``[(5, 5)]`` or ``[5]``.
    strides : int, tuple or list
        The same convention; ``None`` entries (or ``None``) mean the filter size.
    padding : str or list of str, default "valid"
        Per layer or for all: ``"valid"``, ``"same"`` (zero padding), ``"circular"``
        (periodic, "same" offset) or ``"periodic"`` (see :class:`PatchGeometry`).
    channels : int, default 1
        Input channels.
    layout : {"channels_last", "channels_first"}
        Layout of the input's channel axis.

    The depth L is the length of the list arguments (they must agree); with no list at
    all, L = 1.

    Attributes
    ----------
    depth : int
        L, the number of convolutional layers.
    layers : list of PatchGeometry
        Layer l's patches of its input grid (``layers[0]`` with the input's channels and
        layout, the others with one channel per site).
    output_shapes : tuple of tuple of int
        The output grid of each layer (the last one holds the d final patches).
    num_patches : int
        d, the final patches (the size of the readout's order parameter Q).

    Examples
    --------
    >>> dg = DeepGeometry((28, 28), filter_sizes=[5, 3], strides=2, padding=["same", "valid"])
    >>> dg.depth, dg.output_shapes, dg.num_patches
    (2, ((14, 14), (6, 6)), 36)
    """

    def __init__(self, input_shape, filter_sizes, strides=None, padding="valid", channels=1,
                 layout="channels_last"):
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
        depth = None
        for value in (filter_sizes, strides, padding):
            if isinstance(value, (list, tuple)):
                depth = len(value)
                break
        fs = _per_layer(filter_sizes, "filter_sizes", depth)
        depth = len(fs) if fs is not None else depth
        ss = _per_layer(strides, "strides", depth)
        depth = len(ss) if ss is not None else depth
        ps = _per_layer(padding, "padding", depth)
        depth = 1 if depth is None else depth
        fs = fs or [filter_sizes] * depth
        ss = ss or [strides] * depth
        ps = ps or [padding] * depth
        if depth < 1:
            raise ValueError(f"a DeepGeometry needs at least one layer, got {depth}")
        for p in ps:
            if p not in _BOUNDARIES:
                raise ValueError(f"padding must be one of {_BOUNDARIES} (or a list of them), "
                                 f"got {p!r}")
        layers: List[PatchGeometry] = []
        shape = input_shape
        for i, (f, s, p) in enumerate(zip(fs, ss, ps)):
            try:
                g = PatchGeometry(shape, f, s, channels=channels if i == 0 else 1, boundary=p,
                                  layout=layout if i == 0 else "channels_last")
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"layer {i + 1} of {depth} (input grid {shape}): {exc}") from None
            layers.append(g)
            shape = g.grid_shape
        self.layers = layers
        self.input_shape = layers[0].input_shape
        self.channels = layers[0].channels
        self.layout = layout
        self.filter_sizes = tuple(g.filter_size for g in layers)
        self.strides = tuple(g.stride for g in layers)
        self.paddings = tuple(g.boundary for g in layers)
        self._tables = None

    # -- sizes --------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """L, the number of convolutional layers."""
        return len(self.layers)

    @property
    def ndim(self) -> int:
        return len(self.input_shape)

    @property
    def output_shapes(self) -> Tuple[Tuple[int, ...], ...]:
        """The output grid of every layer."""
        return tuple(g.grid_shape for g in self.layers)

    @property
    def num_patches(self) -> int:
        """d, the number of final patches (positions of the last layer's output)."""
        return self.layers[-1].num_patches

    @property
    def num_positions(self) -> Tuple[int, ...]:
        """The positions of each layer's output grid (n_1, ..., n_L = d)."""
        return tuple(g.num_patches for g in self.layers)

    @property
    def patch_size(self) -> int:
        """M1, the entries of one first-layer patch (filter sites times input channels)."""
        return self.layers[0].patch_size

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    def layer(self, l: int, channels: int = 1) -> PatchGeometry:
        """Layer ``l``'s PatchGeometry (0-based) with ``channels`` input channels, for a
        network's own patch extraction of the previous layer's activations (channels last)."""
        g = self.layers[l]
        if l == 0 and channels == g.channels:
            return g
        return PatchGeometry(g.input_shape, g.filter_size, g.stride, channels=channels,
                             boundary=g.boundary, layout="channels_last" if l else g.layout)

    def __repr__(self) -> str:
        return (f"DeepGeometry(input_shape={self.input_shape}, "
                f"filter_sizes={list(self.filter_sizes)}, "
                f"strides={list(self.strides)}, padding={list(self.paddings)}, "
                f"channels={self.channels}, layout={self.layout!r})")

    def _key(self):
        return (self.input_shape, self.filter_sizes, self.strides, self.paddings, self.channels,
                self.layout)

    def __eq__(self, other) -> bool:
        return isinstance(other, DeepGeometry) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def to_dict(self) -> dict:
        """The constructor arguments, for saving alongside results."""
        return dict(input_shape=list(self.input_shape),
                    filter_sizes=[list(f) for f in self.filter_sizes],
                    strides=[list(s) for s in self.strides], padding=list(self.paddings),
                    channels=self.channels, layout=self.layout)

    # -- what the kernels need ------------------------------------------------------------
    def flatten(self, X, name: str = "X"):
        """Inputs as (P, N0), flattened channels-last (see :meth:`PatchGeometry.flatten`)."""
        return self.layers[0].flatten(X, name)

    def patches(self, X, name: str = "X"):
        """The first layer's patch tensor (P, n_1, M1), zero padded as its padding says."""
        return self.layers[0].patches(X, name)

    def gather_tables(self):
        """For layers 2..L: ``(index, k)`` with ``index`` (n_l, k) int32, the positions of
        layer l - 1's output grid in each window of layer l (row-major, as
        :meth:`PatchGeometry.patch_index` with one channel), a padded one being n_{l-1} (one
        past the end); k = prod(filter size) is the window's size."""
        if self._tables is None:
            tables = []
            for g in self.layers[1:]:
                idx = np.ascontiguousarray(g.patch_index(), dtype=np.int32)
                idx.setflags(write=False)
                tables.append((idx, math.prod(g.filter_size)))
            self._tables = tuple(tables)
        return self._tables
