#include "nets.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "dispatch.hpp"
#include "erf_v4.hpp"
#include "fast_math.hpp"
#include "sigma.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

// Every hot routine (one sample's pass) exists twice: compiled for AVX2 + FMA with the
// vectorisable erf/exp of fast_math.hpp, and for the baseline ISA with libm (where the fast
// double erf cannot vectorise and would be slower than libm). The choice is made at run
// time from the CPU (dispatch.hpp), so the default build stays portable without
// -march=native.

namespace lkr {
namespace {

// Whether the AVX2/FMA variants run (never on a CPU that lacks them).
bool use_fast() { return active_isa() >= Isa::v3; }

// Threads for a pass of `work` multiply-adds: one for small problems, where waking the
// pool costs more than the pass (and much more on an oversubscribed machine).
int threads(int n, int64_t work) { return omp_threads_for(n, work); }

// Filters transposed to (Np' , M, Nc) (Np' = Np for LCN, 1 for CNN) and readouts to
// (Np, Nc): the channel index becomes the contiguous one, so that h_{a i} for all a is a
// sum of M contiguous axpys.
template <class T>
std::vector<T> transpose_filters(const T* W, const PatchNetShape& s) {
  const int64_t Nc = s.Nc, M = s.M, npw = s.local ? s.Np : 1;
  std::vector<T> out(static_cast<size_t>(s.w_size()));
  for (int64_t a = 0; a < Nc; ++a)
    for (int64_t i = 0; i < npw; ++i)
      for (int64_t m = 0; m < M; ++m) out[(i * M + m) * Nc + a] = W[(a * npw + i) * M + m];
  return out;
}

template <class T>
std::vector<T> transpose_readout(const T* v, const PatchNetShape& s) {
  std::vector<T> out(static_cast<size_t>(s.v_size()));
  for (int64_t a = 0; a < s.Nc; ++a)
    for (int64_t i = 0; i < s.Np; ++i) out[i * s.Nc + a] = v[a * s.Np + i];
  return out;
}

// Transposed copies of every distinct parameter set of a chained operand.
template <class T>
std::vector<std::vector<T>> transpose_all(Chained<T> x, int64_t C, const PatchNetShape& s,
                                          bool filters) {
  const int64_t n = x.stride ? C : 1;
  std::vector<std::vector<T>> out(static_cast<size_t>(n));
  for (int64_t c = 0; c < n; ++c)
    out[c] = filters ? transpose_filters(x.data + c * x.stride, s)
                     : transpose_readout(x.data + c * x.stride, s);
  return out;
}

template <class T>
const T* pick(const std::vector<std::vector<T>>& sets, int64_t c) {
  return sets.size() == 1 ? sets[0].data() : sets[c].data();
}

// h[a] = scale * sum_m Wt[m, a] z[m] for a < n; Wt has leading dimension ld.
template <class T>
LKR_INLINE void preact(const T* z, const T* Wt, int64_t ld, int64_t n, int64_t M, T scale, T* h) {
  for (int64_t a = 0; a < n; ++a) h[a] = T(0);
  for (int64_t m = 0; m < M; ++m) {
    const T zm = z[m] * scale;
    const T* w = Wt + m * ld;
#pragma omp simd
    for (int64_t a = 0; a < n; ++a) h[a] += w[a] * zm;
  }
}

template <class T>
struct Scales {
  T inv_sqrt_m, cs;
  explicit Scales(const PatchNetShape& s)
      : inv_sqrt_m(T(1) / std::sqrt(T(s.M))), cs(T(1) / std::sqrt(T(s.Nc) * T(s.Np))) {}
};

// -- one sample's passes (bodies; instantiated below as fast and baseline routines) --------

// f(x) for one sample.
template <Activation A, bool Fast, class T>
LKR_INLINE T forward_body(const T* z, const PatchNetShape& s, const T* wt, const T* vt,
                          const Scales<T>& k, T* h) {
  T acc = T(0);
  for (int64_t i = 0; i < s.Np; ++i) {
    preact(z + i * s.M, wt + (s.local ? i * s.M * s.Nc : 0), s.Nc, s.Nc, s.M, k.inv_sqrt_m, h);
    const T* vi = vt + i * s.Nc;
    T part = T(0);
#pragma omp simd reduction(+ : part)
    for (int64_t a = 0; a < s.Nc; ++a) part += vi[a] * sig<A, Fast>(h[a]);
    acc += part;
  }
  return acc * k.cs;
}

// Accumulate the gradient of r f(x) for one sample into transposed buffers dWt, dvt.
template <Activation A, bool Fast, class T>
LKR_INLINE void vjp_body(const T* z, T r, const PatchNetShape& s, const T* Wt, const T* vt,
                         const Scales<T>& k, T* h, T* g, T* dWt, T* dvt) {
  const int64_t Nc = s.Nc, M = s.M;
  for (int64_t i = 0; i < s.Np; ++i) {
    const int64_t wi = s.local ? i * M * Nc : 0;
    const T* zi = z + i * M;
    preact(zi, Wt + wi, Nc, Nc, M, k.inv_sqrt_m, h);
    const T* vi = vt + i * Nc;
    T* dvi = dvt + i * Nc;
    const T rs = r * k.cs, rg = r * k.cs * k.inv_sqrt_m;
#pragma omp simd
    for (int64_t a = 0; a < Nc; ++a) {
      dvi[a] += rs * sig<A, Fast>(h[a]);
      g[a] = rg * vi[a] * dsig<A, Fast>(h[a]);
    }
    for (int64_t m = 0; m < M; ++m) {
      const T zm = zi[m];
      T* d = dWt + wi + m * Nc;
#pragma omp simd
      for (int64_t a = 0; a < Nc; ++a) d[a] += g[a] * zm;
    }
  }
}

// f(x) and the gradient of (1/2)(y - f(x))^2 for one sample in one pass: the activations
// of the sample are kept (Np x Nc values) between the output and its backward pass, so
// each erf/exp is evaluated once instead of twice (forward, then vjp).
template <Activation A, bool Fast, class T>
LKR_INLINE T value_grad_body(const T* z, T y, const PatchNetShape& s, const T* Wt, const T* vt,
                             const Scales<T>& k, T* hs, T* hd, T* dWt, T* dvt) {
  const int64_t Nc = s.Nc, M = s.M;
  T acc = T(0);
  for (int64_t i = 0; i < s.Np; ++i) {
    T* si = hs + i * Nc;
    T* di = hd + i * Nc;
    preact(z + i * M, Wt + (s.local ? i * M * Nc : 0), Nc, Nc, M, k.inv_sqrt_m, si);
    const T* vi = vt + i * Nc;
    T part = T(0);
#pragma omp simd reduction(+ : part)
    for (int64_t a = 0; a < Nc; ++a) {
      const T h = si[a];
      di[a] = vi[a] * dsig<A, Fast>(h);
      si[a] = sig<A, Fast>(h);
      part += vi[a] * si[a];
    }
    acc += part;
  }
  const T f = acc * k.cs;
  // d/dtheta (1/2)(y - f)^2 = -(y - f) df/dtheta
  const T rs = -(y - f) * k.cs, rg = rs * k.inv_sqrt_m;
  for (int64_t i = 0; i < s.Np; ++i) {
    const int64_t wi = s.local ? i * M * Nc : 0;
    const T* zi = z + i * M;
    const T *si = hs + i * Nc, *di = hd + i * Nc;
    T* dvi = dvt + i * Nc;
#pragma omp simd
    for (int64_t a = 0; a < Nc; ++a) dvi[a] += rs * si[a];
    for (int64_t m = 0; m < M; ++m) {
      const T zm = rg * zi[m];
      T* d = dWt + wi + m * Nc;
#pragma omp simd
      for (int64_t a = 0; a < Nc; ++a) d[a] += di[a] * zm;
    }
  }
  return f;
}

// J(x) t for one sample.
template <Activation A, bool Fast, class T>
LKR_INLINE T jvp_body(const T* z, const PatchNetShape& s, const T* wt, const T* vt, const T* twt,
                      const T* tvt, const Scales<T>& k, T* h, T* dh) {
  T acc = T(0);
  for (int64_t i = 0; i < s.Np; ++i) {
    const int64_t wi = s.local ? i * s.M * s.Nc : 0;
    preact(z + i * s.M, wt + wi, s.Nc, s.Nc, s.M, k.inv_sqrt_m, h);
    preact(z + i * s.M, twt + wi, s.Nc, s.Nc, s.M, k.inv_sqrt_m, dh);
    const T *vi = vt + i * s.Nc, *tvi = tvt + i * s.Nc;
    T part = T(0);
#pragma omp simd reduction(+ : part)
    for (int64_t a = 0; a < s.Nc; ++a)
      part += vi[a] * dsig<A, Fast>(h[a]) * dh[a] + tvi[a] * sig<A, Fast>(h[a]);
    acc += part;
  }
  return acc * k.cs;
}

// NTK features of one sample for channels [a0, a0 + nb) (see nets.hpp).
template <Activation A, bool Fast, class T>
LKR_INLINE void features_body(const T* z, const PatchNetShape& s, const T* Wt, const T* vt,
                              int64_t a0, int64_t nb, const Scales<T>& k, T* h, T* e, T* Sp,
                              T* Gp) {
  const int64_t Nc = s.Nc, M = s.M, Np = s.Np;
  const T cg = k.cs * k.inv_sqrt_m;
  if (!s.local)
    for (int64_t j = 0; j < nb * M; ++j) Gp[j] = T(0);
  for (int64_t i = 0; i < Np; ++i) {
    const T* zi = z + i * M;
    preact(zi, Wt + (s.local ? i * M * Nc : 0) + a0, Nc, nb, M, k.inv_sqrt_m, h);
    const T* vi = vt + i * Nc + a0;
    // contiguous in b here (vectorised), scattered to the (b, i) layout of S below
#pragma omp simd
    for (int64_t b = 0; b < nb; ++b) {
      const T hb = h[b];
      e[b] = cg * vi[b] * dsig<A, Fast>(hb);
      h[b] = k.cs * sig<A, Fast>(hb);
    }
    for (int64_t b = 0; b < nb; ++b) Sp[b * Np + i] = h[b];
    if (s.local) {
      for (int64_t b = 0; b < nb; ++b) Gp[b * Np + i] = e[b];
    } else {
      for (int64_t b = 0; b < nb; ++b)
        for (int64_t m = 0; m < M; ++m) Gp[b * M + m] += e[b] * zi[m];
    }
  }
}

template <Activation A, bool Fast, class T>
LKR_INLINE void activation_body(const T* h, int64_t n, T* s, T* d) {
  if (d) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      s[j] = sig<A, Fast>(h[j]);
      d[j] = dsig<A, Fast>(h[j]);
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) s[j] = sig<A, Fast>(h[j]);
  }
}

// The two compiled variants of each body, and the run-time choice between them.
#define LKR_VARIANTS(ret, name, body, params, args)                                                \
  template <Activation A, class T>                                                                 \
  LKR_TARGET_FAST ret name##_fast params {                                                         \
    return body<A, true, T> args;                                                                  \
  }                                                                                                \
  template <Activation A, class T>                                                                 \
  ret name##_base params {                                                                         \
    return body<A, false, T> args;                                                                 \
  }                                                                                                \
  template <Activation A, class T>                                                                 \
  inline ret name params {                                                                         \
    return use_fast() ? name##_fast<A, T> args : name##_base<A, T> args;                           \
  }

LKR_VARIANTS(T, forward_sample, forward_body,
             (const T* z, const PatchNetShape& s, const T* wt, const T* vt, const Scales<T>& k,
              T* h),
             (z, s, wt, vt, k, h))
LKR_VARIANTS(void, vjp_sample, vjp_body,
             (const T* z, T r, const PatchNetShape& s, const T* Wt, const T* vt, const Scales<T>& k,
              T* h, T* g, T* dWt, T* dvt),
             (z, r, s, Wt, vt, k, h, g, dWt, dvt))
LKR_VARIANTS(T, value_grad_sample, value_grad_body,
             (const T* z, T y, const PatchNetShape& s, const T* Wt, const T* vt, const Scales<T>& k,
              T* hs, T* hd, T* dWt, T* dvt),
             (z, y, s, Wt, vt, k, hs, hd, dWt, dvt))
LKR_VARIANTS(T, jvp_sample, jvp_body,
             (const T* z, const PatchNetShape& s, const T* wt, const T* vt, const T* twt,
              const T* tvt, const Scales<T>& k, T* h, T* dh),
             (z, s, wt, vt, twt, tvt, k, h, dh))
LKR_VARIANTS(void, features_sample, features_body,
             (const T* z, const PatchNetShape& s, const T* Wt, const T* vt, int64_t a0, int64_t nb,
              const Scales<T>& k, T* h, T* e, T* Sp, T* Gp),
             (z, s, Wt, vt, a0, nb, k, h, e, Sp, Gp))
LKR_VARIANTS(void, activation_span, activation_body, (const T* h, int64_t n, T* s, T* d),
             (h, n, s, d))
#undef LKR_VARIANTS

template <class T>
void untranspose(const T* dWt, const T* dvt, const PatchNetShape& s, T* dW, T* dv) {
  const int64_t Nc = s.Nc, M = s.M, npw = s.local ? s.Np : 1;
  for (int64_t a = 0; a < Nc; ++a) {
    for (int64_t i = 0; i < npw; ++i)
      for (int64_t m = 0; m < M; ++m) dW[(a * npw + i) * M + m] = dWt[(i * M + m) * Nc + a];
    for (int64_t i = 0; i < s.Np; ++i) dv[a * s.Np + i] = dvt[i * Nc + a];
  }
}

// The gradient passes' sum over samples, for C chains: sample(c, p, a, b, dWt, dvt) adds
// sample p of chain c to the transposed gradients dWt, dvt, with a and b two scratch buffers
// of `scratch` values; the sums are untransposed into dW (C, w_size) and dv (C, v_size).
// With enough chains to go round, each thread takes whole chains (no reduction); with few,
// the samples of each chain are split over the threads and the per-thread sums added in a
// fixed order, so that the result does not depend on scheduling.
template <class T, class Sample>
void sum_over_samples(const PatchNetShape& s, int64_t C, int nt, int64_t scratch, T* dW, T* dv,
                      Sample&& sample) {
  const int64_t nw = s.w_size(), nv = s.v_size();
  if (C >= nt) {
#pragma omp parallel num_threads(nt)
    {
      std::vector<T> a(scratch), b(scratch), dWt(nw), dvt(nv);
#pragma omp for schedule(dynamic, 1)
      for (int64_t c = 0; c < C; ++c) {
        std::fill(dWt.begin(), dWt.end(), T(0));
        std::fill(dvt.begin(), dvt.end(), T(0));
        for (int64_t p = 0; p < s.P; ++p) sample(c, p, a.data(), b.data(), dWt.data(), dvt.data());
        untranspose(dWt.data(), dvt.data(), s, dW + c * nw, dv + c * nv);
      }
    }
    return;
  }
  std::vector<std::vector<T>> accW(nt, std::vector<T>(nw)), accV(nt, std::vector<T>(nv));
  std::vector<T> dWt(nw), dvt(nv);
  for (int64_t c = 0; c < C; ++c) {
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
      const int t = omp_get_thread_num();
#else
      const int t = 0;
#endif
      std::vector<T> a(scratch), b(scratch);
      std::fill(accW[t].begin(), accW[t].end(), T(0));
      std::fill(accV[t].begin(), accV[t].end(), T(0));
#pragma omp for schedule(static)
      for (int64_t p = 0; p < s.P; ++p)
        sample(c, p, a.data(), b.data(), accW[t].data(), accV[t].data());
    }
    std::fill(dWt.begin(), dWt.end(), T(0));
    std::fill(dvt.begin(), dvt.end(), T(0));
    for (int t = 0; t < nt; ++t) {
      for (int64_t j = 0; j < nw; ++j) dWt[j] += accW[t][j];
      for (int64_t j = 0; j < nv; ++j) dvt[j] += accV[t][j];
    }
    untranspose(dWt.data(), dvt.data(), s, dW + c * nw, dv + c * nv);
  }
}

}  // namespace

bool set_fast_math(bool enabled) { return set_isa_cap(enabled ? Isa::v4 : Isa::base) >= Isa::v3; }

template <class T>
void patch_forward(const T* Z, const PatchNetShape& s, Chained<T> W, Chained<T> v, int64_t C,
                   Activation act, int nthreads, T* out) {
  const auto Wt = transpose_all(W, C, s, true);
  const auto vt = transpose_all(v, C, s, false);
  const Scales<T> k(s);
  const int nt = threads(nthreads, C * s.P * s.Np * s.Nc * (s.M + 1));
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
#pragma omp parallel num_threads(nt)
    {
      std::vector<T> h(static_cast<size_t>(s.Nc));
#pragma omp for schedule(static)
      for (int64_t cp = 0; cp < C * s.P; ++cp) {
        const int64_t c = cp / s.P, p = cp % s.P;
        out[cp] =
            forward_sample<A, T>(Z + p * s.Np * s.M, s, pick(Wt, c), pick(vt, c), k, h.data());
      }
    }
  });
}

template <class T>
void patch_vjp(const T* Z, const PatchNetShape& s, Chained<T> W, Chained<T> v, Chained<T> r,
               int64_t C, Activation act, int nthreads, T* dW, T* dv) {
  const auto Wt = transpose_all(W, C, s, true);
  const auto vt = transpose_all(v, C, s, false);
  const Scales<T> k(s);
  const int nt = threads(nthreads, C * s.P * s.Np * s.Nc * (s.M + 1));
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    sum_over_samples<T>(s, C, nt, s.Nc, dW, dv,
                        [&](int64_t c, int64_t p, T* h, T* g, T* dWt, T* dvt) {
                          // rows of an identity (a Jacobian by vjp) are mostly zero
                          const T rp = r.data[c * r.stride + p];
                          if (rp != T(0))
                            vjp_sample<A, T>(Z + p * s.Np * s.M, rp, s, pick(Wt, c), pick(vt, c), k,
                                             h, g, dWt, dvt);
                        });
  });
}

template <class T>
void patch_value_and_grad(const T* Z, const PatchNetShape& s, Chained<T> W, Chained<T> v,
                          Chained<T> y, int64_t C, Activation act, int nthreads, T* f, T* dW,
                          T* dv) {
  const auto Wt = transpose_all(W, C, s, true);
  const auto vt = transpose_all(v, C, s, false);
  const Scales<T> k(s);
  const int nt = threads(nthreads, C * s.P * s.Np * s.Nc * (s.M + 1));
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    sum_over_samples<T>(
        s, C, nt, s.Np * s.Nc, dW, dv, [&](int64_t c, int64_t p, T* hs, T* hd, T* dWt, T* dvt) {
          f[c * s.P + p] = value_grad_sample<A, T>(Z + p * s.Np * s.M, y.data[c * y.stride + p], s,
                                                   pick(Wt, c), pick(vt, c), k, hs, hd, dWt, dvt);
        });
  });
}

template <class T>
void patch_jvp(const T* Z, const PatchNetShape& s, Chained<T> W, Chained<T> v, Chained<T> tW,
               Chained<T> tv, int64_t C, Activation act, int nthreads, T* out) {
  const auto Wt = transpose_all(W, C, s, true);
  const auto vt = transpose_all(v, C, s, false);
  const auto tWt = transpose_all(tW, C, s, true);
  const auto tvt = transpose_all(tv, C, s, false);
  const Scales<T> k(s);
  const int nt = threads(nthreads, C * s.P * s.Np * s.Nc * (s.M + 1));
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
#pragma omp parallel num_threads(nt)
    {
      std::vector<T> h(s.Nc), dh(s.Nc);
#pragma omp for schedule(static)
      for (int64_t cp = 0; cp < C * s.P; ++cp) {
        const int64_t c = cp / s.P, p = cp % s.P;
        out[cp] = jvp_sample<A, T>(Z + p * s.Np * s.M, s, pick(Wt, c), pick(vt, c), pick(tWt, c),
                                   pick(tvt, c), k, h.data(), dh.data());
      }
    }
  });
}

template <class T>
void patch_features(const T* Z, const PatchNetShape& s, const T* W, const T* v, int64_t a0,
                    int64_t a1, Activation act, int nthreads, T* S, int64_t ldS, T* G,
                    int64_t ldG) {
  const auto Wt = transpose_filters(W, s);
  const auto vt = transpose_readout(v, s);
  const Scales<T> k(s);
  const int64_t nb = a1 - a0;
  const int nt = threads(nthreads, s.P * s.Np * nb * (s.M + 1));
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
#pragma omp parallel num_threads(nt)
    {
      std::vector<T> h(nb), e(nb);
#pragma omp for schedule(static)
      for (int64_t p = 0; p < s.P; ++p)
        features_sample<A, T>(Z + p * s.Np * s.M, s, Wt.data(), vt.data(), a0, nb, k, h.data(),
                              e.data(), S + p * ldS, G + p * ldG);
    }
  });
}

template <class T>
void activation_pair(const T* h, int64_t n, Activation act, int nthreads, T* s, T* d) {
  const int nt = threads(nthreads, 8 * n);
  constexpr int64_t chunk = 4096;
  const bool v4 = act == Activation::erf && erf_v4_ready();
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t j0 = 0; j0 < n; j0 += chunk) {
      const int64_t m = std::min(chunk, n - j0);
      if (v4) erf_pair_v4(h + j0, m, s + j0, d ? d + j0 : nullptr);
      else activation_span<A, T>(h + j0, m, s + j0, d ? d + j0 : nullptr);
    }
  });
}

#define LKR_INSTANTIATE_NETS(T)                                                                    \
  template void patch_forward<T>(const T*, const PatchNetShape&, Chained<T>, Chained<T>, int64_t,  \
                                 Activation, int, T*);                                             \
  template void patch_vjp<T>(const T*, const PatchNetShape&, Chained<T>, Chained<T>, Chained<T>,   \
                             int64_t, Activation, int, T*, T*);                                    \
  template void patch_value_and_grad<T>(const T*, const PatchNetShape&, Chained<T>, Chained<T>,    \
                                        Chained<T>, int64_t, Activation, int, T*, T*, T*);         \
  template void patch_jvp<T>(const T*, const PatchNetShape&, Chained<T>, Chained<T>, Chained<T>,   \
                             Chained<T>, int64_t, Activation, int, T*);                            \
  template void patch_features<T>(const T*, const PatchNetShape&, const T*, const T*, int64_t,     \
                                  int64_t, Activation, int, T*, int64_t, T*, int64_t);             \
  template void activation_pair<T>(const T*, int64_t, Activation, int, T*, T*);
LKR_INSTANTIATE_NETS(float)
LKR_INSTANTIATE_NETS(double)

}  // namespace lkr
