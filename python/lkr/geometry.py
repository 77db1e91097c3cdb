"""Patch geometry: how an input is cut into the patches x_i that the local kernel compares.

A 1D input of N0 sites (times ``channels``) or a 2D input of H x W pixels (times
``channels``) is cut into patches of ``filter_size`` sites, ``stride`` apart. Boundaries are
explicit:

``periodic``
    indices wrap around; Np = floor(N0 / S) patches per axis.
``valid``
    no wrap; Np = floor((N0 - m) / S) + 1 patches per axis.

Patch i of a 1D input is x[S i : S i + m] (mod N0 when periodic). In 2D, patch (a, b) of
the patch grid has index i = a * n_w + b (row-major) and its M = m_h m_w C entries are
ordered (row, column, channel).
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from . import backend
from ._validate import choice as _choice
from ._validate import integer as _integer

__all__ = ["PatchGeometry", "patches"]

_BOUNDARIES = ("periodic", "valid")
_LAYOUTS = ("channels_last", "channels_first")


def _as_tuple(value, ndim: int, name: str) -> Tuple[int, ...]:
    if np.ndim(value) == 0:
        value = (value,) * ndim
    value = tuple(value)
    if len(value) != ndim:
        raise ValueError(f"{name} must have {ndim} entries for a {ndim}-D input, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
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
    boundary : {"periodic", "valid"}
        ``periodic`` wraps indices (Np = floor(N / S) per axis); ``valid`` keeps only
        patches inside the input (Np = floor((N - m) / S) + 1 per axis).
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
            if m > n:
                raise ValueError(f"filter_size {self.filter_size} is larger than input_shape "
                                 f"{self.input_shape}")
        if boundary == "periodic":
            self.grid_shape = tuple(n // s for n, s in zip(self.input_shape, self.stride))
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

    # -- indexing -----------------------------------------------------------------------
    def patch_index(self) -> np.ndarray:
        """Flat indices (Np, M) of each patch's entries in a channels-last flattened input.

        Row i lists the entries of patch i in (row, column, channel) order; entry k of patch
        i is ``x_flat[index[i, k]]`` where ``x_flat`` is the input flattened channels-last.
        """
        if self._index is None:
            axes = []
            for n, m, s, g in zip(self.input_shape, self.filter_size, self.stride, self.grid_shape):
                pos = s * np.arange(g)[:, None] + np.arange(m)[None, :]  # (g, m)
                axes.append(pos % n)
            C = self.channels
            if self.ndim == 1:
                (r,) = axes
                idx = r[:, :, None] * C + np.arange(C)  # (g, m, C)
            else:
                r, c = axes
                W = self.input_shape[1]
                idx = ((r[:, None, :, None, None] * W + c[None, :, None, :, None]) * C
                       + np.arange(C))  # (gh, gw, mh, mw, C)
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
        xp = backend.array_module(X)
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
        X = backend.asarray(X, name)
        backend.check_floating(X, name)
        flat = self.flatten(X, name)
        xp = backend.array_module(flat)
        if flat.dtype.kind != "f":  # integers and booleans compute in float64
            flat = flat.astype(np.float64)
        index = self.patch_index()
        if xp is not np:
            index = xp.asarray(index)
        return flat[:, index]


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
