"""CNN/LCN theories with D outputs and the non-central (relu) action: against the plain
NumPy reference (tests/theory_cnn_reference.py), special cases, finite differences, the
compressed kernel's variants (streamed, float32) and bad input."""
import warnings

import numpy as np
import pytest
from theory_cnn_reference import Problem

import lkr
from lkr.theory import CNNTheory, FCTheory, LCNTheory
from lkr.theory._local import default_budget

G6 = lkr.PatchGeometry((6,), 2, 2)  # Np = 3, M = 2


def data(P=10, D=1, seed=0, N0=6, Pt=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, N0))
    Y = rng.standard_normal((P, D)) if D > 1 else rng.standard_normal(P)
    return X, Y, rng.standard_normal((Pt, N0))


def fd_matrix(f, Q, sym_mask, h=1e-6):
    """dS/dQ of a function of a symmetric matrix, entry pairs moved together."""
    n = Q.shape[0]
    g = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            if not sym_mask[i, j]:
                continue
            E = np.zeros((n, n))
            E[i, j] = E[j, i] = h
            d = (f(Q + E) - f(Q - E)) / (2 * h)
            g[i, j] = g[j, i] = d if i == j else d / 2
    return g


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_multi_output_matches_reference(cls):
    X, Y, Xt = data(P=10, D=2)
    th = cls(geometry=G6, width=8, temperature=0.2, activation="erf", tol=1e-12)
    sol = th.fit(X, Y)
    ref = Problem(X, Y, G6, width=8, T=0.2, act="erf", lcn=cls is LCNTheory)
    Qr = ref.solve_odd()
    assert sol.converged and sol.Q.shape == (6, 6) and sol.num_outputs == 2
    np.testing.assert_allclose(sol.Q, Qr, atol=1e-8 * np.abs(Qr).max())
    p = th.predict(Xt)
    mean, cov = ref.predict(Xt, Qr)
    assert p.mean.shape == (4, 2) and p.covariance.shape == (4, 2, 2)
    np.testing.assert_allclose(p.mean, mean, atol=1e-8 * np.abs(mean).max())
    np.testing.assert_allclose(p.covariance, cov, atol=1e-8 * np.abs(cov).max())
    np.testing.assert_allclose(p.variance, np.einsum("taa->ta", cov), atol=1e-8)
    ev = th.evaluate(Xt, np.ones((4, 2)))
    assert ev["per_output"]["error"].shape == (2,)


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_noncentral_matches_reference(cls):
    X, y, Xt = data(P=10, D=1, seed=1)
    th = cls(geometry=G6, width=6, temperature=0.2, activation="relu", tol=1e-12)
    sol = th.fit(X, y)
    ref = Problem(X, y, G6, width=6, T=0.2, act="relu", lcn=cls is LCNTheory)
    Qb, Qc = ref.solve_noncentral()
    assert sol.converged and sol.conjugate is not None
    np.testing.assert_allclose(sol.Q, Qb, atol=1e-8)
    np.testing.assert_allclose(sol.conjugate, Qc, atol=1e-8)
    for corrected in (False, True):
        p = th.predict(Xt, corrected=corrected)
        mean, cov = ref.predict(Xt, Qb, Qc, corrected=corrected)
        np.testing.assert_allclose(p.mean, mean[:, 0], atol=1e-8 * np.abs(mean).max())
        np.testing.assert_allclose(p.variance, cov[:, 0, 0], atol=1e-8 * np.abs(cov).max())


def test_corrected_odd_matches_reference():
    X, y, Xt = data(P=10, seed=2)
    th = CNNTheory(geometry=G6, width=5, temperature=0.1, activation="erf", tol=1e-12)
    sol = th.fit(X, y)
    ref = Problem(X, y, G6, width=5, T=0.1, act="erf")
    mean, cov = ref.predict(Xt, sol.Q, corrected=True)
    p = th.predict(Xt, corrected=True)
    np.testing.assert_allclose(p.mean, mean[:, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(p.variance, cov[:, 0, 0], rtol=1e-10, atol=1e-12)


def test_one_output_column_equals_vector():
    X, y, _ = data(P=12, seed=3)
    a = CNNTheory(geometry=G6, width=4, temperature=0.1).fit(X, y)
    b = CNNTheory(geometry=G6, width=4, temperature=0.1).fit(X, y[:, None])
    np.testing.assert_array_equal(a.Q, b.Q)


def test_np1_cnn_noncentral_equals_fc_noncentral():
    X, y, Xt = data(P=14, seed=4, N0=5)
    g = lkr.PatchGeometry((5,), 5, 5)  # one patch = the whole input
    cnn = CNNTheory(geometry=g, width=4, temperature=0.1, activation="relu", lambda1=1.3,
                    tol=1e-12)
    fc = FCTheory(width=4, temperature=0.1, activation="relu", lambda1=1.3, tol=1e-12)
    sc, sf = cnn.fit(X, y), fc.fit(X, y)
    assert sc.Q[0, 0] == pytest.approx(sf.Q, rel=1e-8)
    assert sc.conjugate[0, 0] == pytest.approx(sf.conjugate, rel=1e-8, abs=1e-10)
    np.testing.assert_allclose(cnn.predict(Xt).mean, fc.predict(Xt).mean, rtol=1e-8)


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_zero_mean_reduces_to_odd_action(cls):
    """With M = 0 the non-central root has Qbar = (I + Q)^{-1} = the odd saddle."""
    X, y, _ = data(P=10, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        odd = cls(geometry=G6, width=6, temperature=0.2, activation="relu", mean="ignore",
                  tol=1e-12).fit(X, y)
    th = cls(geometry=G6, width=6, temperature=0.2, activation="relu", tol=1e-12)
    th.set_data(X, y)
    th._cache._m = np.zeros((10, 3))  # switch the mean off
    sol = th._fit_bound(None, True, None, None)
    np.testing.assert_allclose(sol.Q, odd.Q, atol=1e-9)
    np.testing.assert_allclose(np.linalg.inv(np.eye(3) + sol.conjugate), sol.Q, atol=1e-9)


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_gradients_against_finite_differences(cls):
    X, Y, _ = data(P=8, D=2, seed=6)
    rng = np.random.default_rng(0)
    th = cls(geometry=G6, width=8, temperature=0.3, activation="erf")
    th.set_data(X, Y)
    mask = th._block_mask() if cls is LCNTheory else np.ones((6, 6), bool)
    A = rng.standard_normal((6, 6)) * 0.2
    Q = np.where(mask, np.eye(6) + A @ A.T, 0.0)
    g = th.gradient(Q)
    fd = fd_matrix(th.action, Q, mask)
    np.testing.assert_allclose(g, fd, atol=1e-6 * np.abs(fd).max())
    # non-central pair
    X, y, _ = data(P=8, seed=7)
    th = cls(geometry=G6, width=5, temperature=0.3, activation="relu")
    th.set_data(X, y)
    mask = np.eye(3, dtype=bool) if cls is LCNTheory else np.ones((3, 3), bool)
    B = rng.standard_normal((3, 3)) * 0.2
    Qb = np.where(mask, np.eye(3) + B @ B.T, 0.0)
    Qc = np.where(mask, 0.1 * (B + B.T), 0.0)
    gb, gq = th.gradient(Qb, Qc)
    np.testing.assert_allclose(gb, fd_matrix(lambda M: th.action(M, Qc), Qb, mask), atol=1e-6)
    np.testing.assert_allclose(gq, fd_matrix(lambda M: th.action(Qb, M), Qc, mask), atol=1e-6)


@pytest.mark.parametrize("relu", [False, True])
def test_streamed_equals_materialised(relu):
    X, Y, Xt = data(P=9, D=1 if relu else 2, seed=8)
    kw = dict(geometry=G6, width=7, temperature=0.2, activation="relu" if relu else "erf",
              tol=1e-11)
    a = CNNTheory(materialize=True, **kw).fit(X, Y)
    b = CNNTheory(materialize=False, **kw).fit(X, Y)
    np.testing.assert_allclose(a.Q, b.Q, atol=1e-9)


def test_float32_storage_agrees_to_tolerance():
    g = lkr.PatchGeometry((8, 8), 4, 4)
    rng = np.random.default_rng(9)
    X, y = rng.standard_normal((40, 8, 8)), rng.standard_normal(40)
    kw = dict(geometry=g, width=10, temperature=0.1, activation="erf", tol=1e-7)
    a = CNNTheory(kernel_dtype="float64", **kw)
    b = CNNTheory(kernel_dtype="float32", **kw)
    sa, sb = a.fit(X, y), b.fit(X, y)
    assert b.materialized and b._cache.T.dtype == np.float32
    assert sb.converged and sb.extra["kernel_dtype"] == "float32"
    assert np.abs(sa.Q - sb.Q).max() <= 1e-6 * np.abs(sa.Q).max()
    # and the float32 solution is a root of the exact (float64) gradient to the tolerance
    a.set_data(X, y)
    gq = a.gradient(sb.Q)
    assert np.linalg.norm(gq) <= 10 * 1e-7 * (2 * np.linalg.norm(np.eye(4)))


def test_budget(monkeypatch):
    monkeypatch.setenv("LKR_MAX_BYTES", "12345")
    assert default_budget() == 12345
    monkeypatch.delenv("LKR_MAX_BYTES")
    b = default_budget()
    with open("/proc/meminfo") as fh:
        avail = [int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:")]
    if avail:
        assert 0.3 * avail[0] < b < 0.7 * avail[0]
    X, y, _ = data(P=10)
    th = CNNTheory(geometry=G6, width=4, temperature=0.1, max_bytes=100)
    th.fit(X, y)
    assert not th.materialized


def test_bad_input():
    X, Y, _ = data(P=10, D=2)
    with pytest.raises(ValueError, match="below"):
        CNNTheory(geometry=G6, width=5, temperature=0.1).fit(X, Y)  # Nc >= Np D = 6
    with pytest.raises(ValueError, match="mean"):
        CNNTheory(geometry=G6, width=5, temperature=0.1, mean="centre")
    with pytest.raises(ValueError, match="kernel_dtype"):
        CNNTheory(geometry=G6, width=5, temperature=0.1, kernel_dtype="half")
    with pytest.raises(ValueError, match="below 6"):  # relu with D outputs: Nc >= Np D too
        CNNTheory(geometry=G6, width=5, temperature=0.1, activation="relu").fit(X, Y)
    Yn = Y.copy()
    Yn[0, 0] = np.nan
    with pytest.raises(ValueError):
        CNNTheory(geometry=G6, width=8, temperature=0.1).fit(X, Yn)
    with pytest.raises(ValueError):
        CNNTheory(geometry=G6, width=8, temperature=0.1).fit(X, Y[:5])
    th = CNNTheory(geometry=G6, width=8, temperature=0.1, activation="relu")
    th.set_data(X, Y[:, 0])
    with pytest.raises(ValueError, match="conjugate"):
        th.action(np.eye(3))
