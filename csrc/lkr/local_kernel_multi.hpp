// Multi-output and non-central contractions of the local kernel (docs/theory-beyond-odd.md sections 1.2, 2.2).
//
// Outputs are indexed patch-major on the order-parameter side, (i, a) -> i D + a, and
// example-major on the sample side, (mu, a) -> mu D + a:
//   K_R[(mu a), (nu b)] = (1 / (lambda1 Np)) sum_ij K_ij^{mu nu} Q[(i a), (j b)]
//                       + (1 / (lambda1 Np)) sum_ij m_i^mu m_j^nu Qm[(i a), (j b)]   (Qm optional)
//   G(W)[(i a), (j b)]  = sum_{mu nu} W[(mu a), (nu b)] K_ij^{mu nu}
//   G_m(W)[(i a), (j b)] = sum_{mu nu} m_i^mu W[(mu a), (nu b)] m_j^nu
// with m_i^mu = E[sigma(h)], h ~ N(0, C_ii^{mu mu}) the mean patch activation (relu:
// sqrt(C / (2 pi)); erf, linear: 0). Each tile of the local kernel is computed once and
// applied to all D^2 output blocks. float32 inputs compute the tile in float32 and
// accumulate in float64; results are deterministic whatever the thread count.
#pragma once
#include <cstdint>

#include "local_kernel.hpp"

namespace lkr {

// out (P, Np): m_i^mu.
template <class T>
void patch_mean(const View3<T>& A, const KernelParams& p, T* out);

// out (P D, P2 D). Q, Qm (Np D, Np D) C-contiguous, symmetric; Qm may be null (no mean
// term). B null: B = A, the result is symmetric and only the upper tiles are computed.
template <class T>
void renormalized_kernel_multi(const View3<T>& A, const View3<T>* B, const T* Q, const T* Qm,
                               int64_t D, double lambda1, const KernelParams& p, T* out);

// out (Np D, Np D): G(W), or the centred G(W) - G_m(W) when gm_out is not null (which then
// receives G_m(W)). W (P D, P2 D) strided; with B null and w_symmetric each unordered pair
// of samples is visited once.
template <class T>
void local_kernel_adjoint_multi(const View3<T>& A, const View3<T>* B, const View2<T>& W,
                                bool w_symmetric, int64_t D, const KernelParams& p, T* out,
                                T* gm_out);

// Products with a stored (compressed) kernel matrix S (rows, cols), C-contiguous, in float32
// or float64, accumulated in float64: out (rows, nrhs) = S X, X (cols, nrhs) C-contiguous.
template <class T>
void stored_matmul(const T* S, int64_t rows, int64_t cols, const double* X, int64_t nrhs,
                   int nthreads, double* out);

// out (cols, nrhs) = S^T W, W (rows, nrhs) C-contiguous. Deterministic (fixed row groups).
template <class T>
void stored_matmul_t(const T* S, int64_t rows, int64_t cols, const double* W, int64_t nrhs,
                     int nthreads, double* out);

// The compressed kernel of the theories (python/lkr/theory/_local.py): rows are the sample
// pairs mu <= nu in row-major upper-triangle order (row of (mu, nu) = mu P - mu (mu - 1) / 2
// + nu - mu), columns the patch pairs i <= j in the same order, holding K_ij + K_ji (i < j)
// and K_ii; with `antisym` the pairs i < j holding K_ij - K_ji; with `diagonal` only the
// Np columns K_ii. Computed tile by tile from the patches, stored as S (float or double).
template <class T, class S>
void pack_compressed(const View3<T>& A, bool antisym, bool diagonal, const KernelParams& p, S* out);

// K (P, P) symmetric = scale * unpack(Sm q) for a compressed Sm (rows as above, ncols).
template <class S>
void stored_kr_sym(const S* Sm, int64_t P, int64_t ncols, const double* q, double scale,
                   int nthreads, double* out);

// g (ncols) = Sm^T w with w_(mu nu) = B[mu, nu] (mu = nu) or 2 B[mu, nu] (mu < nu), read
// from the upper triangle of a C-contiguous (P, P) B. Deterministic (fixed row groups).
template <class S>
void stored_adjoint_sym(const S* Sm, int64_t P, int64_t ncols, const double* B, int nthreads,
                        double* g);

// The D-output products of the stored kernel, laid out (python/lkr/theory/_local.py): vS
// (rows, D(D+1)/2) holds the products with the output-symmetric parts of Q's blocks at the
// output pairs a <= b (row-major upper-triangle order), vA (rows, D(D-1)/2; null: none) those
// with the antisymmetric parts at a < b, rows the sample pairs mu <= nu as above. Writes
// K (P D, P D) example-major: K[(mu a), (nu b)] = K[(nu b), (mu a)] = scale v(a, b) with
// v(a, b) = vS(a, b) + vA(a, b) (a < b), vS(b, a) - vA(b, a) (a > b), vS(a, a) (a = b), and
// for mu = nu only the symmetric part vS.
void stored_assemble(const double* vS, const double* vA, int64_t P, int64_t D, double scale,
                     int nthreads, double* K);

// The adjoint's right-hand sides from a C-contiguous (P D, P D) B: with w(a, b) =
// B[(mu a), (nu b)] (halved for mu = nu), Ws[row, (a, b)] = (w(a, b) + w(b, a)) / 2 at
// a <= b (rows, D(D+1)/2) and Wa[row, (a, b)] = (w(a, b) - w(b, a)) / 2 at a < b
// (rows, D(D-1)/2).
void stored_gather(const double* B, int64_t P, int64_t D, int nthreads, double* Ws, double* Wa);

}  // namespace lkr
