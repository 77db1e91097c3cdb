"""PatchGeometry's "same" (zero) and "circular" boundaries against numpy.pad + sliding
windows, the TensorFlow/PyTorch "same" convention, neural-tangents' CIRCULAR offset, and
the adjoint of patch extraction."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import present
from reference import np_same_pads, ref_padded_patches

import lkr
from lkr.geometry import PatchGeometry, same_padding


@st.composite
def padded_geometries(draw):
    ndim = draw(st.sampled_from([1, 2]))
    boundary = draw(st.sampled_from(["same", "circular"]))
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    channels = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 9 if ndim == 1 else 6)) for _ in range(ndim))
    # filters may be larger than the input with padding
    filt = tuple(draw(st.integers(1, n + 3)) for n in shape)
    stride = tuple(draw(st.integers(1, 4)) for _ in shape)
    return PatchGeometry(shape, filt, stride, channels=channels, boundary=boundary, layout=layout)


@given(padded_geometries(), st.integers(1, 3), st.sampled_from(["natural", "flat"]),
       st.sampled_from(["float64", "float32"]), st.integers(0, 2**31 - 1))
def test_padded_patches_match_numpy_pad(g, P, form, dtype, seed):
    rng = np.random.default_rng(seed)
    Xc = rng.standard_normal((P,) + g.input_shape + (g.channels,)).astype(dtype)
    got = lkr.patches(present(Xc, g, form), g)
    want = ref_padded_patches(Xc, g.filter_size, g.stride, g.boundary)
    assert got.shape == want.shape == (P, g.num_patches, g.patch_size)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)


@given(padded_geometries())
def test_padded_sizes(g):
    for n, m, s, k, (lo, hi), o in zip(g.input_shape, g.filter_size, g.stride, g.grid_shape,
                                       g.padding, g.offsets):
        out, left, right = np_same_pads(n, m, s)
        assert k == out == same_padding(n, m, s)[0]
        assert o == -left
        assert (lo, hi) == ((left, right) if g.boundary == "same" else (0, 0))
    assert PatchGeometry(**g.to_dict()) == g


@pytest.mark.parametrize("n, m, s, want", [
    (5, 3, 2, (3, 1, 1)),   # odd total: split evenly
    (4, 3, 2, (2, 0, 1)),   # total 1: the extra on the right
    (6, 4, 1, (6, 1, 2)),   # even filter, stride 1: total 3, left 1, right 2
    (7, 2, 3, (3, 0, 1)),
    (28, 5, 2, (14, 1, 2)),
    (14, 3, 2, (7, 0, 1)),
    (3, 1, 2, (2, 0, 0)),   # no padding needed
])
def test_same_convention_odd_and_even_totals(n, m, s, want):
    assert same_padding(n, m, s) == want
    g = PatchGeometry((n,), m, s, boundary="same")
    assert g.grid_shape == (want[0],) and g.padding == ((want[1], want[2]),)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_matches_torch_conv():
    """PyTorch's padding='same' (stride 1) puts the extra zero on the right, as lkr does."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for n, m in ((7, 4), (6, 3), (5, 2)):
        X = rng.standard_normal((2, n))
        w = rng.standard_normal(m)
        g = PatchGeometry((n,), m, 1, boundary="same")
        ours = lkr.patches(X, g) @ w
        theirs = torch.nn.functional.conv1d(torch.tensor(X)[:, None], torch.tensor(w)[None, None],
                                            padding="same")[:, 0].numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_same_example_by_hand():
    X = np.arange(1.0, 6.0)[None]  # [1 2 3 4 5], filter 3, stride 2: pad 1 each side
    P = lkr.patches(X, PatchGeometry((5,), 3, 2, boundary="same"))
    np.testing.assert_array_equal(P[0], [[0, 1, 2], [2, 3, 4], [4, 5, 0]])
    # total 1 (n = 4): nothing on the left, one zero on the right
    P = lkr.patches(np.arange(1.0, 5.0)[None], PatchGeometry((4,), 3, 2, boundary="same"))
    np.testing.assert_array_equal(P[0], [[1, 2, 3], [3, 4, 0]])


def test_circular_is_neural_tangents_offset():
    """neural-tangents' CIRCULAR: window i starts at S i - left (left of "same") and wraps,
    while lkr's "periodic" starts it at S i."""
    n, m, s = 7, 4, 2
    X = np.arange(n, dtype=float)[None]
    out, left, _ = np_same_pads(n, m, s)
    want = np.array([[(s * i - left + t) % n for t in range(m)] for i in range(out)], float)
    np.testing.assert_array_equal(lkr.patches(X, PatchGeometry((n,), m, s, boundary="circular"))[0],
                                  want)
    per = lkr.patches(X, PatchGeometry((n,), m, s, boundary="periodic"))[0]
    np.testing.assert_array_equal(per, [[(s * i + t) % n for t in range(m)] for i in range(n // s)])


def test_patch_index_marks_padding_past_the_end():
    g = PatchGeometry((3, 3), (3, 3), (1, 1), channels=2, boundary="same")
    idx = g.patch_index()
    assert idx.max() == g.input_size  # the padding sentinel
    assert (idx[4] < g.input_size).all()  # the centre window has no padding


@given(st.one_of(padded_geometries(), st.builds(
    PatchGeometry, st.just((7,)), st.integers(1, 7), st.integers(1, 3),
    boundary=st.sampled_from(["periodic", "valid"]))), st.integers(0, 2**31 - 1))
def test_patches_adjoint_identity(g, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2, g.input_size))
    G = rng.standard_normal((2, g.num_patches, g.patch_size))
    Xflat = X if g.layout == "channels_last" else g.flatten(X)
    lhs = float(np.sum(G * lkr.patches(X, g)))
    rhs = float(np.sum(lkr.patches_adjoint(G, g) * Xflat))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_patches_adjoint_validates():
    g = PatchGeometry((5,), 3, 2, boundary="same")
    with pytest.raises(ValueError, match=r"G must have shape \(P, 3, 3\)"):
        lkr.patches_adjoint(np.zeros((2, 3, 2)), g)
    with pytest.raises(TypeError, match="geometry must be a PatchGeometry"):
        lkr.patches_adjoint(np.zeros((2, 3, 3)), "g")


def test_filter_larger_than_input_needs_padding():
    with pytest.raises(ValueError, match="larger than input_shape"):
        PatchGeometry((3,), 5, 1, boundary="valid")
    assert PatchGeometry((3,), 5, 1, boundary="same").num_patches == 3
    assert PatchGeometry((3,), 5, 1, boundary="circular").num_patches == 3


@pytest.mark.parametrize("act", ["erf", "relu", "linear"])
def test_kernels_accept_padding_and_zero_windows_are_finite(act):
    """All-zero windows (here: all-zero inputs, and padding) give zero variance: every map
    returns its limit 0, never NaN, in the C++ kernels and the Python maps."""
    for boundary in ("same", "circular"):
        g = PatchGeometry((5, 4), (3, 2), (2, 2), boundary=boundary)
        X = np.zeros((3, 5, 4))
        X[0, :2, :2] = 1.0  # sample 0 has some non-zero windows
        K = lkr.local_kernel(X, geometry=g, activation=act)
        assert np.isfinite(K).all()
        assert np.all(K[1:] == 0) and np.all(K[:, 1:] == 0)
        KR = lkr.renormalized_kernel(X, Q=np.eye(g.num_patches), geometry=g, activation=act)
        assert np.isfinite(KR).all() and KR[1, 1] == 0
    z = np.zeros(3)
    for a in ("erf", "relu", "linear"):
        assert np.all(lkr.nngp_map(a, z, z, z) == 0)


@given(padded_geometries(), st.sampled_from(["erf", "relu", "linear"]),
       st.sampled_from(["float64", "float32"]), st.integers(0, 2**31 - 1))
def test_one_layer_kernels_with_padding_match_reference(g, act, dtype, seed):
    """The one-layer kernels (C++) on padded geometries against the reference tensor built
    from numpy.pad patches."""
    from reference import ref_local_kernel

    rng = np.random.default_rng(seed)
    Xc = rng.standard_normal((3,) + g.input_shape + (g.channels,)).astype(dtype)
    X = present(Xc, g, "natural")
    want = ref_local_kernel(ref_padded_patches(Xc, g.filter_size, g.stride, g.boundary),
                            activation=act, lambda0=0.8)
    tol = 1e-11 if dtype == "float64" else 1e-5
    scale = max(np.abs(want).max(), 1e-300)
    K = lkr.local_kernel(X, geometry=g, activation=act, lambda0=0.8)
    assert np.abs(K - want).max() <= tol * scale
    Np = g.num_patches
    Q = rng.standard_normal((Np, Np))
    Q = ((Q + Q.T) / 2).astype(dtype)
    KR = lkr.renormalized_kernel(X, Q=Q, geometry=g, activation=act, lambda0=0.8, lambda1=1.3)
    want_R = np.einsum("ij,abij->ab", Q.astype(np.float64), want) / (1.3 * Np)
    assert np.abs(KR - want_R).max() <= tol * max(np.abs(want_R).max(), 1e-300) * 10
