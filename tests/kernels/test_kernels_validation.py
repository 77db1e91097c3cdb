"""Every bad input of issue 2 item 7 is a ValueError / TypeError (or, for the memory budget,
a MemoryError) that names the argument and the offending shape or value."""
import numpy as np
import pytest

import lkr

G = lkr.PatchGeometry((8,), 2, 2)  # Np = 4, M = 2
RNG = np.random.default_rng(0)
X = RNG.standard_normal((5, 8))
Y = RNG.standard_normal((3, 8))
Q = np.eye(4)
W = np.ones((5, 5))


def with_bad(A, value, index=(1, 2)):
    A = A.copy()
    A[index] = value
    return A


CALLS = {
    "renormalized_kernel": lambda X=X, Y=None, Q=Q, **kw: lkr.renormalized_kernel(
        X, Y, Q=Q, geometry=G, **kw),
    "renormalized_kernel_diag": lambda X=X, Y=None, Q=Q, **kw: lkr.renormalized_kernel_diag(
        X, Q=Q, geometry=G, **kw),
    "local_kernel": lambda X=X, Y=None, Q=None, **kw: lkr.local_kernel(X, Y, geometry=G, **kw),
    "local_kernel_adjoint": lambda X=X, Y=None, Q=None, W=None, **kw: lkr.local_kernel_adjoint(
        X, np.ones((len(X), len(X) if Y is None else len(Y))) if W is None else W, geometry=G, Y=Y, **kw),
    "nngp": lambda X=X, Y=None, Q=None, **kw: lkr.nngp(X, Y, **kw),
}
ALL = list(CALLS)
WITH_Y = ["renormalized_kernel", "local_kernel", "local_kernel_adjoint", "nngp"]
WITH_Q = ["renormalized_kernel", "renormalized_kernel_diag"]
WITH_GEOMETRY = ALL[:-1]


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_X(fn, value):
    with pytest.raises(ValueError,
                       match=r"X has 1 non-finite value\(s\) \(NaN or inf\), first at index \(1, "):
        CALLS[fn](X=with_bad(X, value))


@pytest.mark.parametrize("fn", WITH_Y)
def test_non_finite_Y(fn):
    with pytest.raises(ValueError, match=r"Y has 2 non-finite"):
        CALLS[fn](Y=with_bad(with_bad(Y, np.nan), np.inf, (2, 7)))


@pytest.mark.parametrize("fn", WITH_Q)
def test_non_finite_Q(fn):
    with pytest.raises(ValueError, match=r"Q has 1 non-finite value\(s\).*\(0, 0\)"):
        CALLS[fn](Q=with_bad(Q, np.nan, (0, 0)))


def test_non_finite_W():
    with pytest.raises(ValueError, match=r"W has 1 non-finite value\(s\).*\(3, 1\)"):
        lkr.local_kernel_adjoint(X, with_bad(W, np.inf, (3, 1)), geometry=G)


@pytest.mark.parametrize("fn", WITH_GEOMETRY)
@pytest.mark.parametrize("shape", [(5, 9), (5, 8, 2), (8,), (5, 2, 4)])
def test_X_of_wrong_shape(fn, shape):
    with pytest.raises(ValueError, match=r"X has shape \(" + ", ".join(map(str, shape))):
        CALLS[fn](X=np.zeros(shape))


@pytest.mark.parametrize("fn", ["renormalized_kernel", "local_kernel", "local_kernel_adjoint"])
def test_Y_of_wrong_shape(fn):
    with pytest.raises(ValueError, match=r"Y has shape \(3, 7\)"):
        CALLS[fn](Y=np.zeros((3, 7)))


def test_nngp_shapes():
    with pytest.raises(ValueError, match=r"X must be \(P, N0\).*shape \(8,\)"):
        lkr.nngp(np.zeros(8))
    with pytest.raises(ValueError, match="X and Y differ in input size: 8 vs 7"):
        lkr.nngp(X, np.zeros((3, 7)))


@pytest.mark.parametrize("fn", WITH_Q)
@pytest.mark.parametrize("shape", [(3, 3), (4, 5), (4,), (16,), (1, 4, 4)])
def test_Q_not_Np_by_Np(fn, shape):
    with pytest.raises(ValueError, match=r"Q must have shape \(4, 4\), got \(" + str(shape[0])):
        CALLS[fn](Q=np.ones(shape))


@pytest.mark.parametrize("fn", WITH_Q)
def test_Q_not_symmetric(fn):
    Qa = np.eye(4)
    Qa[0, 3] = 0.5
    with pytest.raises(ValueError, match=r"Q must be symmetric: max \|Q - Q.T\| = 0.5"):
        CALLS[fn](Q=Qa)
    # asymmetry at rounding level is symmetrised, not refused
    Qr = np.eye(4)
    Qr[0, 3] = 1e-17
    CALLS[fn](Q=Qr)


@pytest.mark.parametrize("shape", [(5, 4), (4, 5), (5,), (5, 5, 1)])
def test_W_of_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"W must have shape \(5, 5\), got \(" + str(shape[0])):
        lkr.local_kernel_adjoint(X, np.ones(shape), geometry=G)
    with pytest.raises(ValueError, match=r"W must have shape \(5, 3\)"):
        lkr.local_kernel_adjoint(X, np.ones((5, 5)), geometry=G, Y=Y)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("act", ["tanh", "ReLU", "", None, 1])
def test_unknown_activation(fn, act):
    with pytest.raises(ValueError, match=r"unknown activation .*expected one of \('linear', 'erf', 'relu'\)"):
        CALLS[fn](activation=act)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("value", [-1.0, 0.0, np.inf, np.nan])
def test_bad_lambda0(fn, value):
    with pytest.raises(ValueError, match=f"lambda0 must be positive and finite, got {value}"):
        CALLS[fn](lambda0=value)


@pytest.mark.parametrize("fn", WITH_Q)
@pytest.mark.parametrize("value", [-2.0, 0])
def test_bad_lambda1(fn, value):
    with pytest.raises(ValueError, match=f"lambda1 must be positive and finite, got {value}"):
        CALLS[fn](lambda1=value)


@pytest.mark.parametrize("fn", ALL)
def test_non_numeric_lambda_is_type_error(fn):
    with pytest.raises(TypeError, match="lambda0 must be a real number, got 'one'"):
        CALLS[fn](lambda0="one")


@pytest.mark.parametrize("fn", ALL)
def test_complex_input_is_type_error(fn):
    with pytest.raises(TypeError, match="X must be real-valued, got dtype complex128"):
        CALLS[fn](X=X.astype(complex))


@pytest.mark.parametrize("fn", WITH_GEOMETRY)
def test_geometry_must_be_a_patch_geometry(fn):
    call = {
        "renormalized_kernel": lambda: lkr.renormalized_kernel(X, Q=Q, geometry=(8,)),
        "renormalized_kernel_diag": lambda: lkr.renormalized_kernel_diag(X, Q=Q, geometry=(8,)),
        "local_kernel": lambda: lkr.local_kernel(X, geometry=(8,)),
        "local_kernel_adjoint": lambda: lkr.local_kernel_adjoint(X, W, geometry=(8,)),
    }[fn]
    with pytest.raises(TypeError, match="geometry must be a PatchGeometry, got tuple"):
        call()


def test_filter_larger_than_input_and_zero_stride():
    with pytest.raises(ValueError, match=r"filter_size \(9,\) is larger than input_shape \(8,\)"):
        lkr.PatchGeometry((8,), 9)
    with pytest.raises(ValueError, match=r"stride must be positive, got \(0,\)"):
        lkr.PatchGeometry((8,), 2, 0)


def test_local_kernel_memory_budget_names_streaming_calls():
    need = 5 * 5 * 4 * 4 * 8
    assert lkr.local_kernel(X, geometry=G, max_bytes=need).shape == (5, 5, 4, 4)
    with pytest.raises(MemoryError, match=r"\(5, 5, 4, 4\) float64 tensor.*use renormalized_kernel"):
        lkr.local_kernel(X, geometry=G, max_bytes=need - 1)
    # float32 halves the size
    assert lkr.local_kernel(X.astype(np.float32), geometry=G, max_bytes=need // 2).dtype == np.float32


def test_nthreads_validated():
    with pytest.raises(ValueError, match="nthreads must be a non-negative integer, got -2"):
        lkr.renormalized_kernel(X, Q=Q, geometry=G, nthreads=-2)


def test_empty_sample_sets():
    E = np.zeros((0, 8))
    assert lkr.renormalized_kernel(E, Q=Q, geometry=G).shape == (0, 0)
    assert lkr.renormalized_kernel(X, E, Q=Q, geometry=G).shape == (5, 0)
    np.testing.assert_array_equal(lkr.local_kernel_adjoint(E, np.zeros((0, 0)), geometry=G), 0)
    assert lkr.nngp(E).shape == (0, 0)
