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

__all__ = ["DeepGeometry", "DeepPairPlan"]

#: stored position pairs per chunk of a plan (see DeepPairPlan): the compiled engine holds a
#: chunk's blocks for a tile of sample pairs, ~128 entries each, in ~512 KB per thread
CHUNK_PAIRS = 512
_PLAN_CACHE = 8  # plans kept per geometry (masks other than "dense"/"diagonal" vary)


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
        self._plans = {}

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

    def pair_plan(self, pattern="dense"):
        """The position pairs the deep kernel computes for a readout pattern (cached).

        Parameters
        ----------
        pattern : {"dense", "diagonal"} or bool array (d, d)
            The final pairs (i, j) the readout needs: all d^2 (a dense Q), the d diagonal
            ones (Q diagonal: the flatten readout of the GP, Q = I), or the support of Q
            (symmetrised: a pair needs its mirror for the symmetric kernels).

        Returns
        -------
        DeepPairPlan
        """
        d = self.num_patches
        if isinstance(pattern, str):
            if pattern not in ("dense", "diagonal"):
                raise ValueError(f"pattern must be 'dense', 'diagonal' or a ({d}, {d}) boolean "
                                 f"mask, got {pattern!r}")
            key = pattern
        else:
            mask = np.asarray(pattern, dtype=bool)
            if mask.shape != (d, d):
                raise ValueError(f"the pattern mask must have shape ({d}, {d}), got {mask.shape}")
            mask = mask | mask.T
            if mask.all():
                key = "dense"
            elif np.array_equal(mask, np.eye(d, dtype=bool)):
                key = "diagonal"
            else:
                key = ("mask", np.packbits(mask).tobytes())
        plan = self._plans.get(key)
        if plan is None:
            if key == "dense":
                mask = np.ones((d, d), dtype=bool)
            elif key == "diagonal":
                mask = np.eye(d, dtype=bool)
            i, j = np.nonzero(mask)
            name = key if isinstance(key, str) else "mask"
            plan = DeepPairPlan(self, np.stack([i, j], axis=1), name)
            if len(self._plans) >= _PLAN_CACHE:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        return plan


class DeepPairPlan:
    """The position pairs of every layer that the deep kernel computes for a set of final
    pairs (docs/deep-cnn.md section 4, "the pair plan").

    With the same filter offset t on both sides, the final pair (i, j) reads at layer L - 1
    only the pairs (w_i(t), w_j(t)), which read the pairs below them likewise: a pair's
    displacement is the one above times the stride (mod the grid for periodic padding), so
    the needed pairs split into independent classes (connected components), one per final
    displacement. A diagonal readout needs only the n_l diagonal pairs of every layer.

    Attributes
    ----------
    pattern : str
        "dense", "diagonal" or "mask".
    pairs : tuple of int32 arrays (n_l, 2)
        Per layer (layer 1 first), the pairs (p, q) of positions computed, ordered by chunk.
        ``pairs[-1]`` are the final pairs (i, j).
    gathers : tuple of int32 arrays (n_l, k_l)
        For layers 2..L, the indices into the layer below's pairs read at each window offset
        t; the count of the pairs below marks a padded position (it reads 0).
    chunks : int64 array (nchunks + 1, L)
        Chunk c holds pairs ``chunks[c, l]:chunks[c + 1, l]`` of layer l: whole components of
        together at most CHUNK_PAIRS pairs (one larger component is a chunk of its own); a
        chunk's gathers read only its own pairs below.
    cols, col_pairs : int32 arrays (n_L,), (ncols, 2)
        The column of each final pair in the stored kernel of the theories (one column per
        unordered pair (i <= j), in ``np.triu_indices`` order), and the pair of each column.
    """

    def __init__(self, geometry, final, pattern):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        self.pattern = pattern
        sizes = geometry.num_positions
        L = len(sizes)
        tables = [t for t, _ in geometry.gather_tables()]
        pairs = [None] * L
        gathers = [None] * L
        pairs[-1] = np.asarray(final, dtype=np.int64).reshape(-1, 2)
        for lev in range(L - 1, 0, -1):  # the pairs each layer reads below it
            idx, n_in = tables[lev - 1].astype(np.int64), sizes[lev - 1]
            a, b = idx[pairs[lev][:, 0]], idx[pairs[lev][:, 1]]
            ok = (a < n_in) & (b < n_in)
            uniq, inv = np.unique(a[ok] * n_in + b[ok], return_inverse=True)
            g = np.full(a.shape, len(uniq), dtype=np.int64)
            g[ok] = inv
            gathers[lev] = g
            pairs[lev - 1] = np.stack([uniq // n_in, uniq % n_in], axis=1)
        # components of the read graph, numbered by their first final pair
        counts = [len(p) for p in pairs]
        offs = np.concatenate([[0], np.cumsum(counts)])
        rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for lev in range(1, L):
            e, _ = np.nonzero(gathers[lev] < counts[lev - 1])
            rows.append(offs[lev] + e)
            cols.append(offs[lev - 1] + gathers[lev][gathers[lev] < counts[lev - 1]])
        r, c = np.concatenate(rows), np.concatenate(cols)
        n = int(offs[-1])
        _, label = connected_components(coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n)),
                                        directed=False)
        top = label[offs[L - 1]:]
        first = np.unique(top, return_index=True)[1]
        rank = np.empty(label.max() + 1 if n else 0, dtype=np.int64)
        ncomp = len(first)
        rank[top[np.sort(first)]] = np.arange(ncomp)
        comp = [rank[label[offs[lev]:offs[lev + 1]]] for lev in range(L)]
        # reorder every layer by component (stable), remap the gathers
        new_index = []
        for lev in range(L):
            order = np.argsort(comp[lev], kind="stable")
            inv = np.empty(len(order), dtype=np.int64)
            inv[order] = np.arange(len(order))
            new_index.append(inv)
            pairs[lev] = pairs[lev][order]
            comp[lev] = comp[lev][order]
            if lev > 0:
                g = gathers[lev][order]
                ok = g < counts[lev - 1]
                g[ok] = new_index[lev - 1][g[ok]]
                gathers[lev] = g
        # chunks: whole components, at most CHUNK_PAIRS pairs together
        per = np.stack([np.bincount(comp[lev], minlength=ncomp) for lev in range(L)], axis=1)
        bounds, load = [0], 0
        for ci, size in enumerate(per.sum(axis=1)):
            if load and load + size > CHUNK_PAIRS:
                bounds.append(ci)
                load = 0
            load += size
        if ncomp:
            bounds.append(ncomp)
        cum = np.vstack([np.zeros((1, L), np.int64), np.cumsum(per, axis=0)])
        self.chunks = np.ascontiguousarray(cum[bounds], dtype=np.int64)
        self.pairs = tuple(np.ascontiguousarray(p, dtype=np.int32) for p in pairs)
        self.gathers = tuple(np.ascontiguousarray(g, dtype=np.int32) for g in gathers[1:])
        fin = self.pairs[-1].astype(np.int64)
        d = geometry.num_patches
        lo, hi = np.minimum(fin[:, 0], fin[:, 1]), np.maximum(fin[:, 0], fin[:, 1])
        keys, cols = np.unique(lo * d + hi, return_inverse=True)
        self.cols = np.ascontiguousarray(cols.reshape(-1), dtype=np.int32)
        self.col_pairs = np.ascontiguousarray(np.stack([keys // d, keys % d], axis=1),
                                              dtype=np.int32)
        for a in (self.chunks, self.cols, self.col_pairs, *self.pairs, *self.gathers):
            a.setflags(write=False)

    @property
    def counts(self):
        """The pairs computed per layer (layer 1 first)."""
        return tuple(len(p) for p in self.pairs)

    @property
    def ncols(self):
        return len(self.col_pairs)

    def arrays(self):
        """(pairs, gathers, chunks): what the compiled engines take."""
        return list(self.pairs), list(self.gathers), self.chunks

    def __repr__(self):
        return (f"DeepPairPlan(pattern={self.pattern!r}, pairs per layer={self.counts}, "
                f"chunks={len(self.chunks) - 1})")

