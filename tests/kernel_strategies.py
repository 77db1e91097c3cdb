"""Hypothesis strategies for the geometry and kernel tests: small random patch geometries
and inputs in every shape lkr accepts (kept small: each example must run in milliseconds)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from lkr.geometry import PatchGeometry


@st.composite
def geometries(draw, max_patches=None):
    """A random 1D or 2D PatchGeometry (periodic or valid, channels, strides, layouts)."""
    ndim = draw(st.sampled_from([1, 2]))
    boundary = draw(st.sampled_from(["periodic", "valid"]))
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    channels = draw(st.integers(1, 3))
    if ndim == 1:
        n = draw(st.integers(1, 14))
        shape = (n,)
    else:
        shape = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    filt = tuple(draw(st.integers(1, n)) for n in shape)
    # strides from 1 to past the filter (gaps between patches), within the input
    stride = tuple(draw(st.integers(1, max(1, min(n, m + 2)))) for n, m in zip(shape, filt))
    g = PatchGeometry(shape, filt, stride, channels=channels, boundary=boundary, layout=layout)
    if max_patches is not None and g.num_patches > max_patches:
        # fall back to non-overlapping patches, which keeps Np <= prod(shape) / prod(filt)
        g = PatchGeometry(shape, shape, shape, channels=channels, boundary=boundary, layout=layout)
    return g


def canonical(rng, g, P, dtype):
    """(P, *input_shape, C) channels-last values: standard normal, or small integers."""
    shape = (P,) + g.input_shape + (g.channels,)
    if np.dtype(dtype).kind == "i":
        return rng.integers(-3, 4, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def present(Xc, g, form):
    """The canonical array in one of the accepted input forms.

    natural: (P, ..., C) or (P, C, ...) by layout; flat: (P, N0) in the layout's order;
    spatial: (P, ...) when C == 1 (else natural); strided: natural, but a non-contiguous
    view into a larger buffer.
    """
    P = Xc.shape[0]
    natural = Xc if g.layout == "channels_last" else np.moveaxis(Xc, -1, 1)
    if form == "natural":
        return np.ascontiguousarray(natural)
    if form == "flat":
        return np.ascontiguousarray(natural).reshape(P, -1)
    if form == "spatial":
        return Xc[..., 0].copy() if g.channels == 1 else np.ascontiguousarray(natural)
    if form == "strided":
        big = np.zeros(natural.shape[:-1] + (2 * natural.shape[-1],), dtype=natural.dtype)
        big[..., ::2] = natural
        view = big[..., ::2]
        assert not view.flags.c_contiguous or view.size <= 1 or natural.shape[-1] == 1
        return view
    raise ValueError(form)


def make_inputs(rng, g, P, form="natural", dtype="float64"):
    """(X as given to lkr, canonical channels-last array)."""
    Xc = canonical(rng, g, P, dtype)
    return present(Xc, g, form), Xc


def random_symmetric(rng, n, psd=False):
    A = rng.standard_normal((n, n))
    if psd:
        return A @ A.T / n + 0.1 * np.eye(n)
    return (A + A.T) / 2
