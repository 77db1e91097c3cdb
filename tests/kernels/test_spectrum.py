"""lkr.spectrum: singular values of J and of its Gram, spectral measures (oracle 14),
top-k, numerical rank, bad input."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lkr import spectrum


def low_rank(R, N, rank, seed=0, decay=None):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((R, rank)))
    V, _ = np.linalg.qr(rng.standard_normal((N, rank)))
    s = np.linspace(3.0, 1.0, rank) if decay is None else decay
    return (U * s) @ V.T, np.sort(s)[::-1]


def test_singular_values_of_j_and_of_gram():
    J, s = low_rank(30, 20, 20, decay=np.geomspace(10, 0.1, 20))
    np.testing.assert_allclose(spectrum.singular_values(J), s, rtol=1e-12)
    np.testing.assert_allclose(spectrum.singular_values(J @ J.T, gram=True)[:20], s, rtol=1e-10)
    assert spectrum.singular_values(J @ J.T, gram=True).shape == (30,)
    np.testing.assert_allclose(spectrum.singular_values(s[::-1], values=True), s)


# -- oracle 14 -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_effective_rank_of_identity(n):
    assert spectrum.effective_rank(np.eye(n)) == pytest.approx(n, rel=1e-12)
    assert spectrum.effective_rank(np.eye(n), gram=True) == pytest.approx(n, rel=1e-12)


def test_effective_rank_of_rank_one():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(9), rng.standard_normal(5)
    assert spectrum.effective_rank(np.outer(a, b)) == pytest.approx(1.0, abs=1e-12)
    # through the Gram the zero eigenvalues carry rounding ~ sqrt(eps) sigma_1
    assert spectrum.effective_rank(np.outer(a, a), gram=True) == pytest.approx(1.0, abs=1e-6)


@given(st.floats(1e-6, 1e6), st.integers(0, 1000))
def test_effective_rank_scale_invariant(c, seed):
    A = np.random.default_rng(seed).standard_normal((8, 5))
    assert spectrum.effective_rank(c * A) == pytest.approx(spectrum.effective_rank(A), rel=1e-12)
    assert spectrum.stable_rank(c * A) == pytest.approx(spectrum.stable_rank(A), rel=1e-12)


def test_effective_rank_definition():
    s = np.array([4.0, 2.0, 1.0, 1.0])
    p = s / s.sum()
    want = math.exp(-(p * np.log(p)).sum())
    assert spectrum.effective_rank(s, values=True) == pytest.approx(want, rel=1e-14)
    J, _ = low_rank(6, 6, 4, decay=s)
    assert spectrum.effective_rank(J) == pytest.approx(want, rel=1e-12)


def test_stable_rank():
    J, s = low_rank(10, 8, 3, decay=np.array([2.0, 1.0, 1.0]))
    assert spectrum.stable_rank(J) == pytest.approx(6.0 / 4.0, rel=1e-12)
    assert spectrum.stable_rank(J @ J.T, gram=True) == pytest.approx(1.5, rel=1e-10)
    assert spectrum.stable_rank(np.eye(5)) == pytest.approx(5.0)


def test_condition_number_says_of_which_matrix():
    J, s = low_rank(12, 6, 6, decay=np.array([8.0, 4.0, 2.0, 1.0, 1.0, 0.5]))
    G = J @ J.T
    assert spectrum.condition_number(J) == pytest.approx(16.0, rel=1e-12)
    assert spectrum.condition_number(J, of="gram") == pytest.approx(256.0, rel=1e-12)
    # the Gram of a 12 x 6 J is singular: its own condition number is infinite...
    assert spectrum.condition_number(G, gram=True) > 1e20
    # ...but on J's numerical range it is kappa(J)^2 (and kappa(J) for of="jacobian")
    assert spectrum.condition_number(G, gram=True, rtol=1e-6) == pytest.approx(256.0, rel=1e-8)
    assert spectrum.condition_number(G, gram=True, of="jacobian", rtol=1e-6) == pytest.approx(16.0, rel=1e-8)
    Gs = J.T @ J  # a square full-rank Gram
    assert spectrum.condition_number(Gs, gram=True) == pytest.approx(256.0, rel=1e-10)
    # rank one: sigma_2 is rounding, kappa ~ 1/eps; an exactly zero sigma gives inf
    assert spectrum.condition_number(np.outer([1.0, 2], [3.0, 1])) > 1e14
    assert spectrum.condition_number(np.array([[1.0, 0.0], [0.0, 0.0]])) == math.inf
    with pytest.raises(ValueError, match="of must be"):
        spectrum.condition_number(J, of="J")


def test_numerical_rank():
    J, _ = low_rank(20, 15, 6, decay=np.geomspace(1, 1e-3, 6))
    assert spectrum.numerical_rank(J) == 6
    assert spectrum.numerical_rank(J @ J.T, gram=True) == 6
    assert spectrum.numerical_rank(J, rtol=1e-2) == 4  # 1, 0.25, 0.063, 0.016 > 1e-2
    assert spectrum.numerical_rank(np.zeros((3, 4))) == 0


@pytest.mark.parametrize("method", ["lanczos", "randomized"])
@pytest.mark.parametrize("gram", [False, True])
def test_top_k(method, gram):
    J, s = low_rank(80, 60, 40, decay=np.geomspace(100, 1, 40), seed=3)
    A = J @ J.T if gram else J
    got = spectrum.top_k(A, 5, gram=gram, method=method)
    # Lanczos converges to working precision; randomized subspace iteration (3 power
    # steps) to ~ (sigma_{k+p+1} / sigma_k)^(2q+1) relative
    np.testing.assert_allclose(got, s[:5], rtol=1e-10 if method == "lanczos" else 1e-6)


def test_top_k_errors():
    J, _ = low_rank(10, 8, 3)
    with pytest.raises(ValueError, match="numerical rank"):
        spectrum.top_k(J, 5)
    with pytest.raises(ValueError, match="numerical rank"):
        spectrum.top_k(J, 4, method="randomized")
    with pytest.raises(ValueError, match="too large"):
        spectrum.top_k(J, 8)
    with pytest.raises(ValueError, match="too large"):
        spectrum.top_k(J, 9, method="randomized")
    with pytest.raises(ValueError, match="positive integer"):
        spectrum.top_k(J, 0)
    with pytest.raises(ValueError, match="method"):
        spectrum.top_k(J, 2, method="power")
    assert spectrum.top_k(J, 3, method="randomized").shape == (3,)


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        spectrum.singular_values(np.ones(4))
    with pytest.raises(ValueError, match="2-D"):
        spectrum.effective_rank(np.ones((2, 2, 2)))
    bad = np.eye(3)
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        spectrum.stable_rank(bad)
    with pytest.raises(ValueError, match="square"):
        spectrum.singular_values(np.ones((3, 4)), gram=True)
    with pytest.raises(ValueError, match="symmetric"):
        spectrum.singular_values(np.triu(np.ones((3, 3))), gram=True)
    with pytest.raises(ValueError, match="zero"):
        spectrum.effective_rank(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        spectrum.effective_rank(np.array([1.0, -1.0]), values=True)


def test_torch_input():
    torch = pytest.importorskip("torch")
    J = torch.randn(12, 7, dtype=torch.float64)
    np.testing.assert_allclose(spectrum.singular_values(J), np.linalg.svd(J.numpy(), compute_uv=False),
                               rtol=1e-12)
    assert spectrum.effective_rank(J) == pytest.approx(spectrum.effective_rank(J.numpy()))
