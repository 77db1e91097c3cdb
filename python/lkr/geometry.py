"""Patch geometry: how an input is cut into the patches x_i that the local kernel compares.

A 1D input of N0 sites (times ``channels``) or a 2D input of H x W pixels (times
``channels``) is cut into patches of ``filter_size`` sites, ``stride`` apart. Boundaries are
explicit:

``periodic``
    indices wrap around; Np = floor(N0 / S) patches per axis.
``valid``
    no wrap; Np = floor((N0 - m) / S) + 1 patches per axis.
``same``
    zero padding, the TensorFlow/PyTorch "SAME" convention: Np = ceil(N0 / S) per axis, a
    total padding pad = max((Np - 1) S + m - N0, 0) of which left = floor(pad / 2) goes
    before the input and the rest after it (the extra one on the right/bottom). Window i
    covers sites S i - left ... S i - left + m - 1; sites outside the input are zeros. The
    normalisation of the kernels stays the full window M (it does not shrink at the border).
``circular``
    periodic with the "same" offset (neural-tangents' and JAX's CIRCULAR padding):
    Np = ceil(N0 / S), window i starts at S i - left (left as for ``same``) and wraps.

Patch i of a 1D input is x[S i : S i + m] (mod N0 when periodic). In 2D, patch (a, b) of
the patch grid has index i = a * n_w + b (row-major) and its M = m_h m_w C entries are
ordered (row, column, channel).
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from . import _arrays
from ._validate import choice as _choice
from ._validate import integer as _integer
from ._validate import is_integer as _is_integer

__all__ = ["PatchGeometry", "patches", "patches_adjoint", "same_padding"]

_BOUNDARIES = ("periodic", "valid", "same", "circular")


def same_padding(n: int, m: int, s: int) -> Tuple[int, int, int]:
    """``(out, left, right)`` of TensorFlow/PyTorch "SAME" padding along one axis.

    out = ceil(n / s); total = max((out - 1) s + m - n, 0); left = floor(total / 2),
    right = total - left (the extra site goes to the right/bottom).
    """
    out = -(-n // s)
    total = max((out - 1) * s + m - n, 0)
    return out, total // 2, total - total // 2
_LAYOUTS = ("channels_last", "channels_first")


def _as_tuple(value, ndim: int, name: str) -> Tuple[int, ...]:
    if np.ndim(value) == 0:
        value = (value,) * ndim
    value = tuple(value)
    if len(value) != ndim:
        raise ValueError(f"{name} must have {ndim} entries for a {ndim}-D input, got {value!r}")
    out = []
    for v in value:
        if not _is_integer(v):
            raise TypeError(f"{name} must hold integers, got {value!r}")
        out.append(int(v))
    return tuple(out)


class PatchGeometry:
    """Patches of a 1D or 2D input, with filter size, stride, channels and boundary.

    Parameters
    ----------
    input_shape : int or tuple of int
        ``(N0,)`` for a 1D input, ``(H, W)`` for a 2D one (spatial sizes, no channels).
    filter_size : int or tuple of int
        Patch extent m per axis (an int is used on every axis).
    stride : int or tuple of int, optional
        Step S between patches per axis; defaults to ``filter_size`` (non-overlapping).
    channels : int, default 1
        Input channels C; each patch holds M = prod(filter_size) * C entries.
    boundary : {"periodic", "valid", "same", "circular"}
        ``periodic`` wraps indices (Np = floor(N / S) per axis); ``valid`` keeps only
        patches inside the input (Np = floor((N - m) / S) + 1 per axis); ``same`` pads
        with zeros (Np = ceil(N / S), left padding floor(pad / 2)); ``circular`` wraps with
        the window offset of ``same`` (see the module docstring). With ``same`` and
        ``circular`` a filter may be larger than the input.
    layout : {"channels_last", "channels_first"}
        Where the channel axis sits in inputs with channels: ``(P, ..., C)`` or
        ``(P, C, ...)``. Never guessed.

    Attributes
    ----------
    num_patches : int
        Np, the number of patches.
    patch_size : int
        M, the entries of one patch.
    input_size : int
        N0 = prod(input_shape) * channels, the length of a flattened input.
    grid_shape : tuple of int
        Patches per axis.
    padding : tuple of (int, int)
        (left, right) zero padding per axis (non-zero only for ``same``; ``circular``
        windows start at ``-left``, see :attr:`offsets`).

    Examples
    --------
    >>> g = PatchGeometry(input_shape=(256,), filter_size=4, stride=4)
    >>> g.num_patches, g.patch_size
    (64, 4)
    >>> PatchGeometry((32, 32), (8, 8), (8, 8)).num_patches
    16
    """

    def __init__(self, input_shape, filter_size, stride=None, channels=1, boundary="periodic",
                 layout="channels_last"):
        shape = (input_shape,) if np.ndim(input_shape) == 0 else tuple(input_shape)
        ndim = len(shape)
        if ndim not in (1, 2):
            raise ValueError(f"input_shape must be (N0,) or (H, W), got {input_shape!r}")
        self.input_shape = _as_tuple(shape, ndim, "input_shape")
        self.filter_size = _as_tuple(filter_size, ndim, "filter_size")
        self.stride = self.filter_size if stride is None else _as_tuple(stride, ndim, "stride")
        self.channels = _integer(channels, "channels")
        self.boundary = _choice(boundary, "boundary", _BOUNDARIES)
        _choice(layout, "layout", _LAYOUTS)
        self.layout = layout
        if min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be positive, got {self.input_shape}")
        if min(self.filter_size) < 1:
            raise ValueError(f"filter_size must be positive, got {self.filter_size}")
        if min(self.stride) < 1:
            raise ValueError(f"stride must be positive, got {self.stride}")
        if self.channels < 1:
            raise ValueError(f"channels must be positive, got {self.channels}")
        for n, m in zip(self.input_shape, self.filter_size):
            if m > n and boundary in ("periodic", "valid"):
                raise ValueError(f"filter_size {self.filter_size} is larger than input_shape "
                                 f"{self.input_shape} (boundary {boundary!r}; 'same' pads)")
        self.padding = tuple((0, 0) for _ in self.input_shape)
        self.offsets = tuple(0 for _ in self.input_shape)
        if boundary == "periodic":
            self.grid_shape = tuple(n // s for n, s in zip(self.input_shape, self.stride))
        elif boundary in ("same", "circular"):
            sp = [same_padding(n, m, s) for n, m, s in zip(self.input_shape, self.filter_size,
                                                             self.stride)]
            self.grid_shape = tuple(o for o, _, _ in sp)
            self.offsets = tuple(-left for _, left, _ in sp)
            if boundary == "same":
                self.padding = tuple((left, right) for _, left, right in sp)
        else:
            self.grid_shape = tuple((n - m) // s + 1
                                    for n, m, s in zip(self.input_shape, self.filter_size, self.stride))
        if min(self.grid_shape) < 1:
            raise ValueError(f"stride {self.stride} leaves no patch in input_shape {self.input_shape}")
        self._index = None

    # -- sizes --------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """1 or 2: the spatial dimensions of the input."""
        return len(self.input_shape)

    @property
    def num_patches(self) -> int:
        """Np, the number of patches."""
        return math.prod(self.grid_shape)

    @property
    def patch_size(self) -> int:
        """M, the number of entries of one patch (filter sites times channels)."""
        return math.prod(self.filter_size) * self.channels

    @property
    def input_size(self) -> int:
        """N0, the length of one flattened input (sites times channels)."""
        return math.prod(self.input_shape) * self.channels

    def __repr__(self) -> str:
        return (f"PatchGeometry(input_shape={self.input_shape}, filter_size={self.filter_size}, "
                f"stride={self.stride}, channels={self.channels}, boundary={self.boundary!r}, "
                f"layout={self.layout!r})")

    def __eq__(self, other) -> bool:
        return isinstance(other, PatchGeometry) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self):
        return (self.input_shape, self.filter_size, self.stride, self.channels, self.boundary,
                self.layout)

    def to_dict(self) -> dict:
        """The constructor arguments, for saving alongside results."""
        return dict(input_shape=list(self.input_shape), filter_size=list(self.filter_size),
                    stride=list(self.stride), channels=self.channels, boundary=self.boundary,
                    layout=self.layout)

    @property
    def has_padding(self) -> bool:
        """True when some window reaches into zero padding (boundary ``same``)."""
        return any(lo or hi for lo, hi in self.padding)

    # -- indexing -----------------------------------------------------------------------
    def patch_index(self) -> np.ndarray:
        """Flat indices (Np, M) of each patch's entries in a channels-last flattened input.

        Row i lists the entries of patch i in (row, column, channel) order; entry k of patch
        i is ``x_flat[index[i, k]]`` where ``x_flat`` is the input flattened channels-last.
        A padded entry (boundary ``same``) has the index ``input_size``, one past the end:
        append a zero to ``x_flat`` (as :meth:`patches` does) and the lookup gives 0.
        """
        if self._index is None:
            axes, valid = [], []
            for n, m, s, g, o in zip(self.input_shape, self.filter_size, self.stride,
                                     self.grid_shape, self.offsets):
                pos = s * np.arange(g)[:, None] + np.arange(m)[None, :] + o  # (g, m)
                valid.append((pos >= 0) & (pos < n) if self.boundary == "same"
                             else np.ones(pos.shape, dtype=bool))
                axes.append(pos % n)
            C = self.channels
            if self.ndim == 1:
                (r,), (vr,) = axes, valid
                idx = r[:, :, None] * C + np.arange(C)  # (g, m, C)
                ok = np.broadcast_to(vr[:, :, None], idx.shape)
            else:
                r, c = axes
                vr, vc = valid
                W = self.input_shape[1]
                idx = ((r[:, None, :, None, None] * W + c[None, :, None, :, None]) * C
                       + np.arange(C))  # (gh, gw, mh, mw, C)
                ok = np.broadcast_to((vr[:, None, :, None, None] & vc[None, :, None, :, None]),
                                     idx.shape)
            idx = np.where(ok, idx, self.input_size)
            idx = idx.reshape(self.num_patches, self.patch_size).astype(np.intp)
            idx.setflags(write=False)
            self._index = idx
        return self._index

    def flatten(self, X, name: str = "X"):
        """Validate inputs and return them as (P, N0), flattened channels-last.

        Accepted shapes (P samples first): 1D ``(P, N0)`` or ``(P, N0, C)``
        (``(P, C, N0)`` for channels_first); 2D ``(P, H, W)`` for one channel, ``(P, H, W, C)``
        or ``(P, C, H, W)`` by layout; or already flat ``(P, prod(input_shape) * C)``.
        """
        xp = _arrays.array_module(X)
        shape = tuple(X.shape)
        spatial, C = self.input_shape, self.channels
        if X.ndim == 2 and shape[1] == self.input_size:
            if self.layout == "channels_first" and C > 1:
                # a flat channels-first input: (P, C * prod(spatial)) in (channel, site) order
                X = xp.moveaxis(X.reshape((shape[0], C) + spatial), 1, -1)
            return X.reshape(shape[0], self.input_size)
        if X.ndim == 1 + self.ndim and shape[1:] == spatial and C == 1:
            return X.reshape(shape[0], self.input_size)
        if X.ndim == 2 + self.ndim:
            if self.layout == "channels_last" and shape[1:] == spatial + (C,):
                return X.reshape(shape[0], self.input_size)
            if self.layout == "channels_first" and shape[1:] == (C,) + spatial:
                return xp.moveaxis(X, 1, -1).reshape(shape[0], self.input_size)
        want = {"flat": (self.input_size,)}
        if C == 1:
            want["spatial"] = spatial
        want[self.layout] = spatial + (C,) if self.layout == "channels_last" else (C,) + spatial
        options = " or ".join(f"(P, {', '.join(map(str, s))})" for s in want.values())
        raise ValueError(f"{name} has shape {shape}, which does not match {self!r}: expected "
                         f"{options}")

    def patches(self, X, name: str = "X"):
        """The patch tensor (P, Np, M) of inputs X (see :func:`patches`)."""
        X = _arrays.asarray(X, name)
        _arrays.check_floating(X, name)
        flat = self.flatten(X, name)
        xp = _arrays.array_module(flat)
        if flat.dtype.kind != "f":  # integers and booleans compute in float64
            flat = flat.astype(np.float64)
        index = self.patch_index()
        if xp is not np:
            index = xp.asarray(index)
        if self.has_padding:  # padded entries read the appended zero column
            flat = xp.concatenate([flat, xp.zeros((flat.shape[0], 1), dtype=flat.dtype)], axis=1)
        return flat[:, index]

    def patches_adjoint(self, G, name: str = "G"):
        """The adjoint of :meth:`patches`: scatter-add patch values back onto the input.

        ``out[mu, n] = sum over (i, k) with index[i, k] == n of G[mu, i, k]``, so that
        ``sum(G * patches(X)) == sum(patches_adjoint(G) * flatten(X))`` for every X; padded
        entries are dropped. This is the backward pass of patch extraction (gradients of a
        convolution with respect to its input).

        Parameters
        ----------
        G : array, shape (P, Np, M)

        Returns
        -------
        array, shape (P, input_size), flattened channels-last (see :meth:`flatten`).
        """
        G = _arrays.asarray(G, name)
        _arrays.check_floating(G, name)
        if G.ndim != 3 or G.shape[1:] != (self.num_patches, self.patch_size):
            raise ValueError(f"{name} must have shape (P, {self.num_patches}, {self.patch_size}) "
                             f"for {self!r}, got {tuple(G.shape)}")
        xp = _arrays.array_module(G)
        dtype = G.dtype if G.dtype.kind == "f" else np.float64
        index = self.patch_index()
        if xp is not np:
            index = xp.asarray(index)
        out = xp.zeros((G.shape[0], self.input_size + 1), dtype=dtype)
        # For a fixed entry k the windows' sites are distinct (the strides of the windows
        # along an axis are distinct modulo N), so one fancy-indexed += per k is exact; only
        # the padding column repeats, and it is dropped.
        for k in range(self.patch_size):
            out[:, index[:, k]] += G[:, :, k]
        return out[:, :self.input_size]


def patches(X, geometry: PatchGeometry):
    """Cut inputs into patches.

    Parameters
    ----------
    X : array_like
        Inputs, samples first, in any shape :meth:`PatchGeometry.flatten` accepts.
    geometry : PatchGeometry

    Returns
    -------
    ndarray, shape (P, Np, M)
        ``out[mu, i]`` is patch i of sample mu, entries in (row, column, channel) order.
        Same array library and floating dtype as X (integers become float64).
    """
    if not isinstance(geometry, PatchGeometry):
        raise TypeError(f"geometry must be a PatchGeometry, got {type(geometry).__name__}")
    return geometry.patches(X)


def patches_adjoint(G, geometry: PatchGeometry):
    """The adjoint of :func:`patches`: (P, Np, M) -> (P, input_size), scatter-added.

    See :meth:`PatchGeometry.patches_adjoint`.
    """
    if not isinstance(geometry, PatchGeometry):
        raise TypeError(f"geometry must be a PatchGeometry, got {type(geometry).__name__}")
    return geometry.patches_adjoint(G)
