"""top_k on a Gram matrix: the symmetric-product Lanczos path against LAPACK eigh, for
every memory order and dtype, and its reproducibility."""
import numpy as np
import pytest

from lkr import spectrum


def _gram(n, r, dtype, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, r))
    return (X @ X.T).astype(dtype)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_top_k_gram_matches_eigh(dtype, rtol, order):
    A = _gram(300, 120, dtype)
    ref = np.sqrt(np.linalg.eigvalsh(A.astype(np.float64))[::-1][:12])
    if order == "F":
        A = np.asfortranarray(A)
    elif order == "strided":
        big = np.zeros((600, 600), dtype=dtype)
        big[::2, ::2] = A
        A = big[::2, ::2]
        assert not (A.flags.c_contiguous or A.flags.f_contiguous)
    got = spectrum.top_k(A, 12, gram=True)
    assert got.dtype == dtype and got.shape == (12,)
    np.testing.assert_allclose(got, ref, rtol=rtol)


def test_top_k_gram_is_reproducible_and_matches_the_operator():
    A = _gram(400, 200, np.float64, seed=1)
    a = spectrum.top_k(A, 10, gram=True)
    b = spectrum.top_k(A, 10, gram=True)
    np.testing.assert_array_equal(a, b)
    # the half-matrix product is the full product
    op = spectrum._symmetric_operator(A)
    x = np.random.default_rng(2).standard_normal(400)
    np.testing.assert_allclose(op.matvec(x), A @ x, rtol=1e-12, atol=1e-9)
    assert spectrum._symmetric_operator(A[::1, ::-1]) is None  # strided: eigsh's own product


def test_top_k_gram_clustered_spectrum():
    # a Wishart spectrum (the bench's case): clustered top eigenvalues, where the basis size
    # matters most
    A = _gram(500, 250, np.float64, seed=3)
    ref = np.sqrt(np.linalg.eigvalsh(A)[::-1][:20])
    np.testing.assert_allclose(spectrum.top_k(A, 20, gram=True), ref, rtol=1e-10)
