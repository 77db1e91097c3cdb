#include "noise.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dispatch.hpp"
#include "task_pool.hpp"

namespace lkr {
namespace {

constexpr int64_t kBlocks = 1024;  // Philox blocks per chunk

template <class To, class From>
LKR_INLINE To bits(From x) {
  To y;
  std::memcpy(&y, &x, sizeof(To));
  return y;
}

// Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1).
LKR_INLINE void philox(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0,
                       uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t h0 = uint32_t(p0 >> 32), l0 = uint32_t(p0), h1 = uint32_t(p1 >> 32),
                   l1 = uint32_t(p1);
    c0 = h1 ^ c1 ^ k0;
    c1 = l1;
    c2 = h0 ^ c3 ^ k1;
    c3 = l0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

// -2 ln u for u in (0, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s),
// s = (m - 1)/(m + 1), |s| <= 0.172 (series to s^23 in double, s^11 in float).
template <class T>
struct Fmt;
template <>
struct Fmt<double> {
  using U = uint64_t;
  static constexpr int mant = 52, bias = 1023, terms = 12;
};
template <>
struct Fmt<float> {
  using U = uint32_t;
  static constexpr int mant = 23, bias = 127, terms = 6;
};

template <class T>
LKR_INLINE T minus_two_log(T u) {
  using F = Fmt<T>;
  using U = typename F::U;
  const U b = bits<U>(u);
  T e = T(int32_t(b >> F::mant) - F::bias);
  T m = bits<T>(U((b & ((U(1) << F::mant) - 1)) | (U(F::bias) << F::mant)));  // [1, 2)
  const bool big = m > T(1.4142135623730951);
  m = big ? m * T(0.5) : m;
  e = big ? e + T(1) : e;
  const T s = (m - T(1)) / (m + T(1)), s2 = s * s;
  T p = T(1) / T(2 * F::terms - 1);
  for (int k = F::terms - 2; k >= 0; --k) p = p * s2 + T(1) / T(2 * k + 1);
  const T ln = e * T(0.69314718055994530942) + T(2) * s * p;
  return T(-2) * ln;
}

// sin and cos of phi, |phi| <= pi/4, by Taylor series (to phi^17 / phi^16 in double,
// phi^11 / phi^10 in float).
template <class T>
LKR_INLINE void sincos_small(T phi, T& s, T& c) {
  constexpr int ns = sizeof(T) == 8 ? 9 : 6;  // odd terms phi^1 .. phi^(2 ns - 1)
  const T x2 = phi * phi;
  T ps = T(1), pc = T(1);
  // Horner from the top: sin = phi (1 - x2/(2*3) (1 - x2/(4*5) (...)))
  for (int k = ns - 1; k >= 1; --k) {
    ps = T(1) - x2 * (T(1) / T((2 * k) * (2 * k + 1))) * ps;
    pc = T(1) - x2 * (T(1) / T((2 * k - 1) * (2 * k))) * pc;
  }
  s = phi * ps;
  c = pc;
}

// The four (float) or two (double) normals of block `blk` for (key, stream, step).
template <class T>
LKR_INLINE void block_normals(uint64_t blk, uint64_t key, uint32_t stream, uint64_t step, T* z,
                              int64_t stride) {
  uint32_t c0 = uint32_t(blk), c1 = uint32_t(blk >> 32) ^ uint32_t(step >> 32) << 16,
           c2 = uint32_t(step), c3 = stream;
  philox(c0, c1, c2, c3, uint32_t(key), uint32_t(key >> 32));
  constexpr T quarter_pi = T(0.78539816339744830962);
  if constexpr (sizeof(T) == 4) {
    const uint32_t w[4] = {c0, c1, c2, c3};
    for (int h = 0; h < 2; ++h) {
      // int32 conversions (exact: < 2^30), which AVX2 has and unsigned ones it has not
      const T u = T(int32_t(w[2 * h] >> 8)) * T(5.9604644775390625e-08) +
                  T(2.98023223876953125e-08);  // (k + 1/2) 2^-24, never 0
      const uint32_t v = w[2 * h + 1];
      const T phi =
          (T(int32_t(v & 0x3FFFFFFFu)) * T(9.313225746154785e-10) - T(0.5)) * T(2) * quarter_pi;
      T s, c;
      sincos_small(phi, s, c);
      const T r = std::sqrt(minus_two_log(u));
      const uint32_t q = v >> 30;  // quadrant: angle q pi/2 + phi
      const T cs = (q & 1) ? -s : c, sn = (q & 1) ? c : s;
      const T sg = (q & 2) ? T(-1) : T(1);
      z[(2 * h) * stride] = r * sg * cs;
      z[(2 * h + 1) * stride] = r * sg * sn;
    }
  } else {
    // uniforms from the mantissa bits (1 + f) - 1, no 64-bit integer conversion (AVX2 has none)
    const uint64_t one = 0x3FF0000000000000ull;
    const uint64_t uu = (uint64_t(c0) << 32 | c1) >> 12;                    // 52 bits
    const T u = (bits<T>(one | uu) - T(1)) + T(1.1102230246251565e-16);     // (k + 1/2) 2^-52
    const uint64_t vv = ((uint64_t(c2 & 0x3FFFFFFFu) << 22) | (c3 >> 10));  // 52 bits
    const T phi = ((bits<T>(one | vv) - T(1)) - T(0.5)) * T(2) * quarter_pi;
    T s, c;
    sincos_small(phi, s, c);
    const T r = std::sqrt(minus_two_log(u));
    const uint32_t q = c2 >> 30;
    const T cs = (q & 1) ? -s : c, sn = (q & 1) ? c : s;
    const T sg = (q & 2) ? T(-1) : T(1);
    z[0] = r * sg * cs;
    z[stride] = r * sg * sn;
  }
}

template <class T>
constexpr int slots() {
  return sizeof(T) == 4 ? 4 : 2;
}

// The normals of one chunk: z[j * kBlocks + b] = normal j of block chunk * kBlocks + b.
template <class T>
LKR_INLINE void chunk_body(int64_t chunk, uint64_t key, uint32_t stream, uint64_t step, T* z) {
#pragma omp simd
  for (int64_t b = 0; b < kBlocks; ++b)
    block_normals<T>(uint64_t(chunk) * kBlocks + b, key, stream, step, z + b, kBlocks);
}

template <class T>
LKR_TARGET_FAST void chunk_fast(int64_t chunk, uint64_t key, uint32_t stream, uint64_t step, T* z) {
  chunk_body<T>(chunk, key, stream, step, z);
}
#if LKR_DISPATCH
template <class T>
LKR_TARGET_V4 void chunk_v4(int64_t chunk, uint64_t key, uint32_t stream, uint64_t step, T* z) {
  chunk_body<T>(chunk, key, stream, step, z);
}
#endif
template <class T>
void chunk_base(int64_t chunk, uint64_t key, uint32_t stream, uint64_t step, T* z) {
  chunk_body<T>(chunk, key, stream, step, z);
}

template <class T>
void chunk_normals(int64_t chunk, uint64_t key, uint32_t stream, uint64_t step, T* z) {
  const Isa isa = active_isa();
#if LKR_DISPATCH
  if (isa >= Isa::v4) return chunk_v4<T>(chunk, key, stream, step, z);
#endif
  if (isa >= Isa::v3) return chunk_fast<T>(chunk, key, stream, step, z);
  chunk_base<T>(chunk, key, stream, step, z);
}

template <class T>
void apply(T* a, const T* g, const T* z, int64_t m, T decay, T lr, T amp) {
#pragma omp simd
  for (int64_t i = 0; i < m; ++i) a[i] = decay * a[i] - lr * g[i] + amp * z[i];
}

}  // namespace

template <class T>
void langevin_update(T* a, const T* g, int64_t n, T decay, T lr, T amp, uint64_t key,
                     uint32_t stream, uint64_t step, int nthreads) {
  const int64_t csize = slots<T>() * kBlocks;
  const int64_t nchunks = (n + csize - 1) / csize;
  constexpr int64_t per_task = 16;  // 32k-64k values per task
  const int64_t ntasks = (nchunks + per_task - 1) / per_task;
  run_tasks(nthreads, ntasks, [&](int64_t task, int) {
    alignas(64) T z[slots<T>() * kBlocks];
    const int64_t c1 = std::min(nchunks, (task + 1) * per_task);
    for (int64_t c = task * per_task; c < c1; ++c) {
      chunk_normals<T>(c, key, stream, step, z);
      const int64_t i0 = c * csize, m = std::min(csize, n - i0);
      apply(a + i0, g + i0, z, m, decay, lr, amp);
    }
  });
}

template <class T>
void philox_normals(T* out, int64_t n, uint64_t key, uint32_t stream, uint64_t step) {
  const int64_t csize = slots<T>() * kBlocks;
  alignas(64) T z[slots<T>() * kBlocks];
  for (int64_t c = 0; c * csize < n; ++c) {
    chunk_normals<T>(c, key, stream, step, z);
    const int64_t i0 = c * csize, m = std::min(csize, n - i0);
    std::copy(z, z + m, out + i0);
  }
}

template void langevin_update<float>(float*, const float*, int64_t, float, float, float, uint64_t,
                                     uint32_t, uint64_t, int);
template void langevin_update<double>(double*, const double*, int64_t, double, double, double,
                                      uint64_t, uint32_t, uint64_t, int);
template void philox_normals<float>(float*, int64_t, uint64_t, uint32_t, uint64_t);
template void philox_normals<double>(double*, int64_t, uint64_t, uint32_t, uint64_t);

}  // namespace lkr
