// The elementwise passes of the training objectives (python/lkr/nets/fc.py and patch.py),
// around their two BLAS products. Pre-activations come one row per sample: H (C, P, K) with
// K the hidden units of one sample (FC: N1; CNN: Np Nc, patch-major), and a readout u (C, K)
// (FC: v; CNN: v transposed to (Np, Nc)).
//
//   readout_forward:  S = sigma(H);  H <- sigma'(H) u;  f[c, p] = scale sum_k u[c, k] S[c, p, k]
//   readout_backward: g[c, k] = sum_p rc[c, p] S[c, p, k];  D[c, p, k] *= rc[c, p]
//
// so that the gradient of (1/2) sum (y - f)^2 is, with rc = scale (f - y): g for the readout
// and D^T Z for the filters (the second BLAS product). Each sum is done by one thread in a
// fixed order (forward: a row; backward: a block of columns over all rows in order), so the
// results are bit-identical for every thread count.
#pragma once
#include <cstdint>

#include "activations.hpp"

namespace lkr {

template <class T>
void readout_forward(T* H, const T* u, int64_t C, int64_t P, int64_t K, T scale, Activation act,
                     int nthreads, T* S, T* f);

template <class T>
void readout_backward(T* D, const T* S, const T* rc, int64_t C, int64_t P, int64_t K, int nthreads,
                      T* g);

}  // namespace lkr
