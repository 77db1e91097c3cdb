"""Type stub of lkr._core, the private C++ extension (pybind11).

Private: the public names, validation and docstrings live in lkr.kernels. Every compute
call releases the GIL and takes ``nthreads`` (0 = all cores). Arrays are float32 or
float64 (the dtype of X decides; other operands must match it); patch tensors are
(P, Np, M) and may be strided; results are new C-contiguous arrays.
"""
from typing import Optional

import numpy as np
import numpy.typing as npt

_Float = np.float32 | np.float64
_Array = npt.NDArray[_Float]

#: True when the extension was built with OpenMP.
openmp: bool

def max_threads() -> int:
    """Threads a call with nthreads=0 uses (OpenMP's default; 1 without OpenMP)."""

# -- local-kernel engine (csrc/bindings/kernels.cpp) ---------------------------------------

def local_kernel(X: _Array, Y: Optional[_Array], activation: str, lambda0: float,
                 nthreads: int) -> _Array:
    """Materialised K (P, P2, Np, Np) from patch tensors X (P, Np, M), Y (P2, Np, M)."""

def renormalized_kernel(X: _Array, Y: Optional[_Array], Q: _Array, activation: str,
                        lambda0: float, lambda1: float, nthreads: int) -> _Array:
    """K_R(Q) (P, P2) = (1/(lambda1 Np)) sum_ij Q_ij K_ij, streamed; Q (Np, Np) symmetric."""

def renormalized_kernel_diag(X: _Array, Q: _Array, activation: str, lambda0: float,
                             lambda1: float, nthreads: int) -> _Array:
    """K_R(Q)^{mu mu} (P,)."""

def local_kernel_adjoint(X: _Array, Y: Optional[_Array], W: _Array, w_symmetric: bool,
                         activation: str, lambda0: float, nthreads: int) -> _Array:
    """G(W) (Np, Np) = sum_{mu nu} W_{mu nu} K_ij^{mu nu}; W (P, P2) may be strided.
    w_symmetric (with Y None) visits each unordered pair of samples once."""

def nngp_map_inplace(K: _Array, dx: _Array, dy: _Array, activation: str, nthreads: int) -> None:
    """In place on a writeable C-contiguous (P, P2) K: K[m, n] <- K_sigma(dx[m], K[m, n], dy[n])."""
