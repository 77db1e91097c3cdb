#include "train_step.hpp"

#include <algorithm>
#include <vector>

#include "blas_calls.hpp"
#include "dispatch.hpp"
#include "erf_v4.hpp"
#include "sigma.hpp"
#include "task_pool.hpp"

namespace lkr {
namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One segment of a sample's pre-activations (sigma.hpp's sigma_row; the AVX-512 erf pair
// of erf_v4.cpp where the machine has it).
template <Activation A, class T>
T segment(T* h, const T* u, int64_t len, T* s) {
  if constexpr (A == Activation::erf)
    if (erf_v4_ready()) return erf_segment_v4(h, u, len, s);
  return active_isa() >= Isa::v3 ? sigma_row_fast<A, T>(h, u, len, s)
                                 : sigma_row_base<A, T>(h, u, len, s);
}

// g[k] += r s[k] over a column block, and d[k] *= r (both vectorised).
template <class T>
LKR_INLINE void scale_row(T* d, int64_t len, T r) {
#pragma omp simd
  for (int64_t k = 0; k < len; ++k) d[k] *= r;
}

template <class T>
LKR_INLINE void axpy(T* g, const T* s, int64_t len, T r) {
#pragma omp simd
  for (int64_t k = 0; k < len; ++k) g[k] += r * s[k];
}

// The fixed tiling of a step (a function of the shapes only).
struct Tiling {
  int64_t ob;   // hidden units per phase-A tile (Kout when tiles hold whole rows)
  int64_t nob;  // tiles across the hidden units
  int64_t sb;   // samples per tile
  int64_t nsb;  // tiles across the samples
  int64_t wb;   // rows of gW per phase-C GEMM (Kout: the GEMMs split the samples)
  int64_t nwb;
  int64_t rb;  // GEMM rows (samples x R) per phase-C GEMM when it splits the samples
  int64_t nrb;
  int64_t kb;  // readout-gradient columns per phase-C task
  int64_t nkb;
  int64_t ngw() const { return nwb * nrb; }  // phase-C GEMM tasks per chain
  // One phase: each phase-A tile (whole rows) also contracts its own rows into partial
  // gradients, summed in tile order at the end; used when those partials (Kout Kin + K
  // values per tile) are small next to the tile's pre-activations. No phase C then.
  bool fused = false;
};

Tiling tiling(const StepShape& s) {
  Tiling t;
  // Tiles of whole rows (measured: splitting the hidden units too costs the GEMMs 20-150 %,
  // each call packing its operands again), so the readout sums stay in phase A.
  t.nob = 1;
  t.ob = s.Kout;
  // ~32k pre-activations per tile (the elementwise pass amortises a task's overhead), and
  // at least 128 GEMM rows where the inputs are long (the product's efficiency)
  int64_t sb = cdiv(int64_t(1) << 15, s.R * t.ob);
  if (s.Kin >= 128) sb = std::max(sb, cdiv(128, s.R));
  t.sb = std::max<int64_t>(1, std::min(sb, s.n));
  t.nsb = cdiv(s.n, t.sb);
  // gW = D^T Z: a GEMM packs all of its long (n R) dimension for each block of gW, so
  // blocks of gW rows pay off only when they are large (256 rows, e.g. FC);
  // otherwise the samples are split (blocks of >= 1024 GEMM rows, whole samples) and the
  // partial products summed in block order
  if (s.Kout >= 256) {
    t.wb = 256, t.nwb = cdiv(s.Kout, 256), t.rb = s.n * s.R, t.nrb = 1;
  } else {
    t.wb = s.Kout, t.nwb = 1;
    const int64_t per = std::max<int64_t>(1, cdiv(1024, s.R));
    t.nrb = std::max<int64_t>(1, std::min<int64_t>(8, s.n / per));
    t.rb = cdiv(s.n, t.nrb) * s.R;
    t.nrb = cdiv(s.n * s.R, t.rb);
  }
  // the readout gradient in blocks of 256 columns
  t.kb = 256;
  t.nkb = cdiv(s.K(), t.kb);
  t.fused = t.nob == 1 && 4 * (s.Kout * s.Kin + s.K()) <= t.sb * s.K();
  return t;
}

template <Activation A, class T>
void step(const T* Z, const StepShape& s, const T* W, const T* u, Chained<T> y, T scale,
          int nthreads, T* H, T* S, T* f, T* gu, T* gW) {
  const Tiling t = tiling(s);
  const int64_t K = s.K(), rows = s.n * s.R;
  std::vector<T> fpart(static_cast<size_t>(s.C * s.n * t.nob));
  std::vector<T> rc(static_cast<size_t>(s.C * s.n));

  // f, rc and D = rc * (sigma'(H) u) for samples [p0, p1) of chain c, from the partial sums
  auto finish_rows = [&](int64_t c, int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* fp = fpart.data() + (c * s.n + p) * t.nob;
      T acc = T(0);
      for (int64_t b = 0; b < t.nob; ++b) acc += fp[b];
      const T fv = scale * acc;
      const T r = scale * (fv - y.data[c * y.stride + p]);
      f[c * s.n + p] = fv;
      rc[c * s.n + p] = r;
      scale_row(H + (c * s.n + p) * K, K, r);
    }
  };

  // partial gradients of the one-phase form: per (chain, tile) gW (Kout Kin) then gu (K)
  const int64_t wsz = s.Kout * s.Kin, psz = wsz + K;
  std::vector<T> partial(t.fused ? static_cast<size_t>(s.C * t.nsb * psz) : 0);

  // (A) GEMM and elementwise pass, tile (chain, sample block, hidden block)
  run_tasks(nthreads, s.C * t.nsb * t.nob, [&](int64_t task, int) {
    const int64_t c = task / (t.nsb * t.nob), rest = task % (t.nsb * t.nob);
    const int64_t p0 = (rest / t.nob) * t.sb, p1 = std::min(s.n, p0 + t.sb);
    const int64_t b = rest % t.nob, a0 = b * t.ob, a1 = std::min(s.Kout, a0 + t.ob);
    T* Hc = H + c * s.n * K;
    T* Sc = S + c * s.n * K;
    gemm_rm<T>(false, true, (p1 - p0) * s.R, a1 - a0, s.Kin, T(1), Z + p0 * s.R * s.Kin, s.Kin,
               W + (c * s.Kout + a0) * s.Kin, s.Kin, T(0), Hc + p0 * K + a0, s.Kout);
    const T* uc = u + c * K;
    for (int64_t p = p0; p < p1; ++p) {
      T acc = T(0);
      for (int64_t i = 0; i < s.R; ++i) {
        const int64_t off = p * K + i * s.Kout + a0;
        acc += segment<A, T>(Hc + off, uc + i * s.Kout + a0, a1 - a0, Sc + off);
      }
      fpart[(c * s.n + p) * t.nob + b] = acc;
    }
    if (t.nob == 1) finish_rows(c, p0, p1);
    if (t.fused) {
      T* pw = partial.data() + (c * t.nsb + rest) * psz;
      T* pg = pw + wsz;
      gemm_rm<T>(true, false, s.Kout, s.Kin, (p1 - p0) * s.R, T(1), Hc + p0 * K, s.Kout,
                 Z + p0 * s.R * s.Kin, s.Kin, T(0), pw, s.Kin);
      std::fill(pg, pg + K, T(0));
      const T* rcc = rc.data() + c * s.n;
      for (int64_t p = p0; p < p1; ++p) axpy(pg, Sc + p * K, K, rcc[p]);
    }
  });
  if (t.fused) {  // the partials, in tile order
    for (int64_t c = 0; c < s.C; ++c) {
      const T* p0 = partial.data() + c * t.nsb * psz;
      T* w = gW + c * wsz;
      T* g = gu + c * K;
      std::copy(p0, p0 + wsz, w);
      std::copy(p0 + wsz, p0 + psz, g);
      for (int64_t b = 1; b < t.nsb; ++b) {
        axpy(w, p0 + b * psz, wsz, T(1));
        axpy(g, p0 + b * psz + wsz, K, T(1));
      }
    }
    return;
  }
  // (B) rows split across hidden blocks: their sums, f, rc and D
  if (t.nob > 1)
    run_tasks(nthreads, s.C * t.nsb, [&](int64_t task, int) {
      const int64_t c = task / t.nsb, p0 = (task % t.nsb) * t.sb;
      finish_rows(c, p0, std::min(s.n, p0 + t.sb));
    });
  // (C) gradients: gW blocks (GEMMs, first: the larger tasks) and readout columns
  const int64_t ngw = t.ngw(), per_chain = ngw + t.nkb;
  std::vector<T> part(t.nrb > 1 ? static_cast<size_t>(s.C * t.nrb * s.Kout * s.Kin) : 0);
  run_tasks(nthreads, s.C * per_chain, [&](int64_t task, int) {
    const int64_t c = task / per_chain, j = task % per_chain;
    const T* Dc = H + c * s.n * K;
    if (j < ngw) {
      const int64_t wbi = j / t.nrb, rbi = j % t.nrb;
      const int64_t a0 = wbi * t.wb, a1 = std::min(s.Kout, a0 + t.wb);
      const int64_t r0 = rbi * t.rb, r1 = std::min(rows, r0 + t.rb);
      T* out =
          t.nrb > 1 ? part.data() + (c * t.nrb + rbi) * s.Kout * s.Kin : gW + c * s.Kout * s.Kin;
      gemm_rm<T>(true, false, a1 - a0, s.Kin, r1 - r0, T(1), Dc + r0 * s.Kout + a0, s.Kout,
                 Z + r0 * s.Kin, s.Kin, T(0), out + a0 * s.Kin, s.Kin);
      return;
    }
    const int64_t k0 = (j - ngw) * t.kb, k1 = std::min(K, k0 + t.kb);
    T* g = gu + c * K + k0;
    std::fill(g, g + (k1 - k0), T(0));
    const T* Sc = S + c * s.n * K;
    const T* rcc = rc.data() + c * s.n;
    for (int64_t p = 0; p < s.n; ++p) axpy(g, Sc + p * K + k0, k1 - k0, rcc[p]);
  });
  if (t.nrb > 1) {  // the partial products, in block order (small: Kout Kin each)
    const int64_t w = s.Kout * s.Kin;
    for (int64_t c = 0; c < s.C; ++c) {
      T* out = gW + c * w;
      const T* p0 = part.data() + c * t.nrb * w;
      std::copy(p0, p0 + w, out);
      for (int64_t b = 1; b < t.nrb; ++b) axpy(out, p0 + b * w, w, T(1));
    }
  }
}

}  // namespace

template <class T>
void train_step(const T* Z, const StepShape& s, const T* W, const T* u, Chained<T> y, T scale,
                Activation act, int nthreads, T* H, T* S, T* f, T* gu, T* gW) {
  if (s.C <= 0 || s.n <= 0 || s.Kout <= 0) return;
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    step<A, T>(Z, s, W, u, y, scale, nthreads, H, S, f, gu, gW);
  });
}

template void train_step<float>(const float*, const StepShape&, const float*, const float*,
                                Chained<float>, float, Activation, int, float*, float*, float*,
                                float*, float*);
template void train_step<double>(const double*, const StepShape&, const double*, const double*,
                                 Chained<double>, double, Activation, int, double*, double*,
                                 double*, double*, double*);

}  // namespace lkr
