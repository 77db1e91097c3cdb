"""docs/theory.md oracles 1, 3 and 4, the adjoint identity, DLPack intake and thread-count
independence of the compiled kernels."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import geometries, make_inputs, random_symmetric
from reference import monte_carlo_map, ref_map

import lkr

ACTS = ["linear", "erf", "relu"]


# -- oracle 1: the NNGP maps ----------------------------------------------------------------

def gram_inputs(cxx, cxy, cyy):
    """Two inputs in R^2 whose FC covariances (lambda0 = 1, N0 = 2) are the given ones."""
    return np.linalg.cholesky(2 * np.array([[cxx, cxy], [cxy, cyy]]))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("cov", [(1.0, 0.3, 0.5), (0.4, -0.35, 2.0), (2.5, 2.4, 2.5), (0.7, 0.0, 1.3)])
def test_maps_against_monte_carlo(act, cov):
    cxx, cxy, cyy = cov
    mc, se = monte_carlo_map(act, cxx, cxy, cyy, n=400_000, seed=12345)
    tol = 5 * se + 1e-3 * abs(mc)
    assert abs(float(lkr.nngp_map(act, cxx, cxy, cyy)) - mc) < tol
    assert abs(float(ref_map(act, cxx, cxy, cyy)) - mc) < tol
    compiled = lkr.nngp(gram_inputs(cxx, cxy, cyy), activation=act)  # C++ map, off-diagonal entry
    assert abs(compiled[0, 1] - mc) < tol


DIAG = {
    "erf": lambda c: (2 / np.pi) * np.arcsin(2 * c / (1 + 2 * c)),
    "relu": lambda c: c / 2,
    "linear": lambda c: c,
}


@pytest.mark.parametrize("act", ACTS)
def test_diagonal_identities(act):
    c = np.array([1e-3, 0.1, 0.5, 1.0, 3.0, 40.0])
    want = DIAG[act](c)
    np.testing.assert_allclose(lkr.nngp_map(act, c, c, c), want, rtol=1e-14)
    # compiled FC map: inputs with |x|^2 / N0 = c
    X = np.sqrt(c)[:, None] * np.ones((1, 4))
    np.testing.assert_allclose(np.diag(lkr.nngp(X, activation=act)), want, rtol=1e-13)
    # compiled local kernel: K_ii^{mu mu} with C_ii^{mu mu} = c for every patch
    g = lkr.PatchGeometry((6,), 2, 2)
    K = lkr.local_kernel(np.sqrt(c)[:, None] * np.ones((1, 6)), geometry=g, activation=act)
    diag = np.einsum("mmii->mi", K)
    np.testing.assert_allclose(diag, np.repeat(want[:, None], 3, axis=1), rtol=1e-13)


def test_relu_map_zero_variance_and_clipping():
    assert lkr.nngp_map("relu", 0.0, 0.0, 1.0) == 0
    # |c_xy| > sqrt(c_xx c_yy) by rounding: clipped to u = 1, i.e. sqrt(c_xx c_yy) / 2
    np.testing.assert_allclose(lkr.nngp_map("relu", 1.0, 1.0 + 1e-15, 1.0), 0.5, rtol=1e-14)
    X = np.zeros((2, 4))
    X[1] = 1.0
    np.testing.assert_array_equal(lkr.nngp(X, activation="relu")[0], 0.0)


# -- oracle 3: symmetry and positive semi-definiteness ----------------------------------------

@given(geometries(max_patches=12), st.integers(1, 5), st.sampled_from(["erf", "relu", "linear"]),
       st.integers(0, 2**31 - 1))
def test_symmetry_and_psd(g, P, act, seed):
    rng = np.random.default_rng(seed)
    X, _ = make_inputs(rng, g, P)
    K = lkr.local_kernel(X, geometry=g, activation=act)
    Np = g.num_patches
    np.testing.assert_array_equal(K, K.transpose(1, 0, 3, 2))  # K_ij^{mu nu} = K_ji^{nu mu}
    block = K.transpose(0, 2, 1, 3).reshape(P * Np, P * Np)  # rows (mu, i), columns (nu, j)
    scale = max(np.abs(block).max(), 1e-300)
    assert np.linalg.eigvalsh(block).min() >= -1e-12 * scale * P * Np
    Q = random_symmetric(rng, Np, psd=True)
    KR = lkr.renormalized_kernel(X, Q=Q, geometry=g, activation=act)
    assert np.linalg.eigvalsh(KR).min() >= -1e-12 * max(np.abs(KR).max(), 1e-300) * P


def test_psd_fails_for_indefinite_q():
    """The PSD test above can fail: an indefinite Q gives an indefinite K_R."""
    rng = np.random.default_rng(3)
    g = lkr.PatchGeometry((8,), 2, 2)
    X = rng.standard_normal((6, 8))
    KR = lkr.renormalized_kernel(X, Q=-np.eye(4), geometry=g, activation="erf")
    assert np.linalg.eigvalsh(KR).max() < 0


# -- oracle 4: linear tiling equals the FC linear kernel --------------------------------------

@pytest.mark.parametrize("shape, m, s, C, boundary", [
    ((12,), 4, 4, 1, "periodic"), ((12,), 4, 2, 2, "periodic"), ((12,), 3, 3, 1, "valid"),
    ((6, 8), (2, 4), (2, 4), 3, "valid"), ((6, 8), (3, 4), (1, 2), 1, "periodic"),
])
@pytest.mark.parametrize("lambdas", [(1.0, 1.0), (0.5, 3.0)])
def test_linear_identity_tiling_equals_fc(shape, m, s, C, boundary, lambdas):
    l0, l1 = lambdas
    g = lkr.PatchGeometry(shape, m, s, channels=C, boundary=boundary)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((7, g.input_size))
    Y = rng.standard_normal((3, g.input_size))
    fc = X @ Y.T / (l0 * l1 * g.input_size)
    KR = lkr.renormalized_kernel(X, Y, Q=np.eye(g.num_patches), geometry=g, activation="linear",
                                 lambda0=l0, lambda1=l1)
    np.testing.assert_allclose(KR, fc, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lkr.nngp(X, Y, activation="linear", lambda0=l0) / l1, fc, rtol=1e-12)


def test_linear_identity_fails_when_valid_edges_drop_entries():
    g = lkr.PatchGeometry((10,), 4, 4, boundary="valid")  # covers sites 0..7, drops 8 and 9
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 10))
    KR = lkr.renormalized_kernel(X, Q=np.eye(g.num_patches), geometry=g, activation="linear")
    fc = X @ X.T / 10
    assert not np.allclose(KR, fc, rtol=1e-3)
    # what it equals instead: the FC kernel of the covered sites, renormalised by Np M
    np.testing.assert_allclose(KR, X[:, :8] @ X[:, :8].T / 8, rtol=1e-12)


# -- the adjoint identity ----------------------------------------------------------------------

@given(geometries(max_patches=16), st.integers(1, 5), st.integers(1, 4), st.booleans(),
       st.sampled_from(["erf", "relu", "linear"]), st.sampled_from([0.5, 1.0, 2.0]),
       st.sampled_from([0.7, 1.0, 4.0]), st.integers(0, 2**31 - 1))
def test_adjoint_identity(g, P, P2, cross, act, l0, l1, seed):
    """sum W * K_R(Q) = (1 / (lambda1 Np)) sum Q * G(W), to rounding."""
    rng = np.random.default_rng(seed)
    X, _ = make_inputs(rng, g, P)
    Y = make_inputs(rng, g, P2)[0] if cross else None
    W = rng.standard_normal((P, P2 if cross else P))
    Q = random_symmetric(rng, g.num_patches)
    KR = lkr.renormalized_kernel(X, Y, Q=Q, geometry=g, activation=act, lambda0=l0, lambda1=l1)
    G = lkr.local_kernel_adjoint(X, W, geometry=g, Y=Y, activation=act, lambda0=l0)
    lhs = np.sum(W * KR)
    rhs = np.sum(Q * G) / (l1 * g.num_patches)
    scale = np.sum(np.abs(W) * np.abs(KR)) + np.sum(np.abs(Q) * np.abs(G)) / (l1 * g.num_patches)
    assert abs(lhs - rhs) <= 1e-12 * scale + 1e-300


# -- DLPack intake ----------------------------------------------------------------------------

def test_torch_cpu_tensor_through_dlpack():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    g = lkr.PatchGeometry((12,), 3, 3)
    Xn = rng.standard_normal((5, 12))
    Xt = torch.from_numpy(Xn.copy())
    Q = np.eye(4)
    # no copy on the way in: the NumPy view shares the tensor's memory
    from lkr import backend
    assert np.shares_memory(backend.asarray(Xt), Xt.numpy())
    out = lkr.renormalized_kernel(Xt, Q=Q, geometry=g)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), lkr.renormalized_kernel(Xn, Q=Q, geometry=g), rtol=0, atol=0)
    np.testing.assert_array_equal(lkr.patches(Xt, g), lkr.patches(Xn, g))
    # a tensor that requires grad is read through a copy, not refused
    Xg = torch.from_numpy(Xn.copy()).requires_grad_(True)
    np.testing.assert_array_equal(np.asarray(lkr.nngp(Xg)), lkr.nngp(Xn))
    # float32 stays float32
    assert lkr.nngp(torch.from_numpy(Xn.astype(np.float32))).dtype == torch.float32


# -- threads -----------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ["erf", "relu"])
def test_results_identical_across_thread_counts(act):
    rng = np.random.default_rng(7)
    g = lkr.PatchGeometry((16,), 4, 2)
    X = rng.standard_normal((130, 16))
    Y = rng.standard_normal((40, 16))
    Q = random_symmetric(rng, g.num_patches)
    W = rng.standard_normal((130, 130))
    W = W + W.T
    before = lkr.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3, 0):
            lkr.set_num_threads(n)
            assert lkr.get_num_threads() == n
            results.append([
                lkr.renormalized_kernel(X, Q=Q, geometry=g, activation=act),
                lkr.renormalized_kernel(X, Y, Q=Q, geometry=g, activation=act),
                lkr.renormalized_kernel_diag(X, Q=Q, geometry=g, activation=act),
                lkr.local_kernel_adjoint(X, W, geometry=g, activation=act),
                lkr.local_kernel_adjoint(X, W[:, :40], geometry=g, Y=Y, activation=act),
                lkr.local_kernel(X[:20], Y[:10], geometry=g, activation=act),
                lkr.nngp(X, Y, activation=act),
            ])
    finally:
        lkr.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_set_num_threads_validates():
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="non-negative integer"):
            lkr.set_num_threads(bad)
