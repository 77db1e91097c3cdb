"""Multi-output and non-central local-kernel contractions (lkr.kernels_multi) against plain
NumPy references built on the materialised tensor, by hypothesis; plus the adjoint
identity, D = 1 against the scalar kernels, and the stored-kernel products."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_strategies import geometries, make_inputs
from reference import assert_close, geometry_patches, ref_bound, ref_local_kernel
from testing import RTOL

import lkr
from lkr import backend
from lkr.kernels_multi import local_kernel_adjoint_multi, patch_mean, renormalized_kernel_multi

ACTS = st.sampled_from(["erf", "relu", "linear"])


def ref_mean(PX, activation, lambda0):
    PX = np.asarray(PX, dtype=np.float64)
    c = np.einsum("pik,pik->pi", PX, PX) / (lambda0 * PX.shape[2])
    return np.sqrt(c / (2 * np.pi)) if activation == "relu" else np.zeros_like(c)


def ref_kr_multi(PX, PY, Q, Qm, D, act, lambda0, lambda1):
    """(value, error scale) of K_R[(mu a), (nu b)] from the 4-index tensor."""
    K = ref_local_kernel(PX, PY, act, lambda0)
    Bd = ref_bound(PX, PY, act, lambda0)
    Np = K.shape[2]
    Q4 = np.asarray(Q, float).reshape(Np, D, Np, D)
    val = np.einsum("mnij,iajb->manb", K, Q4)
    scale = np.einsum("mnij,iajb->manb", Bd, np.abs(Q4))
    if Qm is not None:
        m = ref_mean(PX, act, lambda0)
        m2 = m if PY is None else ref_mean(PY, act, lambda0)
        Qm4 = np.asarray(Qm, float).reshape(Np, D, Np, D)
        val = val + np.einsum("mi,iajb,nj->manb", m, Qm4, m2)
        scale = scale + np.einsum("mi,iajb,nj->manb", m, np.abs(Qm4), m2)
    P, P2 = K.shape[:2]
    f = 1.0 / (lambda1 * Np)
    return (val * f).reshape(P * D, P2 * D), (scale * f).reshape(P * D, P2 * D)


def ref_adjoint_multi(PX, PY, W, D, act, lambda0):
    K = ref_local_kernel(PX, PY, act, lambda0)
    Bd = ref_bound(PX, PY, act, lambda0)
    P, P2, Np = K.shape[:3]
    W4 = np.asarray(W, float).reshape(P, D, P2, D)
    G = np.einsum("mnij,manb->iajb", K, W4).reshape(Np * D, Np * D)
    scale = np.einsum("mnij,manb->iajb", Bd, np.abs(W4)).reshape(Np * D, Np * D)
    m = ref_mean(PX, act, lambda0)
    m2 = m if PY is None else ref_mean(PY, act, lambda0)
    Gm = np.einsum("mi,manb,nj->iajb", m, W4, m2).reshape(Np * D, Np * D)
    sm = np.einsum("mi,manb,nj->iajb", m, np.abs(W4), m2).reshape(Np * D, Np * D)
    return G, scale, Gm, sm


def sym(rng, n):
    A = rng.standard_normal((n, n))
    return (A + A.T) / 2


@st.composite
def cases(draw):
    g = draw(geometries(max_patches=10))
    return dict(g=g, P=draw(st.integers(1, 5)),
                P2=draw(st.one_of(st.none(), st.integers(1, 4))), D=draw(st.integers(1, 3)),
                act=draw(ACTS), dtype=draw(st.sampled_from(["float64", "float32"])),
                lambda0=draw(st.sampled_from([1.0, 0.5, 2.5])),
                lambda1=draw(st.sampled_from([1.0, 2.5])), mean=draw(st.booleans()),
                seed=draw(st.integers(0, 2**31 - 1)))


def inputs(c):
    rng = np.random.default_rng(c["seed"])
    X, _ = make_inputs(rng, c["g"], c["P"], "natural", c["dtype"])
    Y = None if c["P2"] is None else make_inputs(rng, c["g"], c["P2"], "natural", c["dtype"])[0]
    return rng, X, Y


@settings(deadline=None)
@given(cases())
def test_renormalized_multi_matches_reference(c):
    rng, X, Y = inputs(c)
    g, D, dt = c["g"], c["D"], np.dtype(c["dtype"])
    ND = g.num_patches * D
    Q = sym(rng, ND).astype(dt)
    Qm = sym(rng, ND).astype(dt) if c["mean"] else None
    got = renormalized_kernel_multi(X, Y, Q=Q, D=D, Qm=Qm, geometry=g, activation=c["act"],
                                    lambda0=c["lambda0"], lambda1=c["lambda1"])
    PX = geometry_patches(X, g)
    PY = None if Y is None else geometry_patches(Y, g)
    want, scale = ref_kr_multi(PX, PY, Q, Qm, D, c["act"], c["lambda0"], c["lambda1"])
    assert got.dtype == dt
    assert_close(got, want, scale, RTOL[dt], "K_R multi")
    if Y is None:
        np.testing.assert_array_equal(got, got.T)


@settings(deadline=None)
@given(cases(), st.booleans())
def test_adjoint_multi_matches_reference(c, symmetric_w):
    rng, X, Y = inputs(c)
    g, D, dt = c["g"], c["D"], np.dtype(c["dtype"])
    P2 = c["P"] if Y is None else c["P2"]
    W = rng.standard_normal((c["P"] * D, P2 * D))
    if symmetric_w and Y is None:
        W = (W + W.T) / 2
    W = W.astype(dt)
    PX = geometry_patches(X, g)
    PY = None if Y is None else geometry_patches(Y, g)
    G, scale, Gm, sm = ref_adjoint_multi(PX, PY, W, D, c["act"], c["lambda0"])
    got = local_kernel_adjoint_multi(X, W, D=D, Y=Y, geometry=g, activation=c["act"],
                                     lambda0=c["lambda0"])
    assert got.dtype == dt
    assert_close(got, G, scale, RTOL[dt], "G multi")
    gc, gm = local_kernel_adjoint_multi(X, W, D=D, Y=Y, geometry=g, activation=c["act"],
                                        lambda0=c["lambda0"], centred=True)
    assert_close(gm, Gm, sm, RTOL[dt], "G_m")
    assert_close(gc, G - Gm, scale + sm, RTOL[dt], "G_c")
    if symmetric_w and Y is None:
        np.testing.assert_array_equal(got, got.T)


@settings(deadline=None)
@given(cases())
def test_patch_mean_matches_reference(c):
    _, X, _ = inputs(c)
    g, dt = c["g"], np.dtype(c["dtype"])
    got = patch_mean(X, geometry=g, activation=c["act"], lambda0=c["lambda0"])
    want = ref_mean(geometry_patches(X, g), c["act"], c["lambda0"])
    assert got.shape == (c["P"], g.num_patches) and got.dtype == dt
    assert_close(got, want, np.abs(want), RTOL[dt], "m")


@pytest.mark.parametrize("act", ["erf", "relu"])
def test_adjoint_identity_and_D1(act):
    """sum W * K_R(Q) = (1/(lambda1 Np)) sum Q * G(W); D = 1 equals the scalar kernels."""
    rng = np.random.default_rng(3)
    g = lkr.PatchGeometry(input_shape=(6, 6), filter_size=3, stride=2)
    Np, D, P = g.num_patches, 3, 7
    X = rng.standard_normal((P, 6, 6))
    Q, Qm, W = sym(rng, Np * D), sym(rng, Np * D), sym(rng, P * D)
    kr = renormalized_kernel_multi(X, Q=Q, D=D, Qm=Qm, geometry=g, activation=act, lambda1=1.5)
    gc, gm = local_kernel_adjoint_multi(X, W, D=D, geometry=g, activation=act, centred=True)
    lhs = np.sum(W * kr)
    rhs = (np.sum(Q * (gc + gm)) + np.sum(Qm * gm)) / (1.5 * Np)
    assert abs(lhs - rhs) <= 1e-12 * np.sum(np.abs(W * kr))
    Q1, W1 = sym(rng, Np), sym(rng, P)
    np.testing.assert_allclose(renormalized_kernel_multi(X, Q=Q1, D=1, geometry=g, activation=act),
                               lkr.renormalized_kernel(X, Q=Q1, geometry=g, activation=act),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(local_kernel_adjoint_multi(X, W1, D=1, geometry=g, activation=act),
                               lkr.local_kernel_adjoint(X, W1, geometry=g, activation=act),
                               rtol=1e-12, atol=1e-12)


def test_threads_give_identical_results():
    rng = np.random.default_rng(5)
    g = lkr.PatchGeometry(input_shape=(8, 8), filter_size=4, stride=2)
    X = rng.standard_normal((40, 8, 8))
    W = sym(rng, 80)
    a = local_kernel_adjoint_multi(X, W, D=2, geometry=g, activation="relu", nthreads=1,
                                   centred=True)
    b = local_kernel_adjoint_multi(X, W, D=2, geometry=g, activation="relu", nthreads=2,
                                   centred=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nrhs", [1, 5])
def test_stored_matmul(dtype, nrhs):
    rng = np.random.default_rng(1)
    S = rng.standard_normal((301, 17)).astype(dtype)
    X = rng.standard_normal((17, nrhs))
    Wt = rng.standard_normal((301, nrhs))
    core = backend.core()
    S64 = S.astype(np.float64)
    np.testing.assert_allclose(core.stored_matmul(S, X, False, 0), S64 @ X, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(core.stored_matmul(S, Wt, True, 0), S64.T @ Wt, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="do not match"):
        core.stored_matmul(S, Wt, False, 0)


def test_bad_input():
    g = lkr.PatchGeometry(input_shape=(8,), filter_size=4, stride=4)
    X = np.ones((3, 8))
    with pytest.raises(ValueError, match="D must be"):
        renormalized_kernel_multi(X, Q=np.eye(2), D=0, geometry=g)
    with pytest.raises(ValueError, match="shape"):
        renormalized_kernel_multi(X, Q=np.eye(2), D=2, geometry=g)
    with pytest.raises(ValueError, match="shape"):
        local_kernel_adjoint_multi(X, np.eye(3), D=2, geometry=g)


@pytest.mark.parametrize("store32", [False, True])
@pytest.mark.parametrize("act", ["erf", "relu"])
def test_pack_compressed_and_symmetric_products(store32, act):
    """The theories' compressed kernel against the materialised reference tensor, and the
    products K_R = unpack(T q), g = T^T w(B) against dense contractions."""
    rng = np.random.default_rng(11)
    g = lkr.PatchGeometry((6, 6), 3, 3)
    P, Np = 9, g.num_patches
    X = rng.standard_normal((P, 6, 6))
    PX = np.ascontiguousarray(geometry_patches(X, g))
    K = ref_local_kernel(PX, None, act, 1.0)
    core = backend.core()
    mu, nu = np.triu_indices(P)
    pi, pj = np.triu_indices(Np)
    want_S = K[mu, nu][:, pi, pj] + np.where(pi == pj, 0.0, K[mu, nu][:, pj, pi])
    off = pi < pj
    want_A = K[mu, nu][:, pi[off], pj[off]] - K[mu, nu][:, pj[off], pi[off]]
    rtol = 1e-6 if store32 else 1e-12
    TS = core.pack_compressed(PX, False, False, store32, act, 1.0, 0)
    TA = core.pack_compressed(PX, True, False, store32, act, 1.0, 0)
    assert TS.dtype == (np.float32 if store32 else np.float64)
    np.testing.assert_allclose(TS, want_S, rtol=rtol, atol=rtol * np.abs(want_S).max())
    np.testing.assert_allclose(TA, want_A, rtol=rtol, atol=rtol * np.abs(want_S).max())
    Q, B = sym(rng, Np), sym(rng, P)
    kr = core.stored_sym(TS, np.ascontiguousarray(Q[pi, pj]), P, False, 0.5, 0)
    np.testing.assert_allclose(kr, 0.5 * np.einsum("mnij,ij->mn", K, Q), rtol=10 * rtol,
                               atol=10 * rtol * np.abs(K).sum(axis=(2, 3)).max())
    np.testing.assert_array_equal(kr, kr.T)
    gv = core.stored_sym(TS, B, P, True, 0.0, 0)
    G = np.einsum("mnij,mn->ij", K, B)
    got = np.where(pi == pj, gv, gv / 2)
    np.testing.assert_allclose(got, G[pi, pj], rtol=10 * rtol,
                               atol=10 * rtol * np.abs(K).sum(axis=(0, 1)).max() * np.abs(B).max())


def test_cuda_engine_fallbacks_match_the_compiled_calls(emulator):
    """The CUDA engine's multi-output calls (lkr._cuda.multi, driven through the host
    emulator's local kernel) give the C++ results."""
    rng = np.random.default_rng(12)
    P, Np, M, D = 6, 3, 4, 2
    PX = rng.standard_normal((P, Np, M))
    PY = rng.standard_normal((4, Np, M))
    core = backend.core()
    Q, Qm, W = sym(rng, Np * D), sym(rng, Np * D), sym(rng, P * D)
    for act in ("erf", "relu"):
        np.testing.assert_allclose(emulator.patch_mean(PX, act, 1.0),
                                   core.patch_mean(PX, act, 1.0, 0), rtol=1e-12)
        for Y in (None, PY):
            np.testing.assert_allclose(
                emulator.renormalized_kernel_multi(PX, Y, Q, Qm, D, act, 1.0, 1.5),
                core.renormalized_kernel_multi(PX, Y, Q, Qm, D, act, 1.0, 1.5, 0),
                rtol=1e-10, atol=1e-12)
        for a, b in zip(emulator.local_kernel_adjoint_multi(PX, None, W, True, D, True, act, 1.0),
                        core.local_kernel_adjoint_multi(PX, None, W, True, D, True, act, 1.0, 0)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)
        for anti in (False, True):
            np.testing.assert_allclose(emulator.pack_compressed(PX, anti, False, False, act, 1.0),
                                       core.pack_compressed(PX, anti, False, False, act, 1.0, 0),
                                       rtol=1e-10, atol=1e-12)
    S = core.pack_compressed(PX, False, False, False, "erf", 1.0, 0)
    q = rng.standard_normal(S.shape[1])
    np.testing.assert_allclose(emulator.stored_sym(S, q, P, False, 0.5),
                               core.stored_sym(S, q, P, False, 0.5, 0), rtol=1e-12)
    B = sym(rng, P)
    np.testing.assert_allclose(emulator.stored_sym(S, B, P, True, 0.0),
                               core.stored_sym(S, B, P, True, 0.0, 0), rtol=1e-11, atol=1e-12)


# -- the D-output layout of the stored kernel's products (lkr._core.stored_assemble/gather) --
def ref_assemble(vS, vA, P, D, scale):
    """K (P D, P D) written entry by entry from its definition (docs in _core.pyi)."""
    K = np.zeros((P * D, P * D))
    rows = {}
    for r, (mu, nu) in enumerate(zip(*np.triu_indices(P))):
        rows[mu, nu] = r
    col_s = {ab: c for c, ab in enumerate(zip(*np.triu_indices(D)))}
    col_a = {ab: c for c, ab in enumerate(zip(*np.triu_indices(D, 1)))}
    for (mu, nu), r in rows.items():
        for a in range(D):
            for b in range(D):
                v = vS[r, col_s[min(a, b), max(a, b)]]
                if vA is not None and mu != nu and a != b:
                    v += (1 if a < b else -1) * vA[r, col_a[min(a, b), max(a, b)]]
                K[mu * D + a, nu * D + b] = K[nu * D + b, mu * D + a] = scale * v
    return K


def ref_gather(B, P, D):
    Ws, Wa = [], []
    for mu, nu in zip(*np.triu_indices(P)):
        w = B[mu * D:(mu + 1) * D, nu * D:(nu + 1) * D] * (0.5 if mu == nu else 1.0)
        Ws.append([(w[a, b] + w[b, a]) / 2 for a, b in zip(*np.triu_indices(D))])
        Wa.append([(w[a, b] - w[b, a]) / 2 for a, b in zip(*np.triu_indices(D, 1))])
    n = len(Ws)
    return (np.array(Ws, dtype=float).reshape(n, D * (D + 1) // 2),
            np.array(Wa, dtype=float).reshape(n, D * (D - 1) // 2))


@settings(max_examples=25, deadline=None)
@given(P=st.integers(1, 7), D=st.integers(1, 5), anti=st.booleans(), seed=st.integers(0, 99),
       threads=st.sampled_from([1, 3]))
def test_stored_assemble_and_gather_against_the_definition(P, D, anti, seed, threads,
                                                            emulator):
    core = backend.core()
    rng = np.random.default_rng(seed)
    rows = P * (P + 1) // 2
    vS = rng.standard_normal((rows, D * (D + 1) // 2))
    vA = rng.standard_normal((rows, D * (D - 1) // 2)) if anti else None
    K = core.stored_assemble(vS, vA, P, D, 0.7, threads)
    ref = ref_assemble(vS, vA, P, D, 0.7)
    np.testing.assert_allclose(K, ref, rtol=1e-15, atol=1e-15)
    assert np.array_equal(K, K.T)
    np.testing.assert_allclose(emulator.stored_assemble(vS, vA, P, D, 0.7), ref, rtol=1e-15)
    B = rng.standard_normal((P * D, P * D))
    B = B + B.T
    for got in (core.stored_gather(B, P, D, threads), emulator.stored_gather(B, P, D)):
        for g, r in zip(got, ref_gather(B, P, D)):
            np.testing.assert_allclose(g, r, rtol=1e-15, atol=1e-15)


def test_stored_assemble_and_gather_refuse_bad_shapes():
    core = backend.core()
    with pytest.raises(ValueError, match="vS must have shape"):
        core.stored_assemble(np.zeros((5, 3)), None, 3, 2, 1.0, 1)
    with pytest.raises(ValueError, match="vA must have shape"):
        core.stored_assemble(np.zeros((6, 3)), np.zeros((6, 2)), 3, 2, 1.0, 1)
    with pytest.raises(ValueError, match="B must have shape"):
        core.stored_gather(np.zeros((6, 5)), 3, 2, 1)
