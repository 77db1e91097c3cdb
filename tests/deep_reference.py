"""A plain NumPy recursion of the deep-CNN kernel (docs/deep-cnn.md section 4): windows
built by hand per axis, gather matrices S_t, all position pairs of every layer; and the
hypothesis strategy of deep geometries. Shared by the deep kernel, net and theory tests. Also a
second recursion on the diagonal pairs only (the flatten readout's pair plan) and the stored
kernel of the theories."""
import math

import numpy as np
from hypothesis import strategies as st
from reference import np_same_pads, ref_map, ref_padded_patches, ref_patches

import lkr
from lkr.deep_geometry import DeepGeometry


def axis_windows(n, m, s, padding):
    """Per output site, the input sites of its window along one axis (-1: zero padding)."""
    if padding == "valid":
        out, off = (n - m) // s + 1, 0
    elif padding == "periodic":
        out, off = n // s, 0
    else:
        out, left, _ = np_same_pads(n, m, s)
        off = -left
    wins = []
    for i in range(out):
        pos = [s * i + off + t for t in range(m)]
        if padding == "same":
            pos = [p if 0 <= p < n else -1 for p in pos]
        else:
            pos = [p % n for p in pos]
        wins.append(pos)
    return wins


def gather_matrices(shape, filt, stride, padding):
    """S_t (n_out, n_in), one per window offset t (row-major grids): S_t[p, w_p(t)] = 1."""
    axes = [axis_windows(n, m, s, padding) for n, m, s in zip(shape, filt, stride)]
    n_in = math.prod(shape)
    if len(shape) == 1:
        wins = [[w] for w in axes[0]]
        flat = lambda ps: ps[0]  # noqa: E731
    else:
        wins = [[r, c] for r in axes[0] for c in axes[1]]
        flat = lambda ps: -1 if min(ps) < 0 else ps[0] * shape[1] + ps[1]  # noqa: E731
    offsets = [(t,) for t in range(filt[0])] if len(shape) == 1 else \
        [(a, b) for a in range(filt[0]) for b in range(filt[1])]
    S = np.zeros((len(offsets), len(wins), n_in))
    for ti, t in enumerate(offsets):
        for p, w in enumerate(wins):
            j = flat([w[ax][t[ax]] for ax in range(len(shape))])
            if j >= 0:
                S[ti, p, j] = 1.0
    grid = tuple(len(a) for a in axes)
    return S, grid


def layer1_patches(Xc, shape, filt, stride, padding):
    if padding in ("same", "circular"):
        return ref_padded_patches(Xc, filt, stride, padding)
    return ref_patches(Xc, shape, filt, stride, Xc.shape[-1], padding)


def ref_deep(Xc, Yc, shape, filts, strides, pads, act, lams, with_variances=False):
    """K_L (P, P', d, d) by the recursion on all position pairs of the stacked samples;
    with ``with_variances`` also the last layer's pre-activation variances C_L,ii^{mu mu}
    (P, d) of X."""
    Z = np.concatenate([Xc, Yc]) if Yc is not None else Xc
    Z = Z.astype(np.float64)
    PZ = layer1_patches(Z, shape, filts[0], strides[0], pads[0])
    M = PZ.shape[2]
    C = np.einsum("apm,bqm->abpq", PZ, PZ) / (lams[0] * M)
    _, grid = gather_matrices(shape, filts[0], strides[0], pads[0])
    for layer in range(len(filts)):
        v = np.einsum("aapp->ap", C)
        K = ref_map(act, v[:, None, :, None], C, v[None, :, None, :])
        if layer + 1 == len(filts):
            break
        S, grid = gather_matrices(grid, filts[layer + 1], strides[layer + 1], pads[layer + 1])
        C = np.einsum("tpi,abij,tqj->abpq", S, K, S) / (S.shape[0] * lams[layer + 1])
    P = Xc.shape[0]
    K = K if Yc is None else K[:P, P:]
    return (K, v[:P]) if with_variances else K


def ref_deep_diagonal(Xc, Yc, shape, filts, strides, pads, act, lams):
    """diag K_L (P, P', d): the recursion on the diagonal pairs (p, p) only, which read only
    diagonal pairs below (same offset on both sides): the flatten readout's O(positions)."""
    Z = np.concatenate([Xc, Yc]) if Yc is not None else Xc
    Z = Z.astype(np.float64)
    PZ = layer1_patches(Z, shape, filts[0], strides[0], pads[0])
    M = PZ.shape[2]
    C = np.einsum("apm,bpm->abp", PZ, PZ) / (lams[0] * M)
    _, grid = gather_matrices(shape, filts[0], strides[0], pads[0])
    for layer in range(len(filts)):
        v = np.einsum("aap->ap", C)
        K = ref_map(act, v[:, None, :], C, v[None, :, :])
        if layer + 1 == len(filts):
            break
        S, grid = gather_matrices(grid, filts[layer + 1], strides[layer + 1], pads[layer + 1])
        C = np.einsum("tpi,abi->abp", S, K) / (S.shape[0] * lams[layer + 1])
    P = Xc.shape[0]
    return K if Yc is None else K[:P, P:]


def ref_pack(K):
    """The stored kernel of K (P, P, d, d): rows mu <= nu, columns i <= j (triu order),
    K_ij + K_ji off the patch diagonal, K_ii on it."""
    P, d = K.shape[0], K.shape[2]
    mu, nu = np.triu_indices(P)
    i, j = np.triu_indices(d)
    V = K[mu, nu][:, i, j] + K[mu, nu][:, j, i]
    V[:, i == j] /= 2
    return V


def canonical(rng, dg, P, dtype=np.float64):
    return rng.standard_normal((P,) + dg.input_shape + (dg.channels,)).astype(dtype)


def given_form(Xc, dg):
    return Xc if dg.layout == "channels_last" else np.ascontiguousarray(np.moveaxis(Xc, -1, 1))


@st.composite
def deep_geometries(draw, max_depth=3, min_depth=2):
    ndim = draw(st.sampled_from([1, 2]))
    depth = draw(st.integers(min_depth, max_depth))
    shape = tuple(draw(st.integers(3, 12 if ndim == 1 else 7)) for _ in range(ndim))
    filts, strides, pads = [], [], []
    grid = shape
    for _ in range(depth):
        pad = draw(st.sampled_from(["valid", "same", "circular", "periodic"]))
        f = tuple(draw(st.integers(1, max(1, min(3, n) if pad in ("valid", "periodic") else 3)))
                  for n in grid)
        s = tuple(draw(st.integers(1, min(2, n))) for n in grid)
        g = lkr.PatchGeometry(grid, f, s, boundary=pad)
        filts.append(f), strides.append(s), pads.append(pad)
        grid = g.grid_shape
    channels = draw(st.integers(1, 2))
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    return DeepGeometry(shape, filts, strides, pads, channels=channels, layout=layout)


def ref_for(dg, Xc, Yc, act, lams, with_variances=False):
    return ref_deep(Xc, Yc, dg.input_shape, dg.filter_sizes, dg.strides, dg.paddings, act, lams,
                    with_variances)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) if b.size else 0.0


