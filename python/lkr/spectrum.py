r"""Singular-value spectra of Jacobians and their Gram matrices (docs/theory.md section 3).

Every measure is defined on the singular values sigma_1 >= sigma_2 >= ... of a Jacobian J
(R x N). Each function takes either J itself (``gram=False``, the default) or its Gram
matrix Theta = J J^T (``gram=True``; the singular values are then the square roots of
Theta's eigenvalues, computed by a symmetric eigensolver), or a 1-D array of singular
values (``values=True``).

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

from . import _linalg, backend
from ._validate import integer as _integer

__all__ = ["singular_values", "effective_rank", "stable_rank", "condition_number",
           "numerical_rank", "top_k"]


def _matrix(A, gram: bool, name: str = "A"):
    A = backend.asarray(A, name)
    if not hasattr(A, "ndim") or A.ndim != 2:
        what = "a Gram matrix J J^T" if gram else "a Jacobian J"
        raise ValueError(f"{name} must be 2-D ({what}), got shape {tuple(getattr(A, 'shape', ()))}")
    backend.check_floating(A, name)
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise ValueError(f"{name} is empty, shape {tuple(A.shape)}")
    if gram and A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be square when gram=True, got shape {tuple(A.shape)}")
    backend.check_finite(A, name)
    if A.dtype.kind != "f":
        A = A.astype(np.float64)
    return A


def _symmetry_check(A, xp):
    scale = float(xp.abs(A).max())
    asym = float(xp.abs(A - A.T).max())
    if asym > 1e-6 * max(scale, np.finfo(A.dtype).tiny):
        raise ValueError(f"A is not symmetric (max |A - A^T| = {asym:.3g} vs max |A| = "
                         f"{scale:.3g}); pass gram=False for a Jacobian")


def singular_values(A, gram: bool = False, *, values: bool = False):
    """Singular values of J, descending.

    Parameters
    ----------
    A : array
        J (R, N); or, with ``gram=True``, the symmetric PSD Gram J J^T (R, R), whose
        eigenvalues (clipped at 0, the rounding of a PSD matrix) have square roots sigma_k;
        or, with ``values=True``, singular values already (any order, non-negative).
    gram : bool
        Whether A is a Gram matrix.

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
    A = _matrix(A, gram)
    xp = backend.array_module(A)
    if gram:
        _symmetry_check(A, xp)
        w = _linalg.eigh(A)[0] if xp is not np else _eigvalsh(A)
        return xp.sqrt(xp.clip(w, 0, None))[::-1]
    return _linalg.svdvals(A)


def _eigvalsh(A):
    import scipy.linalg as sla

    return sla.eigvalsh(A, check_finite=False)


def _sv(A, gram, values):
    s = singular_values(A, gram, values=values)
    return backend.array_module(s), s


def effective_rank(A, gram: bool = False, *, values: bool = False) -> float:
    r"""Effective rank (Roy & Vetterli 2007) of J: exp(H(p)), p_k = sigma_k / sum_j sigma_j.

    .. math:: \mathrm{erank}(J) = \exp\Big(-\sum_k p_k \log p_k\Big), \quad 0 \log 0 = 0.

    Between 1 (rank one) and min(R, N) (all singular values equal); scale invariant.
    Singular values of J, also when a Gram matrix is given (``gram=True``).
    """
    xp, s = _sv(A, gram, values)
    s = s.astype(np.float64)
    total = float(s.sum())
    if total == 0:
        raise ValueError("the matrix is zero: its effective rank is undefined")
    p = s / total
    p = p[p > 0]
    return float(math.exp(-float((p * xp.log(p)).sum())))


def stable_rank(A, gram: bool = False, *, values: bool = False) -> float:
    """Stable rank sum_k sigma_k^2 / sigma_1^2 = |J|_F^2 / |J|_2^2 of J (<= rank J)."""
    _, s = _sv(A, gram, values)
    s = s.astype(np.float64)
    top = float(s[0])
    if top == 0:
        raise ValueError("the matrix is zero: its stable rank is undefined")
    return float((s * s).sum()) / top**2


def condition_number(A, gram: bool = False, *, of: str = "matrix", rtol: Optional[float] = None,
                     values: bool = False) -> float:
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

    Returns
    -------
    float
    """
    if of not in ("matrix", "jacobian", "gram"):
        raise ValueError(f"of must be 'matrix', 'jacobian' or 'gram', got {of!r}")
    _, s = _sv(A, gram, values)
    s = s.astype(np.float64)
    top = float(s[0])
    if top == 0:
        raise ValueError("the matrix is zero: its condition number is undefined")
    if rtol is not None:
        rtol = float(rtol)
        if not (0 <= rtol < 1):
            raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
        s = s[s > rtol * top]
    low = float(s[-1])
    kappa = math.inf if low == 0 else top / low
    square = (of == "gram") or (of == "matrix" and gram)
    return kappa * kappa if square else kappa


def _default_rtol(A, gram, dtype):
    eps = float(np.finfo(dtype).eps)
    n = max(A.shape) if hasattr(A, "shape") and len(A.shape) == 2 else 1
    # The eigenvalues of a Gram matrix carry absolute error ~ eps lambda_max, so their
    # square roots resolve singular values only down to ~ sqrt(eps) sigma_max.
    return math.sqrt(n * eps) if gram else n * eps


def numerical_rank(A, gram: bool = False, *, rtol: Optional[float] = None) -> int:
    """The number of singular values of J above ``rtol * sigma_1``.

    Parameters
    ----------
    A : array
        J, or the Gram J J^T with ``gram=True``.
    rtol : float, optional
        Relative threshold on singular values of J. Default ``max(R, N) * eps`` for J and
        ``sqrt(R * eps)`` for a Gram matrix (its eigenvalues resolve sigma only to
        ~sqrt(eps) sigma_1).
    """
    A = _matrix(A, gram)
    if rtol is None:
        rtol = _default_rtol(A, gram, A.dtype)
    rtol = float(rtol)
    if not (0 <= rtol < 1):
        raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
    s = singular_values(A, gram)
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


def _lanczos(A, k, gram):
    xp = backend.array_module(A)
    if xp is np:
        from scipy.sparse.linalg import eigsh, svds
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.sparse.linalg import eigsh, svds
    if gram:
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
    A = _matrix(A, gram)
    if gram:
        _symmetry_check(A, backend.array_module(A))
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
