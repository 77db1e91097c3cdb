r"""Gram matrices G = A A^T by a symmetric rank-k update, and cheap symmetry checks.

Why here: :func:`lkr.ntk.gram` and the spectrum functions (which take the smaller Gram of
a wide or tall Jacobian by default) share one implementation.

The Gram is computed by BLAS ``syrk`` (half the flops of the GEMM ``A @ B.T``) into one
triangle, which is then mirrored into the other once: G is exactly symmetric. NumPy's own
``A @ A.T`` takes the same ``syrk`` route when both operands are one buffer, so for a
C- or F-contiguous float32/float64 A that is what runs, in one call; anything else (other
dtypes, strided views) is converted in column panels A[:, k0:k1] that are accumulated,
G += A_k A_k^T, so A is never copied whole. A panel has max(R, 2^20 / R) columns: at
least R, so each update does R^2 k flops on R k + R^2 numbers (compute-bound), and at least
2^20 numbers, so the per-call overhead is negligible.

Finiteness costs no extra pass over A: a NaN or inf in row i of A reaches
G_ii = sum_p A_ip^2 (squares cannot cancel an inf, and NaN propagates through every
product), so a finite diagonal proves A finite; |G_ij| <= sqrt(G_ii G_jj) bounds the rest.
Only when the diagonal is not finite is A scanned, to name the first bad entry.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import backend

__all__ = ["check_symmetric", "gram", "panel_columns"]

_MIN_PANEL = 1 << 20


def panel_columns(R: int, N: int) -> int:
    """Columns per converted panel for an R-row matrix: compute-bound, bounded memory."""
    return max(1, min(N, max(R, -(-_MIN_PANEL // max(R, 1)))))


def _fill_lower_from_upper(C, xp):
    """C (Fortran-ordered, upper triangle valid) -> full symmetric C-ordered array."""
    G = C.T  # C-ordered view; its lower triangle is valid
    if xp is np:
        R = G.shape[0]
        # mirror row panels: G[i, :i] = G[:i, i], one pass, no index arrays
        step = max(1, (1 << 16) // max(R, 1))
        for i0 in range(0, R, step):
            i1 = min(R, i0 + step)
            G[:i0, i0:i1] = G[i0:i1, :i0].T
            blk = G[i0:i1, i0:i1]
            blk[...] = np.tril(blk) + np.tril(blk, -1).T
        return G
    return xp.tril(G) + xp.tril(G, -1).T


def _syrk_numpy(A, dtype, cols):
    """Upper-triangle syrk accumulation over column panels (SciPy BLAS), Fortran output."""
    from scipy.linalg import blas

    syrk = blas.dsyrk if dtype == np.float64 else blas.ssyrk
    N = A.shape[1]
    C = None
    for k0 in range(0, N, cols):
        # panel (R, kb) as a Fortran (kb, R) array: its transpose view is C-contiguous
        P = np.ascontiguousarray(A[:, k0:k0 + cols], dtype=dtype)
        if C is None:
            C = syrk(1.0, P.T, trans=1, lower=0)
        else:
            C = syrk(1.0, P.T, beta=1.0, c=C, trans=1, lower=0, overwrite_c=1)
    return C


def _syrk_cupy(A, dtype, cols):  # pragma: no cover - GPU only
    import cupy

    R, N = A.shape
    syrk = getattr(getattr(cupy, "cublas", None), "syrk", None)
    C = None
    for k0 in range(0, N, cols):
        P = cupy.ascontiguousarray(A[:, k0:k0 + cols], dtype=dtype)
        if syrk is None:
            part = P @ P.T
            C = part if C is None else C + part
            continue
        # cuBLAS syrk, 'N': C += P P^T into the upper triangle (as indexed, C[i, j], i <= j);
        # a C-ordered panel and output are taken without copies
        if C is None:
            C = cupy.zeros((R, R), dtype=dtype, order="C")
        syrk("N", P, out=C, alpha=1.0, beta=1.0, lower=False)
    if syrk is None:
        return C
    return cupy.triu(C) + cupy.triu(C, 1).T


def gram(A, cols: Optional[int] = None, name: str = "J"):
    """A A^T of a 2-D real array (NumPy or CuPy), exactly symmetric; see the module docstring.

    float32 in, float32 out; anything else float64. ``cols`` forces the panel path with that
    many columns per panel. Raises ValueError naming the first non-finite entry of A, or
    saying that A A^T overflows.
    """
    xp = backend.array_module(A)
    R, N = A.shape
    dtype = np.dtype(np.float32) if A.dtype == np.float32 else np.dtype(np.float64)
    whole = (cols is None and A.dtype == dtype
             and (A.flags.c_contiguous or A.flags.f_contiguous))
    if cols is None:
        cols = panel_columns(R, N)
    if xp is np:
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite: reported below
            if whole:
                G = A @ A.T  # NumPy sends A @ A.T (one buffer) to syrk, mirrors the triangle
            else:
                G = _fill_lower_from_upper(_syrk_numpy(A, dtype, cols), np)
    else:  # pragma: no cover - GPU only
        G = _syrk_cupy(A, dtype, N if whole else cols)
    d = xp.diagonal(G)
    if not bool(xp.isfinite(d).all()):
        backend.check_finite(A, name)
        raise ValueError(f"{name} {name}^T overflows {dtype.name} ({name} is finite but a row's squared "
                         f"norm is not representable); rescale {name}")
    return G


def check_symmetric(A, name: str = "A", rtol: float = 1e-6):
    """Refuse a non-finite or non-symmetric square matrix without an n x n temporary.

    One pass over row panels A[i0:i1, i0:] against the column panels A[i0:, i0:i1]^T (the
    upper triangle and its mirror): every entry is read once or twice, and the only
    temporary is one panel. A NaN or inf anywhere makes the panel maxima non-finite (max
    propagates NaN; inf - inf is NaN), and then :func:`backend.check_finite` names it.
    Refuses max |A - A^T| > rtol max |A|.
    """
    xp = backend.array_module(A)
    n = A.shape[0]
    rows = max(1, min(n, (1 << 16) // max(n, 1)))  # panels of ~2^16 numbers: cache-sized
    scale = 0.0
    asym = 0.0
    buf = None
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        T = A[i0:i1, i0:]
        U = A[i0:, i0:i1].T
        if buf is None or buf.shape != T.shape:
            buf = xp.empty(T.shape, dtype=A.dtype)
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite: reported below
            xp.subtract(T, U, out=buf)
        # max/min propagate NaN; checking all four values never relies on Python's max
        hi, lo, dhi, dlo = (float(v) for v in (xp.max(T), xp.min(T), xp.max(buf), xp.min(buf)))
        if not all(np.isfinite(v) for v in (hi, lo, dhi, dlo)):
            backend.check_finite(A, name)
            raise ValueError(f"{name}: |{name} - {name}^T| is not finite")  # pragma: no cover
        scale = max(scale, hi, -lo)
        asym = max(asym, dhi, -dlo)
    if asym > rtol * max(scale, float(np.finfo(A.dtype).tiny)):
        raise ValueError(f"{name} is not symmetric (max |{name} - {name}^T| = {asym:.3g} vs "
                         f"max |{name}| = {scale:.3g}); pass gram=False for a Jacobian")
