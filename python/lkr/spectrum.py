r"""Singular-value spectra of Jacobians and their Gram matrices (docs/theory.md section 3).

Every measure is defined on the singular values sigma_1 >= sigma_2 >= ... of a Jacobian J
(R x N). Each function takes either J itself (``gram=False``, the default) or its Gram
matrix Theta = J J^T (``gram=True``; the singular values are then the square roots of
Theta's eigenvalues, computed by a symmetric eigensolver), or a 1-D array of singular
values (``values=True``).

How the singular values of a J are computed (``via``): ``"auto"`` (default) takes the
smaller Gram of a wide or tall J (J J^T for R < N, J^T J for R > N; BLAS syrk, half the
flops of a GEMM) and its eigenvalues, one pass over J (its finiteness is read off the
Gram's diagonal); a square J goes to the SVD. ``"gram"`` and ``"svd"`` force one route. The
Gram route gives sigma_k to relative accuracy ~ n eps (sigma_1 / sigma_k)^2 and resolves
singular values only down to ~ sqrt(n eps) sigma_1 (below that they are rounding and
are set to 0); :func:`condition_number` and :func:`numerical_rank`, which hinge on the
smallest values, recompute by SVD in "auto" when the Gram cannot resolve them.

- effective rank (Roy & Vetterli 2007): exp(-sum_k p_k log p_k), p_k = sigma_k / sum sigma;
  erank(I_n) = n, erank(rank one) = 1, erank(c A) = erank(A);
- stable rank: sum_k sigma_k^2 / sigma_1^2 = |J|_F^2 / |J|_2^2;
- condition number: sigma_max / sigma_min of J, or of the Gram:
  kappa(J J^T) = kappa(J)^2 -- ``of`` says which;
- numerical rank: the number of sigma_k > rtol sigma_1;
- top-k: the k largest singular values by Lanczos (ARPACK through SciPy) or randomized SVD,
  for matrices too large for a full decomposition.

Inputs may be NumPy, CuPy, or any ``__dlpack__`` array (torch tensors); vectors of
singular values come back in the input's array library (NumPy for torch inputs), scalars
as Python floats.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from . import _gram, _linalg, backend
from ._blas import blas_threads
from ._validate import integer as _integer

__all__ = ["singular_values", "effective_rank", "stable_rank", "condition_number",
           "numerical_rank", "top_k"]


def _matrix(A, gram: bool, name: str = "A", finite: bool = True):
    A = backend.asarray(A, name)
    if not hasattr(A, "ndim") or A.ndim != 2:
        what = "a Gram matrix J J^T" if gram else "a Jacobian J"
        raise ValueError(f"{name} must be 2-D ({what}), got shape {tuple(getattr(A, 'shape', ()))}")
    backend.check_floating(A, name)
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise ValueError(f"{name} is empty, shape {tuple(A.shape)}")
    if gram and A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be square when gram=True, got shape {tuple(A.shape)}")
    if A.dtype.kind != "f":
        A = A.astype(np.float64)
    if gram:
        # finiteness and symmetry in one panel pass, no n x n temporary
        _gram.check_symmetric(A, name)
    elif finite:
        backend.check_finite(A, name)
    return A


_VIA = ("auto", "gram", "svd")


def _check_via(via):
    if via not in _VIA:
        raise ValueError(f"via must be 'auto', 'gram' or 'svd', got {via!r}")


def _use_gram(A, via):
    R, N = A.shape
    return via == "gram" or (via == "auto" and R != N)


def _gram_eigvals(G, n_eps: float):
    """Eigenvalues of a symmetric PSD G, descending, those within the rounding of zero
    (<= n_eps * lambda_max, n_eps = n eps) set to 0."""
    xp = backend.array_module(G)
    w = _linalg.eigh(G)[0] if xp is not np else _eigvalsh(G)
    w = w[::-1]
    top = float(w[0]) if w.shape[0] else 0.0
    return xp.where(w > n_eps * max(top, 0.0), w, 0)


def _sv_of_jacobian(A, via):
    """(singular values of J descending, resolution): resolution is the relative eigenvalue
    floor lambda_k / lambda_1 below which the Gram route cannot resolve (0 for the SVD)."""
    xp = backend.array_module(A)
    R, N = A.shape
    if not _use_gram(A, via):
        backend.check_finite(A, "A")
        return _linalg.svdvals(A if A.dtype.kind == "f" else A.astype(np.float64)), 0.0
    G = _gram.gram(A if R <= N else A.T, name="A")
    dtype = G.dtype
    n_eps = max(R, N) * float(np.finfo(dtype).eps)
    return xp.sqrt(_gram_eigvals(G, n_eps)), n_eps


def singular_values(A, gram: bool = False, *, values: bool = False, via: str = "auto"):
    """Singular values of J, descending.

    Parameters
    ----------
    A : array
        J (R, N); or, with ``gram=True``, the symmetric PSD Gram J J^T (R, R), whose
        eigenvalues (clipped at 0, the rounding of a PSD matrix) have square roots sigma_k;
        or, with ``values=True``, singular values already (any order, non-negative).
    gram : bool
        Whether A is a Gram matrix.
    via : {"auto", "gram", "svd"}
        For a J: through its smaller Gram (default for a non-square J; relative accuracy
        ~ n eps (sigma_1 / sigma_k)^2, values below ~ sqrt(n eps) sigma_1 returned as 0) or
        by SVD (absolute accuracy ~ eps sigma_1). See the module docstring.

    Returns
    -------
    array, (min(R, N),) for J or (R,) for a Gram matrix
        Same array library as A (NumPy for foreign arrays); float32 kept.
    """
    if values:
        s = backend.asarray(A, "A")
        if s.ndim != 1 or s.shape[0] == 0:
            raise ValueError(f"singular values must be a non-empty 1-D array, got shape {tuple(s.shape)}")
        backend.check_finite(s, "singular values")
        xp = backend.array_module(s)
        if bool((s < 0).any()):
            raise ValueError("singular values must be non-negative")
        return xp.sort(s)[::-1]
    return _singular_values(A, gram, via)[0]


def _singular_values(A, gram, via):
    """(sigma descending, resolution) of J or of a Gram matrix; see _sv_of_jacobian."""
    _check_via(via)
    A = _matrix(A, gram, finite=False)
    xp = backend.array_module(A)
    if gram:
        n_eps = A.shape[0] * float(np.finfo(A.dtype).eps)
        return xp.sqrt(_gram_eigvals(A, n_eps)), n_eps
    return _sv_of_jacobian(A, via)


def _eigvalsh(A):
    import scipy.linalg as sla

    return sla.eigvalsh(A, check_finite=False)


def _sv(A, gram, values, via="auto"):
    s = singular_values(A, gram, values=values, via=via)
    return backend.array_module(s), s


def effective_rank(A, gram: bool = False, *, values: bool = False, via: str = "auto") -> float:
    r"""Effective rank (Roy & Vetterli 2007) of J: exp(H(p)), p_k = sigma_k / sum_j sigma_j.

    .. math:: \mathrm{erank}(J) = \exp\Big(-\sum_k p_k \log p_k\Big), \quad 0 \log 0 = 0.

    Between 1 (rank one) and min(R, N) (all singular values equal); scale invariant.
    Singular values of J, also when a Gram matrix is given (``gram=True``); ``via`` as in
    :func:`singular_values` (the Gram route changes the result by at most ~ n sqrt(n eps)
    relative, from the unresolved smallest values).
    """
    xp, s = _sv(A, gram, values, via)
    s = s.astype(np.float64)
    total = float(s.sum())
    if total == 0:
        raise ValueError("the matrix is zero: its effective rank is undefined")
    p = s / total
    p = p[p > 0]
    return float(math.exp(-float((p * xp.log(p)).sum())))


def stable_rank(A, gram: bool = False, *, values: bool = False, via: str = "auto") -> float:
    """Stable rank sum_k sigma_k^2 / sigma_1^2 = |J|_F^2 / |J|_2^2 of J (<= rank J);
    ``via`` as in :func:`singular_values`."""
    _, s = _sv(A, gram, values, via)
    s = s.astype(np.float64)
    top = float(s[0])
    if top == 0:
        raise ValueError("the matrix is zero: its stable rank is undefined")
    return float((s * s).sum()) / top**2


def condition_number(A, gram: bool = False, *, of: str = "matrix", rtol: Optional[float] = None,
                     values: bool = False, via: str = "auto") -> float:
    """Condition number sigma_max / sigma_min, of J or of its Gram matrix.

    Parameters
    ----------
    A : array
        J, or the Gram J J^T with ``gram=True``, or singular values of J with ``values=True``.
    gram : bool
        Whether A is the Gram matrix.
    of : {"matrix", "jacobian", "gram"}
        Which matrix the number is of. ``"matrix"`` (default): of A as given (kappa(J)
        for a Jacobian, kappa(J J^T) for a Gram). ``"jacobian"``: kappa(J) whatever was
        passed. ``"gram"``: kappa(J J^T) = kappa(J)^2.
    rtol : float, optional
        When given, only singular values of J above ``rtol * sigma_1`` count (the condition
        number on the numerical range); otherwise sigma_min is the smallest of all, and a
        rank-deficient matrix gives ``inf``.
    via : {"auto", "gram", "svd"}
        As in :func:`singular_values`; "auto" falls back to the SVD of J when the Gram
        route would not give sigma_min to ~1e-8 relative.

    Returns
    -------
    float
    """
    if of not in ("matrix", "jacobian", "gram"):
        raise ValueError(f"of must be 'matrix', 'jacobian' or 'gram', got {of!r}")
    if rtol is not None:
        rtol = float(rtol)
        if not (0 <= rtol < 1):
            raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
    if values:
        _, s = _sv(A, gram, values)
    else:
        route = _route(A, gram, via, rtol)
        s, res = _singular_values(A, gram, route)
        if rtol is None and not gram:
            s = _refine(A, route, s, res)
    s = s.astype(np.float64)
    top = float(s[0])
    if top == 0:
        raise ValueError("the matrix is zero: its condition number is undefined")
    if rtol is not None:
        s = s[s > rtol * top]
    low = float(s[-1])
    kappa = math.inf if low == 0 else top / low
    square = (of == "gram") or (of == "matrix" and gram)
    return kappa * kappa if square else kappa


#: the Gram route is trusted by condition_number / numerical_rank in "auto" when the values
#: they hinge on carry a relative eigenvalue error n eps lambda_1 / lambda_k below this
_RESOLVE = 1e-8


def _route(A, gram, via, rtol):
    """The route for a function that needs the values above ``rtol * sigma_1``: "auto" goes
    to the SVD up front when the Gram route could not resolve that threshold."""
    if gram or via != "auto" or rtol is None or not hasattr(A, "shape") or len(A.shape) != 2:
        return via
    dtype = np.float32 if A.dtype == np.float32 else np.float64
    res = max(A.shape) * float(np.finfo(dtype).eps)
    return via if rtol >= math.sqrt(res / _RESOLVE) else "svd"


def _refine(A, via, s, res):
    """s, or the SVD's values when "auto" took the Gram route and sigma_min is unresolved
    (relative eigenvalue error res (sigma_1 / sigma_min)^2 above _RESOLVE, or rounded to 0)."""
    if via != "auto" or res == 0.0:
        return s
    top, low = float(s[0]), float(s[-1])
    if top == 0 or (low > 0 and res * (top / low) ** 2 <= _RESOLVE):
        return s
    A = backend.asarray(A, "A")
    backend.check_finite(A, "A")
    return _linalg.svdvals(A if A.dtype.kind == "f" else A.astype(np.float64))


def _default_rtol(A, gram, dtype):
    eps = float(np.finfo(dtype).eps)
    n = max(A.shape) if hasattr(A, "shape") and len(A.shape) == 2 else 1
    # The eigenvalues of a Gram matrix carry absolute error ~ eps lambda_max, so their
    # square roots resolve singular values only down to ~ sqrt(eps) sigma_max.
    return math.sqrt(n * eps) if gram else n * eps


def numerical_rank(A, gram: bool = False, *, rtol: Optional[float] = None,
                   via: str = "auto") -> int:
    """The number of singular values of J above ``rtol * sigma_1``.

    Parameters
    ----------
    A : array
        J, or the Gram J J^T with ``gram=True``.
    rtol : float, optional
        Relative threshold on singular values of J. Default ``max(R, N) * eps`` for J and
        ``sqrt(R * eps)`` for a Gram matrix (its eigenvalues resolve sigma only to
        ~sqrt(eps) sigma_1).
    via : {"auto", "gram", "svd"}
        As in :func:`singular_values`; "auto" falls back to the SVD of J when the Gram
        route cannot resolve the threshold.
    """
    _check_via(via)
    A = backend.asarray(A, "A")
    if not hasattr(A, "ndim") or A.ndim != 2:
        A = _matrix(A, gram)  # raises the shape error
    if rtol is None:
        rtol = _default_rtol(A, gram, A.dtype if A.dtype.kind == "f" else np.float64)
    rtol = float(rtol)
    if not (0 <= rtol < 1):
        raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
    s = _singular_values(A, gram, _route(A, gram, via, rtol))[0]
    top = float(s[0])
    if top == 0:
        return 0
    return int((s > rtol * top).sum())


def _randomized(A, k, gram, oversample, power_iters, seed):
    """Top-k singular values (J) or eigenvalues (symmetric Gram) by randomized subspace
    iteration (Halko, Martinsson & Tropp 2011, algorithms 4.4 and 5.1)."""
    xp = backend.array_module(A)
    R, N = A.shape
    ell = min(k + oversample, R if gram else min(R, N))
    if xp is np:
        Om = np.random.default_rng(seed).standard_normal((N, ell)).astype(A.dtype, copy=False)
    else:  # draw on the device: no host-to-device copy of the test matrix
        Om = xp.random.default_rng(seed).standard_normal((N, ell), dtype=A.dtype)
    Y = A @ Om
    Q, _ = xp.linalg.qr(Y)
    for _ in range(power_iters):
        if gram:
            Q, _ = xp.linalg.qr(A @ Q)
        else:
            W, _ = xp.linalg.qr(A.T @ Q)
            Q, _ = xp.linalg.qr(A @ W)
    if gram:
        B = Q.T @ A @ Q
        w = _linalg.eigh(0.5 * (B + B.T))[0][::-1]
        return xp.sqrt(xp.clip(w[:k], 0, None))
    B = Q.T @ A
    return _linalg.svdvals(B)[:k]


def _lanczos_ncv(n, k):
    """Lanczos basis size for the top k of an n x n Gram: 3k (at least 40) where ARPACK's
    default 2k + 1 restarts too often. Each restart repeats reorthogonalisation (n ncv
    flops per step, cheap next to a matrix-vector product of n^2 / 2 reads); a larger basis
    converges the clustered top of a Wishart-like spectrum in fewer products (measured
    on a 4096 x 4096 Gram, k = 20: 325 products at 41 vectors, 300 at 60-80)."""
    return min(n, max(3 * k, 40))


def _symmetric_operator(A):
    """A LinearOperator x -> A x through BLAS symv on one triangle of a contiguous
    symmetric A: half the memory traffic of the GEMV behind ``eigsh(A)`` (the products
    are memory-bound), no copy of A (the F-ordered view of a C-ordered symmetric A is A).
    None for strided A (then eigsh's own product is used)."""
    from scipy.linalg import blas
    from scipy.sparse.linalg import LinearOperator

    if A.flags.f_contiguous:
        F = A
    elif A.flags.c_contiguous:
        F = A.T  # the same matrix (A is symmetric), F-ordered
    else:
        return None
    symv = blas.dsymv if A.dtype == np.float64 else blas.ssymv
    n = A.shape[0]

    def matvec(x):
        return symv(1.0, F, np.asarray(x, dtype=A.dtype).reshape(-1), lower=0)

    return LinearOperator((n, n), matvec=matvec, rmatvec=matvec, dtype=A.dtype)


def _start_vector(n, dtype):
    """A fixed ARPACK start vector (ARPACK's own is drawn from a state that changes from
    call to call): top_k gives the same numbers every time."""
    return np.random.default_rng(0x6C6B72).uniform(-1.0, 1.0, n).astype(dtype)


def _lanczos(A, k, gram):
    xp = backend.array_module(A)
    if xp is np:
        from scipy.sparse.linalg import eigsh, svds
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.sparse.linalg import eigsh, svds
    if gram:
        if xp is np:
            op = _symmetric_operator(A)
            n = A.shape[0]
            # one BLAS thread: the products are memory-bound (a second thread gains little
            # on a quiet machine and, waiting on each other, OpenBLAS threads lose much on
            # a loaded one; see lkr._blas)
            with blas_threads(1):
                w = eigsh(A if op is None else op, k=k, which="LA", ncv=_lanczos_ncv(n, k),
                          v0=_start_vector(n, A.dtype), return_eigenvectors=False)
        else:  # pragma: no cover - GPU only
            w = eigsh(A, k=k, which="LA", return_eigenvectors=False)
        return xp.sqrt(xp.clip(xp.sort(w)[::-1], 0, None))
    s = svds(A, k=k, return_singular_vectors=False)
    return xp.sort(s)[::-1]


def top_k(A, k: int, gram: bool = False, *, method: str = "lanczos", rtol: Optional[float] = None,
          oversample: Optional[int] = None, power_iters: int = 4, seed=0):
    """The k largest singular values of J, descending, without a full decomposition.

    Parameters
    ----------
    A : array
        J (R, N), or its Gram J J^T (R, R) with ``gram=True``.
    k : int
        How many. Must be below min(R, N) for Lanczos on J (below R for a Gram), at most
        min(R, N) for the randomized method.
    method : {"lanczos", "randomized"}
        ``lanczos``: implicitly restarted Lanczos (ARPACK ``svds`` / ``eigsh`` via SciPy),
        accurate to working precision. ``randomized``: randomized subspace iteration with
        ``oversample`` extra vectors (default max(10, k)) and ``power_iters`` power steps; its
        error falls like (sigma_{k+oversample} / sigma_k)^(2 power_iters + 1), so it is cheap
        and accurate for decaying spectra but only 1e-3..1e-2 relative on flat ones (measured
        on an erf CNN's NTK, k = 20): use Lanczos there.
    rtol : float, optional
        The k-th value must exceed ``rtol * sigma_1`` (default as :func:`numerical_rank`);
        otherwise k is larger than the numerical rank and a ValueError says so.

    Returns
    -------
    array, (k,)
    """
    if method not in ("lanczos", "randomized"):
        raise ValueError(f"method must be 'lanczos' or 'randomized', got {method!r}")
    # gram=True: finiteness and symmetry in one panel pass (no n x n temporary)
    A = _matrix(A, gram)
    k = _integer(k, "k", 1)
    R, N = A.shape
    size = R if gram else min(R, N)
    limit = size - 1 if method == "lanczos" else size
    if k > limit:
        raise ValueError(f"k = {k} is too large for a {R} x {N} {'Gram ' if gram else ''}matrix "
                         f"with method={method!r} (at most {limit}; use singular_values for "
                         "the full spectrum)")
    if method == "lanczos":
        s = _lanczos(A, k, gram)
    else:
        extra = max(10, k) if oversample is None else int(oversample)
        s = _randomized(A, k, gram, extra, int(power_iters), seed)
    if rtol is None:
        rtol = _default_rtol(A, gram, A.dtype)
    if float(s[-1]) <= float(rtol) * float(s[0]):
        raise ValueError(f"k = {k} is larger than the numerical rank of the matrix: the "
                         f"{k}-th singular value {float(s[-1]):.3g} is below rtol * sigma_1 = "
                         f"{float(rtol) * float(s[0]):.3g} (see numerical_rank)")
    return s
