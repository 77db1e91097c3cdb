#include "readout.hpp"

#include <algorithm>

#include "dispatch.hpp"
#include "sigma.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lkr {
namespace {

// Threads for `work` elements: one below ~64k, where waking the pool costs more than it saves
// (more so on an oversubscribed machine).
int pool_size(int n, int64_t work) { return omp_threads_for(n, work); }

// Columns [k0, k1) of one chain: g[k] = sum_p rc[p] S[p, k] (rows in order), D[p, k] *= rc[p].
template <class T>
LKR_INLINE void columns_body(T* D, const T* S, const T* rc, int64_t P, int64_t K, int64_t k0,
                             int64_t k1, T* g) {
  const int64_t n = k1 - k0;
  for (int64_t k = 0; k < n; ++k) g[k0 + k] = T(0);
  for (int64_t p = 0; p < P; ++p) {
    const T r = rc[p];
    T* d = D + p * K + k0;
    const T* s = S + p * K + k0;
    T* gk = g + k0;
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) {
      gk[k] += r * s[k];
      d[k] *= r;
    }
  }
}

template <class T>
LKR_TARGET_FAST void columns_fast(T* D, const T* S, const T* rc, int64_t P, int64_t K, int64_t k0,
                                  int64_t k1, T* g) {
  columns_body(D, S, rc, P, K, k0, k1, g);
}
template <class T>
void columns_base(T* D, const T* S, const T* rc, int64_t P, int64_t K, int64_t k0, int64_t k1,
                  T* g) {
  columns_body(D, S, rc, P, K, k0, k1, g);
}

}  // namespace

template <class T>
void readout_forward(T* H, const T* u, int64_t C, int64_t P, int64_t K, T scale, Activation act,
                     int nthreads, T* S, T* f) {
  const int nt = pool_size(nthreads, 8 * C * P * K);
  const bool fast = active_isa() >= Isa::v3;
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t cp = 0; cp < C * P; ++cp) {
      const T* uc = u + (cp / P) * K;
      T* h = H + cp * K;
      T* s = S + cp * K;
      f[cp] =
          scale * (fast ? sigma_row_fast<A, T>(h, uc, K, s) : sigma_row_base<A, T>(h, uc, K, s));
    }
  });
}

template <class T>
void readout_backward(T* D, const T* S, const T* rc, int64_t C, int64_t P, int64_t K, int nthreads,
                      T* g) {
  // blocks of 256 columns (2 KiB of doubles per row): long enough for the vector loop, and
  // enough blocks to share between the threads
  constexpr int64_t B = 256;
  const int64_t nb = (K + B - 1) / B;
  const int nt = pool_size(nthreads, 2 * C * P * K);
  const bool fast = active_isa() >= Isa::v3;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t j = 0; j < C * nb; ++j) {
    const int64_t c = j / nb, k0 = (j % nb) * B, k1 = std::min(K, k0 + B);
    T* Dc = D + c * P * K;
    const T* Sc = S + c * P * K;
    if (fast) columns_fast(Dc, Sc, rc + c * P, P, K, k0, k1, g + c * K);
    else columns_base(Dc, Sc, rc + c * P, P, K, k0, k1, g + c * K);
  }
}

#define LKR_INSTANTIATE_READOUT(T)                                                                 \
  template void readout_forward<T>(T*, const T*, int64_t, int64_t, int64_t, T, Activation, int,    \
                                   T*, T*);                                                        \
  template void readout_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int, T*);
LKR_INSTANTIATE_READOUT(float)
LKR_INSTANTIATE_READOUT(double)

}  // namespace lkr
