// The patch-wise local kernel K_ij^{mu nu} = K_sigma(C_ii^{mu mu}, C_ij^{mu nu}, C_jj^{nu nu}),
// C_ij^{mu nu} = x_i^mu . x_j^nu / (lambda0 M), and its contractions (docs/theory.md section 2).
// Inputs are patch tensors (P, Np, M) as strided views; outputs are caller-owned,
// C-contiguous buffers. Nothing here knows about Python.
//
// All calls work tile by tile over pairs of sample blocks (memory O(tile) beyond the
// output), run their tiles in parallel with OpenMP, and give the same result bit for bit
// whatever the thread count. float32 inputs compute in float32 and sum in float64.
#pragma once
#include <cstdint>

#include "activations.hpp"
#include "views.hpp"

namespace lkr {

struct KernelParams {
  Activation activation = Activation::erf;
  double lambda0 = 1.0;
  int nthreads = 0;  // 0: all cores (OpenMP's default)
};

// out (P, P2, Np, Np): the materialised tensor. B may be null (B = A).
template <class T>
void local_kernel(const View3<T>& A, const View3<T>* B, const KernelParams& p, T* out);

// out (P, P2): K_R(Q) = (1 / (lambda1 Np)) sum_ij Q_ij K_ij, streamed tile by tile.
// Q (Np, Np) C-contiguous and symmetric. With B null the result is symmetric and only
// the upper triangle of tiles is computed.
template <class T>
void renormalized_kernel(const View3<T>& A, const View3<T>* B, const T* Q, double lambda1,
                         const KernelParams& p, T* out);

// out (P,): K_R(Q)^{mu mu}.
template <class T>
void renormalized_kernel_diag(const View3<T>& A, const T* Q, double lambda1, const KernelParams& p,
                              T* out);

// out (Np, Np): G(W)_ij = sum_{mu nu} W_{mu nu} K_ij^{mu nu}. W (P, P2) strided. When
// B is null and w_symmetric is true, each unordered pair of samples is visited once.
template <class T>
void local_kernel_adjoint(const View3<T>& A, const View3<T>* B, const View2<T>& W, bool w_symmetric,
                          const KernelParams& p, T* out);

// In place: K[m, n] <- K_sigma(dx[m], K[m, n], dy[n]) for a C-contiguous (P, P2) matrix
// of covariances (the fully-connected NNGP kernel after one GEMM).
template <class T>
void nngp_map_inplace(Activation act, T* K, int64_t P, int64_t P2, const T* dx, const T* dy,
                      int nthreads);

}  // namespace lkr
