// One training step of the one-hidden-layer FC and CNN nets (the fused objectives of
// python/lkr/nets/fc.py and patch.py): outputs f and the gradient of the loss
// (1/2) sum_p (y_p - f(x_p))^2 for C chains, as one parallel job of lkr's task pool
// (task_pool.hpp) with single-threaded BLAS products inside (blas_calls.hpp).
//
// Both nets are one GEMM, an elementwise readout and two gradient contractions. The
// prepared inputs Z have R rows per sample (CNN: its Np patches; FC: R = 1) of Kin values,
// already divided by sqrt(Kin); W (C, Kout, Kin) are the filters (CNN: Nc x M; FC: N1 x
// N0); one sample's pre-activations are the R x Kout block H[c, p] of
//   H[c] (n R, Kout) = Z (n R, Kin) W[c]^T,
// read as a row of K = R Kout values, patch-major (CNN: index i Nc + a). The readout
// u (C, K) is v in that layout, and
//   f[c, p]  = scale sum_k u[c, k] sigma(H[c, p, k]),
//   rc[c, p] = scale (f[c, p] - y[c, p]),
//   gu[c, k] = sum_p rc[c, p] sigma(H[c, p, k])                  (readout gradient),
//   gW[c]    = D[c]^T Z, D[c, p, k] = rc[c, p] u[c, k] sigma'(H[c, p, k])   (filters).
// Phases: (A) tiles of (chain, samples, hidden units): the GEMM and the elementwise pass
// (S = sigma(H), H <- sigma'(H) u, partial sums of f); (B) per (chain, samples): f, rc and
// D = rc * H, folded into A when a tile holds whole rows; (C) gu by column blocks (sum over
// samples in order) and gW by blocks of its rows (one GEMM each). The tiling depends only
// on the shapes, so every number is the same for any thread count.
#pragma once
#include <cstdint>

#include "activations.hpp"
#include "nets.hpp"

namespace lkr {

struct StepShape {
  int64_t C = 0;     // chains
  int64_t n = 0;     // samples
  int64_t R = 1;     // GEMM rows per sample
  int64_t Kin = 0;   // inputs per row
  int64_t Kout = 0;  // hidden units per row
  int64_t K() const { return R * Kout; }
};

// Z (n R, Kin); W (C, Kout, Kin); u (C, K); y chained (C, n) (stride 0: shared);
// work buffers H, S (C, n, K) (overwritten: S = sigma(H), H = D on return);
// outputs f (C, n), gu (C, K), gW (C, Kout, Kin).
template <class T>
void train_step(const T* Z, const StepShape& s, const T* W, const T* u, Chained<T> y, T scale,
                Activation act, int nthreads, T* H, T* S, T* f, T* gu, T* gW);

}  // namespace lkr
