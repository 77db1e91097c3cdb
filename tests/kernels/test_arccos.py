"""lkr.arccos: arc-cosine kernels, NTK recursions, Mercer eigenvalues (oracle 13)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lkr import arccos
from lkr.activations import nngp_map

EXACT_P3 = {
    "kappa0": [1 / 2, 1 / 8, 0, 1 / 128, 0, 1 / 512],
    "kappa1": [3 / 8, 1 / 6, 3 / 128, 0, 1 / 1536, 0, 3 / 32768],
    "ntk": [1 / 2, 1 / 3, 5 / 64, 0, 1 / 192, 0, 23 / 16384],
}


@pytest.mark.parametrize("rule,tol", [("gegenbauer", 1e-10), ("angle", 1e-13)])
@pytest.mark.parametrize("name", list(EXACT_P3))
def test_mercer_exact_table_p3(name, rule, tol):
    exact = np.array(EXACT_P3[name])
    mu = arccos.mercer_eigenvalues(getattr(arccos, name), p=3, kmax=len(exact) - 1, rule=rule)
    np.testing.assert_allclose(mu, exact, rtol=0, atol=tol)


@pytest.mark.parametrize("p", [2, 3, 5])
def test_mercer_series_rebuilds_kappa(p):
    t = np.linspace(-1, 1, 11)
    mu = arccos.mercer_eigenvalues(arccos.kappa1, p=p, kmax=80, rule="angle")
    # mu_k ~ k^-(p+2) with N(p, k) ~ k^(p-2): the tail after k = 80 is below 1e-5
    np.testing.assert_allclose(arccos.mercer_series(mu, t, p), arccos.kappa1(t), atol=2e-5)
    # the kernel at t = 1 is the trace: sum_k N(p, k) mu_k
    mu0 = arccos.mercer_eigenvalues(lambda t: t**3 - 0.5 * t, p=p, kmax=5)
    np.testing.assert_allclose(arccos.mercer_series(mu0, t, p), t**3 - 0.5 * t, atol=1e-12)


def test_harmonic_dimension():
    assert [arccos.harmonic_dimension(3, k) for k in range(5)] == [1, 3, 5, 7, 9]
    assert [arccos.harmonic_dimension(2, k) for k in range(4)] == [1, 2, 2, 2]
    # p = 4: (k + 1)^2
    assert [arccos.harmonic_dimension(4, k) for k in range(5)] == [1, 4, 9, 16, 25]


def test_gegenbauer_normalisation():
    from scipy.special import eval_gegenbauer, eval_legendre

    t = np.linspace(-1, 1, 9)
    P = arccos.gegenbauer(6, 3, t)
    for k in range(7):
        np.testing.assert_allclose(P[k], eval_legendre(k, t), atol=1e-14)
    P5 = arccos.gegenbauer(6, 5, t)
    for k in range(7):
        np.testing.assert_allclose(P5[k], eval_gegenbauer(k, 1.5, t) / eval_gegenbauer(k, 1.5, 1.0),
                                   atol=1e-13)


@pytest.mark.parametrize("name,parity,s", [("kappa0", "odd", 3), ("kappa1", "even", 5),
                                           ("ntk", "even", 3)])
def test_decay_exponents_p3(name, parity, s):
    mu = arccos.mercer_eigenvalues(getattr(arccos, name), p=3, kmax=120, rule="angle")
    assert arccos.decay_exponent(mu, parity, kmin=30) == pytest.approx(s, abs=0.1)
    # the other parity vanishes beyond k = 1
    other = mu[3::2] if parity == "even" else mu[2::2]
    assert np.abs(other).max() < 1e-12


def test_decay_exponent_exact_power_law():
    k = np.arange(40, dtype=float)
    mu = np.where(k > 0, 3.0 * np.maximum(k, 1) ** -4.5, 1.0)
    assert arccos.decay_exponent(mu) == pytest.approx(4.5, rel=1e-12)
    with pytest.raises(ValueError, match="fewer than two"):
        arccos.decay_exponent(mu[:3], "even")


@given(st.floats(-0.99, 0.99))
def test_kappa1_derivative_is_kappa0(u):
    h = 1e-5
    d = (arccos.kappa1(u + h) - arccos.kappa1(u - h)) / (2 * h)
    assert d == pytest.approx(float(arccos.kappa0(u)), abs=1e-8)


def test_kappa1_is_integral_of_kappa0_up_to_the_ends():
    # near +-1 kappa0 has a sqrt singularity in its derivative: check the integral form
    from scipy.integrate import quad

    for a, b in [(-1.0, -0.9), (0.9, 1.0), (-1.0, 1.0)]:
        integral = quad(lambda t: float(arccos.kappa0(t)), a, b, epsabs=1e-13)[0]
        assert arccos.kappa1(b) - arccos.kappa1(a) == pytest.approx(integral, abs=1e-11)


def test_values_and_relu_nngp():
    u = np.linspace(-1, 1, 9)
    np.testing.assert_allclose(arccos.kappa0([1.0, -1.0, 0.0]), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(arccos.kappa1([1.0, -1.0, 0.0]), [1.0, 0.0, 1 / np.pi])
    np.testing.assert_allclose(arccos.ntk(u), u * arccos.kappa0(u) + arccos.kappa1(u))
    # kappa1 is twice the relu NNGP map at unit variances (docs/theory.md section 2)
    np.testing.assert_allclose(arccos.kappa1(u), 2 * nngp_map("relu", 1.0, u, 1.0), rtol=1e-14)


def test_deep_recursions():
    u = np.linspace(-1, 1, 7)
    np.testing.assert_array_equal(arccos.deep_ntk(u, 0), u)
    np.testing.assert_allclose(arccos.deep_ntk(u, 1), arccos.ntk(u), rtol=1e-15)
    np.testing.assert_allclose(arccos.deep_nngp(u, 2), arccos.kappa1(arccos.kappa1(u)))
    s1 = arccos.kappa1(u)
    np.testing.assert_allclose(arccos.deep_ntk(u, 2),
                               arccos.ntk(u) * arccos.kappa0(s1) + arccos.kappa1(s1), rtol=1e-14)
    for L in range(5):
        assert arccos.deep_ntk(1.0, L) == pytest.approx(L + 1)
        assert arccos.deep_nngp(1.0, L) == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        arccos.kappa0(1.5)
    with pytest.raises(ValueError, match="non-finite"):
        arccos.kappa1([0.0, np.nan])
    with pytest.raises(ValueError, match="depth"):
        arccos.deep_ntk(0.5, -1)
    with pytest.raises(ValueError, match="p "):
        arccos.mercer_eigenvalues(arccos.kappa0, p=1)
    with pytest.raises(ValueError, match="rule"):
        arccos.mercer_eigenvalues(arccos.kappa0, rule="simpson")
    with pytest.raises(TypeError, match="callable"):
        arccos.mercer_eigenvalues(3.0)
    with pytest.raises(ValueError, match="n_quad"):
        arccos.mercer_eigenvalues(arccos.kappa0, kmax=10, n_quad=5)
    # slightly outside [-1, 1] by rounding is clipped
    assert arccos.kappa1(1 + 1e-12) == pytest.approx(1.0)
