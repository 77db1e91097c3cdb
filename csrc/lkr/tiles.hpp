// The tile toolkit of the compiled kernels: what the one-layer (local_kernel.cpp), the
// multi-output (local_kernel_multi.cpp, through local_kernel_tiles.hpp) and the deep
// (deep_kernel.cpp) kernels share to build their hot loops.
//
// - Prepared rows: a patch row x scaled so that the NNGP map is s_x s_y F(z_x . z_y)
//   (activations.hpp), overflow-safe for any finite input.
// - Register blocking: R rows times one panel of CW columns (two vector registers) of dot
//   products held in registers (dot_chunk), with R and CW per instruction set.
// - Dispatch: a tile kernel K::run<R, CW> compiled for AVX-512, AVX2+FMA and the baseline and
//   picked at run time (run_tile), capped like every kernel by LKR_ISA / set_isa_cap.
// - Tiles of sample pairs (tile_pairs) and the fixed-group reduction that makes sums
//   independent of the thread count (reduce_slots).
// The activation switch (with_activation) and the OpenMP thread rule (omp_threads) are in
// dispatch.hpp.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "activations.hpp"
#include "dispatch.hpp"
#include "views.hpp"

namespace lkr {
namespace tiles {

// The instruction set of the tile kernels; their per-ISA variants exist only where the
// compiler has arch= targets.
inline Isa tile_isa() { return LKR_DISPATCH ? active_isa() : Isa::base; }

// Register blocking: CW columns = two vector registers, R rows such that the 2R
// accumulators stay in registers (16 of 32 zmm; 8 of 16 ymm or xmm).
template <class T>
int tile_cw(Isa isa) {
  return (isa == Isa::v4 ? 128 : isa == Isa::v3 ? 64 : 32) / int(sizeof(T));
}
// R = 8 (AVX-512 only) reuses each loaded column twice as often, which pays once the rows
// are many; with few rows (n < 6) it would mostly compute padding rows.
inline int tile_rows(Isa isa, int64_t n) { return isa == Isa::v4 && n >= 6 ? 8 : 4; }

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Prepares one patch row of M entries x(k): writes z = x scale to dst[k * ld] and returns the
// amplitude s (activations.hpp: K = s_x s_y F(z_x . z_y), norm = 1 / (lambda0 M)). The row
// is scaled by 2^-e (e the exponent of its largest entry) before squaring, so that |x|^2
// cannot overflow (or underflow) even for entries near the largest double; powers of two
// scale exactly, so for ordinary inputs z and s are bit for bit what the unscaled formulas
// give (see prepared_factors).
template <class T, class Get>
inline T prepare_row(const Get& x, int64_t M, Activation act, double norm, T* dst, int64_t ld) {
  double amax = 0;
  for (int64_t k = 0; k < M; ++k) amax = std::max(amax, std::fabs(double(x(k))));
  int e = 0;
  if (amax > 0) std::frexp(amax, &e);
  // 2^-e as two normal factors (2^-e alone is out of range for e = 1024 or e < -1022):
  // x * h1 * h2 is then exact, and cheaper than an ldexp call per entry.
  const double h1 = std::ldexp(1.0, -(e / 2)), h2 = std::ldexp(1.0, -(e - e / 2));
  double sq = 0;  // |x 2^-e|^2
  for (int64_t k = 0; k < M; ++k) {
    const double v = double(x(k)) * h1 * h2;
    sq += v * v;
  }
  const PreparedFactors f = prepared_factors(act, sq, e, norm);
  for (int64_t k = 0; k < M; ++k) dst[k * ld] = T(double(x(k)) * h1 * h2 * f.scale);
  return T(f.amp);
}

// u[r][c] = a_r . b_c for the CW columns of one packed panel (M x CW, contiguous): entry k
// of row r is a[r][k * AS]. Started from the k = 0 term rather than from zero: M >= 1
// always, and a zero fill of u compiles to a store (rep stos) that costs as much as the dot
// products when M is small.
template <class T, int R, int CW, int AS = 1>
LKR_INLINE void dot_chunk(const T* const* a, int64_t M, const T* panel, T (&u)[R][CW]) {
  for (int r = 0; r < R; ++r) {
    const T ar = a[r][0];
#pragma omp simd
    for (int c = 0; c < CW; ++c) u[r][c] = ar * panel[c];
  }
  for (int64_t k = 1; k < M; ++k) {
    const T* bk = panel + k * CW;
    for (int r = 0; r < R; ++r) {
      const T ar = a[r][k * AS];
#pragma omp simd
      for (int c = 0; c < CW; ++c) u[r][c] += ar * bk[c];
    }
  }
}

// Row pointers of one group of R rows (mu, i0 .. i0 + R - 1) of a (P, Np, M) row tensor;
// rows past Np repeat row i0 (their results go to a zero weight or a scratch row).
template <class T, int R>
LKR_INLINE void group_rows(const T* az, int64_t mu, int64_t i0, int64_t Np, int64_t M,
                           const T* (&a)[R]) {
  for (int r = 0; r < R; ++r) a[r] = az + (mu * Np + (i0 + r < Np ? i0 + r : i0)) * M;
}

// Runs K::run<R, CW>(a...) compiled for the instruction set `isa` (see tile_cw, tile_rows):
// R is 8 or 4 on AVX-512, 4 otherwise. The tile kernels are dispatched by hand (not with
// target_clones) because their register blocking differs per instruction set; small loops
// use target_clones (LKR_HOT).
#if LKR_DISPATCH
template <class K, class T, class... A>
LKR_TARGET_V4 void run_v4(int R, A... a) {
  constexpr int CW = 128 / sizeof(T);
  if (R == 8) K::template run<8, CW>(a...);
  else K::template run<4, CW>(a...);
}
template <class K, class T, class... A>
LKR_TARGET_V3 void run_v3(A... a) {
  K::template run<4, 64 / sizeof(T)>(a...);
}
#endif
template <class K, class T, class... A>
void run_base(A... a) {
  K::template run<4, 32 / sizeof(T)>(a...);
}
template <class K, class T, class... A>
void run_tile(Isa isa, int R, A... a) {
#if LKR_DISPATCH
  if (isa == Isa::v4) return run_v4<K, T>(R, a...);
  if (isa == Isa::v3) return run_v3<K, T>(a...);
#endif
  (void)isa, (void)R;
  run_base<K, T>(a...);
}

// A tile pairs samples [a0, a1) of A with [b0, b1) of B.
struct TilePair {
  int64_t a0, a1, b0, b1;
};

// Blocks of bsa samples of A times blocks of bsb of B, row by row; with `upper` only the
// tiles holding a pair nu >= mu (for B = A: b0 >= a0 when bsa = bsb).
inline std::vector<TilePair> tile_pairs(int64_t P, int64_t P2, int64_t bsa, int64_t bsb,
                                        bool upper) {
  std::vector<TilePair> t;
  for (int64_t a0 = 0; a0 < P; a0 += bsa)
    for (int64_t b0 = 0; b0 < P2; b0 += bsb) {
      const int64_t b1 = std::min(P2, b0 + bsb);
      if (upper && b1 <= a0) continue;
      t.push_back({a0, std::min(P, a0 + bsa), b0, b1});
    }
  return t;
}

// The fixed-group reduction: out[k] = sum over g < ngroups of slots[g n + k], in group
// order. Work split into a fixed number of contiguous groups, each summed into its own slot
// (on whichever thread), gives results independent of the thread count and schedule.
inline void reduce_slots(const std::vector<double>& slots, int64_t ngroups, int64_t n,
                         double* out) {
  std::fill(out, out + n, 0.0);
  for (int64_t g = 0; g < ngroups; ++g)
    for (int64_t k = 0; k < n; ++k) out[k] += slots[g * n + k];
}

}  // namespace tiles
}  // namespace lkr
