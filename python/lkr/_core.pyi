"""Type stub of lkr._core, the private C++ extension (pybind11).

Private: the public names, validation and docstrings live in lkr.kernels, lkr.nets and
lkr.ntk. Every compute call releases the GIL and takes ``nthreads`` (0 = all cores).

The compute calls (those taking ``nthreads``) are the function list of both engines that
:func:`lkr.backend.implementation` returns: this extension for NumPy arrays and lkr._cuda
(module functions and its ``Engine``) for CuPy arrays; tests/engines/test_engines.py checks both
against this stub. The rest (openmp, max_threads, isa, set_fast_math) is host-only. Arrays are float32 or
float64 (the dtype of X decides; other operands must match it); patch tensors are
(P, Np, M) and may be strided; results are new C-contiguous arrays.
"""
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

_Float = np.float32 | np.float64
_Array = npt.NDArray[_Float]

#: True when the extension was built with OpenMP.
openmp: bool

def max_threads() -> int:
    """Threads a call with nthreads=0 uses (OpenMP's default; 1 without OpenMP)."""

def isa() -> str:
    """The instruction set the kernels run with: "v4" (AVX-512), "v3" (AVX2 + FMA) or
    "base", the CPU's best capped by LKR_ISA."""

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

# -- multi-output / non-central contractions, compressed kernel (csrc/bindings/kernels_multi.cpp)

def patch_mean(X: _Array, activation: str, lambda0: float, nthreads: int) -> _Array:
    """Mean patch activations m (P, Np) of a patch tensor (P, Np, M)."""

def renormalized_kernel_multi(X: _Array, Y: Optional[_Array], Q: _Array, Qm: Optional[_Array],
                              D: int, activation: str, lambda0: float, lambda1: float,
                              nthreads: int) -> _Array:
    """K_R (P D, P2 D) for an (Np D, Np D) Q, plus the mean term with Qm."""

def local_kernel_adjoint_multi(X: _Array, Y: Optional[_Array], W: _Array, w_symmetric: bool,
                               D: int, centred: bool, activation: str, lambda0: float,
                               nthreads: int) -> Any:
    """G(W) (Np D, Np D), or (G - G_m, G_m) with centred."""

def stored_matmul(S: _Array, X: _Array, transpose: bool, nthreads: int) -> _Array:
    """S @ X (S.T @ X) for a float32/float64 S, float64 X, float64 accumulation."""

def pack_compressed(X: _Array, antisym: bool, diagonal: bool, store32: bool, activation: str,
                    lambda0: float, nthreads: int) -> _Array:
    """The theories' compressed local kernel (P(P+1)/2, patch pairs)."""

def stored_sym(S: _Array, X: _Array, P: int, adjoint: bool, scale: float,
               nthreads: int) -> _Array:
    """unpack(S q) * scale (P, P), or S^T w(B) from B's upper triangle."""

def stored_assemble(vS: _Array, vA: Optional[_Array], P: int, D: int, scale: float,
                    nthreads: int) -> _Array:
    """K (P D, P D) from the D-output products of the stored kernel (see _local.py)."""

def stored_gather(B: _Array, P: int, D: int, nthreads: int) -> Any:
    """(Ws, Wa): the right-hand sides of the D-output adjoint from a (P D, P D) B."""

# -- network patch passes (csrc/bindings/nets.cpp; public API in lkr.nets and lkr.ntk) -----
# Z: patches (P, Np, M), C-contiguous. Chained operands carry a leading chain axis (length
# 1 = one parameter set broadcast over the chains); CNN filters are (chains, Nc, M), LCN
# filters (chains, Nc, Np, M), readouts (chains, Nc, Np), residuals r (chains, P).
# local=True selects the LCN (a filter per patch).

def patch_forward(Z: _Array, W: _Array, v: _Array, *, local: bool, activation: str,
                  nthreads: int) -> _Array:
    """f (C, P) = (Nc Np)^{-1/2} sum_{a,i} v_ai sigma(w_a . x_i / sqrt(M)) per chain."""

def patch_vjp(Z: _Array, W: _Array, v: _Array, r: _Array, *, local: bool, activation: str,
              nthreads: int) -> tuple[_Array, _Array]:
    """(dW (C, ...), dv (C, Nc, Np)): gradients of sum_p r[c, p] f_c(x_p)."""

def patch_value_and_grad(Z: _Array, W: _Array, v: _Array, y: _Array, *, local: bool,
                         activation: str, nthreads: int) -> tuple[_Array, _Array, _Array]:
    """(f (C, P), dW, dv): outputs and gradients of (1/2) sum_p (y[c, p] - f_c(x_p))^2 in one
    pass (each activation evaluated once)."""

def patch_jvp(Z: _Array, W: _Array, v: _Array, tW: _Array, tv: _Array, *, local: bool,
              activation: str, nthreads: int) -> _Array:
    """J t (C, P) along the tangents (tW, tv)."""

def patch_features(Z: _Array, W: _Array, v: _Array, a0: int, a1: int, *, local: bool,
                   activation: str, nthreads: int, combined: bool = False) -> _Array | tuple[_Array, _Array]:
    """NTK features of channels [a0, a1) for unchained W, v: S (P, nb, Np) = df/dv and
    G (P, nb, M) = df/dw_a (CNN) or G (P, nb, Np) with df/dw_ai = G_ai x_i (LCN); with
    combined=True one (P, nb (Np + ng)) array [S | G] (its Gram is the block's NTK)."""

def activation_pair(H: _Array, *, activation: str, derivative: bool,
                    nthreads: int) -> _Array | tuple[_Array, _Array]:
    """sigma(H), or (sigma(H), sigma'(H)) with derivative=True, elementwise, any shape."""

# -- the training objectives' elementwise passes (csrc/bindings/readout.cpp; lkr.nets fc/patch)
# In place on caller-owned writeable C-contiguous buffers of one dtype: H, S, D (C, P, K),
# u, g (C, K), f, rc (C, P). Every sum is done in a fixed order: the same bits at any nthreads.

def readout_forward(H: _Array, u: _Array, S: _Array, f: _Array, *, scale: float,
                    activation: str, nthreads: int) -> None:
    """S = sigma(H); H <- sigma'(H) u; f[c, p] = scale sum_k u[c, k] S[c, p, k]."""

def readout_backward(D: _Array, S: _Array, rc: _Array, g: _Array, *, nthreads: int) -> None:
    """g[c, k] = sum_p rc[c, p] S[c, p, k]; D[c, p, k] *= rc[c, p]."""

# -- the training step and update (csrc/bindings/nets.cpp: train_step.hpp, noise.hpp) ---------

def train_step(Z: _Array, W: _Array, u: _Array, y: _Array, H: _Array, S: _Array, *,
               rows_per_sample: int, scale: float, activation: str,
               nthreads: int) -> tuple[_Array, _Array, _Array]:
    """One fused step of the one-hidden-layer FC/CNN objective: from Z (n R, Kin), W (C, Kout,
    Kin), u (C, R Kout), y (1 or C, n) and work buffers H, S (C, n, R Kout), returns
    f (C, n), the readout gradient gu (C, R Kout) and the filter gradient gW (C, Kout, Kin)
    of (1/2) sum (y - f)^2, f = scale sum_k u sigma(H). Bit-identical for any nthreads."""

def set_gemm(dgemm: object, sgemm: object) -> None:
    """Register the Fortran-ABI dgemm/sgemm (capsules of scipy.linalg.cython_blas) the
    training step calls; None for both: plain loops."""

def have_gemm() -> bool:
    """Whether set_gemm registered BLAS products."""

def langevin_update(a: _Array, g: _Array, *, decay: float, lr: float, amp: float, key: int,
                    stream: int, step: int, nthreads: int) -> None:
    """In place: a <- decay a - lr g + amp xi, xi ~ N(0, 1) from Philox4x32-10 at
    (key, stream, step, index) and Box-Muller; the same numbers for any nthreads."""

def philox_normals(n: int, dtype: str, key: int, stream: int, step: int) -> _Array:
    """The noise of langevin_update alone: n standard normals (float32 or float64)."""

def set_fast_math(enabled: bool) -> bool:
    """Use the AVX2/FMA patch kernels with vectorised erf/exp (when the CPU has them) or the
    baseline ones with libm; returns the previous setting (for tests). It caps the
    instruction set of every compiled kernel (the local-kernel tiles too), like LKR_ISA."""

# -- deep-CNN kernel engine (csrc/bindings/deep.cpp) ---------------------------------------
# X (P, n0): flattened inputs (channels last), read through the layer-1 patch index.
# layers = (index1, tables, norms): index1 int32 (n1, M1) into X (n0 marks padding); tables
# int32 (n_l, k_l) windows of layers 2..L in the previous grid (n_{l-1} marks padding); norms
# 1 / (k_l lambda_{l-1}). plan = (pairs, gathers, chunks) of DeepGeometry.pair_plan: only its
# position pairs are computed. d = n_L (n1 if L = 1).

def deep_local_kernel(X: _Array, Y: Optional[_Array], layers: tuple, plan: tuple,
                      activation: str, lambda0: float, nthreads: int) -> _Array:
    """Final blocks K_L (P, P2, d, d); 0 off the plan's final pairs."""

def deep_renormalized_kernel(X: _Array, Y: Optional[_Array], Q: _Array, layers: tuple,
                             plan: tuple, activation: str, lambda0: float, lambdaL: float,
                             nthreads: int) -> _Array:
    """K_R(Q) (P, P2) = (1/(lambdaL d)) sum_ij Q_ij K_L,ij over the plan's final pairs,
    streamed; Q (d, d) symmetric."""

def deep_renormalized_kernel_diag(X: _Array, Q: _Array, layers: tuple, plan: tuple,
                                  activation: str, lambda0: float, lambdaL: float,
                                  nthreads: int) -> _Array:
    """K_R(Q)^{mu mu} (P,)."""

def deep_local_kernel_adjoint(X: _Array, Y: Optional[_Array], W: _Array, w_symmetric: bool,
                              layers: tuple, plan: tuple, activation: str, lambda0: float,
                              nthreads: int) -> _Array:
    """G(W) (d, d) = sum_{mu nu} W_{mu nu} K_L,ij^{mu nu} on the plan's final pairs."""

def deep_pack_compressed(X: _Array, cols: npt.NDArray[np.int32], ncols: int, layers: tuple,
                         plan: tuple, activation: str, lambda0: float,
                         nthreads: int) -> _Array:
    """The stored kernel (P (P + 1) / 2, ncols): row of mu <= nu, final pair e adds K_L,ij
    into column cols[e]."""

# -- collapsed sampler (csrc/bindings/cholupdate.cpp; lkr.train.collapsed) ------------------
# S (C, P, P + D) float64, C-contiguous, updated in place: the augmented Cholesky factor,
# S[c, j, i] = L[i, j] (j <= i < P), S[c, j, P + d] = (L^{-1} Y)[j, d]; G, Gp (C, n, P).

def chol_update(S: _Array, X: _Array, sign: int, nthreads: int) -> npt.NDArray[np.uint8]:
    """A <- A + sign X^T X (X (C, k, P)) keeping Y; returns ok (C,) (0: not PD, S[c] torn)."""

def collapsed_sweep(S: _Array, G: _Array, Gp: _Array, logu: _Array, block: int,
                    nthreads: int) -> Any:
    """One Metropolis sweep over blocks of ``block`` feature rows, in place on S and G:
    (accepted (C, nb) uint8, delta (C, nb) float64, status (C,) int32)."""
