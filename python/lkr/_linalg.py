"""Dense linear algebra for NumPy (LAPACK through SciPy) and CuPy (cuSOLVER), one API.

Only what the solvers need: Cholesky factorisations with solves and log-determinants
(never an explicit inverse), symmetric eigendecompositions and SVDs.
"""
from __future__ import annotations

import numpy as np

from . import backend

__all__ = ["Cholesky", "cholesky", "eigh", "svd", "svdvals", "NotPositiveDefiniteError"]


class NotPositiveDefiniteError(ValueError):
    """A matrix that must be symmetric positive definite is not."""


class Cholesky:
    """Lower Cholesky factor L of a symmetric positive-definite A = L L^T.

    Methods solve A x = b, give log det A, and L^{-1} b, in the array library of A.
    """

    def __init__(self, A, name: str = "matrix"):
        xp = backend.array_module(A)
        self.xp = xp
        self.n = A.shape[0]
        if xp is np:
            import scipy.linalg as sla

            try:
                self.L = sla.cholesky(A, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                raise NotPositiveDefiniteError(f"{name} ({A.shape[0]} x {A.shape[0]}) is not "
                                               "positive definite") from None
            if not np.isfinite(self.L).all():
                raise NotPositiveDefiniteError(f"{name} has non-finite entries")
        else:
            self.L = xp.linalg.cholesky(A)
            if not bool(xp.isfinite(self.L).all()):  # cuSOLVER reports failure as NaN
                raise NotPositiveDefiniteError(f"{name} ({A.shape[0]} x {A.shape[0]}) is not "
                                               "positive definite")

    def _tri(self, b, trans: bool):
        if self.xp is np:
            import scipy.linalg as sla

            return sla.solve_triangular(self.L, b, lower=True, trans=1 if trans else 0,
                                        check_finite=False)
        from cupyx.scipy.linalg import solve_triangular

        return solve_triangular(self.L, b, lower=True, trans=1 if trans else 0)

    def half_solve(self, b):
        """L^{-1} b."""
        return self._tri(b, trans=False)

    def solve(self, b):
        """A^{-1} b."""
        return self._tri(self._tri(b, trans=False), trans=True)

    def inverse(self):
        """A^{-1} (for the gradient terms that need the whole matrix, e.g. B = A^{-1} - a a^T)."""
        return self.solve(self.xp.eye(self.n, dtype=self.L.dtype))

    def logdet(self) -> float:
        """log det A = 2 sum log diag L."""
        return float(2.0 * self.xp.log(self.xp.diagonal(self.L)).sum())


def cholesky(A, name: str = "matrix") -> Cholesky:
    """Factor a symmetric positive-definite matrix; raises NotPositiveDefiniteError."""
    return Cholesky(A, name)


def eigh(A):
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix."""
    xp = backend.array_module(A)
    if xp is np:
        import scipy.linalg as sla

        return sla.eigh(A, check_finite=False)
    return xp.linalg.eigh(A)


def svd(A, full_matrices: bool = False):
    """U, s, Vh of A (s descending)."""
    xp = backend.array_module(A)
    if xp is np:
        import scipy.linalg as sla

        return sla.svd(A, full_matrices=full_matrices, check_finite=False)
    return xp.linalg.svd(A, full_matrices=full_matrices)


def svdvals(A):
    """Singular values of A, descending."""
    xp = backend.array_module(A)
    if xp is np:
        import scipy.linalg as sla

        return sla.svdvals(A, check_finite=False)
    return xp.linalg.svd(A, compute_uv=False)
