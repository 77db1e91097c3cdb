#include "nets.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lkr {
namespace {

// Threads for a pass of `work` multiply-adds: one for small problems, where waking the
// pool costs more than the pass (and much more on an oversubscribed machine).
int threads(int n, int64_t work) {
#ifdef _OPENMP
  if (work < (int64_t(1) << 16)) return 1;
  return n > 0 ? n : omp_get_max_threads();
#else
  (void)n, (void)work;
  return 1;
#endif
}

template <Activation A>
using ActTag = std::integral_constant<Activation, A>;

// Call f with the activation as a compile-time constant, so that the inner loops of linear
// and relu vectorise and none of them branches on the activation per element.
template <class F>
void with_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::linear: f(ActTag<Activation::linear>{}); break;
    case Activation::erf: f(ActTag<Activation::erf>{}); break;
    case Activation::relu: f(ActTag<Activation::relu>{}); break;
  }
}

template <Activation A, class T>
inline T sig(T h) {
  if constexpr (A == Activation::linear) return h;
  else if constexpr (A == Activation::erf) return std::erf(h);
  else return h > T(0) ? h : T(0);
}

template <Activation A, class T>
inline T dsig(T h) {
  if constexpr (A == Activation::linear) return T(1);
  else if constexpr (A == Activation::erf)
    return T(1.1283791670955125738961589031215452) * std::exp(-h * h);  // 2/sqrt(pi)
  else return h > T(0) ? T(1) : T(0);
}

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
inline void preact(const T* z, const T* Wt, int64_t ld, int64_t n, int64_t M, T scale, T* h) {
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

// Accumulate the gradient of r f(x) for one sample into transposed buffers dWt, dvt.
template <Activation A, class T>
inline void vjp_sample(const T* z, T r, const PatchNetShape& s, const T* Wt, const T* vt,
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
      dvi[a] += rs * sig<A>(h[a]);
      g[a] = rg * vi[a] * dsig<A>(h[a]);
    }
    for (int64_t m = 0; m < M; ++m) {
      const T zm = zi[m];
      T* d = dWt + wi + m * Nc;
#pragma omp simd
      for (int64_t a = 0; a < Nc; ++a) d[a] += g[a] * zm;
    }
  }
}

template <class T>
void untranspose(const T* dWt, const T* dvt, const PatchNetShape& s, T* dW, T* dv) {
  const int64_t Nc = s.Nc, M = s.M, npw = s.local ? s.Np : 1;
  for (int64_t a = 0; a < Nc; ++a) {
    for (int64_t i = 0; i < npw; ++i)
      for (int64_t m = 0; m < M; ++m) dW[(a * npw + i) * M + m] = dWt[(i * M + m) * Nc + a];
    for (int64_t i = 0; i < s.Np; ++i) dv[a * s.Np + i] = dvt[i * Nc + a];
  }
}

}  // namespace

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
        const T* wt = pick(Wt, c);
        const T* vtc = pick(vt, c);
        const T* z = Z + p * s.Np * s.M;
        T acc = T(0);
        for (int64_t i = 0; i < s.Np; ++i) {
          preact(z + i * s.M, wt + (s.local ? i * s.M * s.Nc : 0), s.Nc, s.Nc, s.M,
                 k.inv_sqrt_m, h.data());
          const T* vi = vtc + i * s.Nc;
          T part = T(0);
#pragma omp simd reduction(+ : part)
          for (int64_t a = 0; a < s.Nc; ++a) part += vi[a] * sig<A>(h[a]);
          acc += part;
        }
        out[cp] = acc * k.cs;
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
  const int64_t nw = s.w_size(), nv = s.v_size();
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    if (C >= nt) {
      // Enough chains to go round: one chain per task, no reduction.
#pragma omp parallel num_threads(nt)
      {
        std::vector<T> h(s.Nc), g(s.Nc), dWt(nw), dvt(nv);
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < C; ++c) {
          std::fill(dWt.begin(), dWt.end(), T(0));
          std::fill(dvt.begin(), dvt.end(), T(0));
          const T* rc = r.data + c * r.stride;
          for (int64_t p = 0; p < s.P; ++p)
            if (rc[p] != T(0))  // rows of an identity (a Jacobian by vjp) are mostly zero
              vjp_sample<A>(Z + p * s.Np * s.M, rc[p], s, pick(Wt, c), pick(vt, c), k, h.data(),
                            g.data(), dWt.data(), dvt.data());
          untranspose(dWt.data(), dvt.data(), s, dW + c * nw, dv + c * nv);
        }
      }
      return;
    }
    // Few chains: split the samples over threads, reduce the per-thread sums in a fixed
    // order so that results do not depend on scheduling.
    std::vector<std::vector<T>> accW(nt, std::vector<T>(nw)), accV(nt, std::vector<T>(nv));
    std::vector<T> dWt(nw), dvt(nv);
    for (int64_t c = 0; c < C; ++c) {
      const T* rc = r.data + c * r.stride;
#pragma omp parallel num_threads(nt)
      {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        std::vector<T> h(s.Nc), g(s.Nc);
        std::fill(accW[t].begin(), accW[t].end(), T(0));
        std::fill(accV[t].begin(), accV[t].end(), T(0));
#pragma omp for schedule(static)
        for (int64_t p = 0; p < s.P; ++p)
          vjp_sample<A>(Z + p * s.Np * s.M, rc[p], s, pick(Wt, c), pick(vt, c), k, h.data(),
                        g.data(), accW[t].data(), accV[t].data());
      }
      std::fill(dWt.begin(), dWt.end(), T(0));
      std::fill(dvt.begin(), dvt.end(), T(0));
      for (int t = 0; t < nt; ++t) {
        for (int64_t j = 0; j < nw; ++j) dWt[j] += accW[t][j];
        for (int64_t j = 0; j < nv; ++j) dvt[j] += accV[t][j];
      }
      untranspose(dWt.data(), dvt.data(), s, dW + c * nw, dv + c * nv);
    }
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
        const T *wt = pick(Wt, c), *vtc = pick(vt, c), *twt = pick(tWt, c), *tvc = pick(tvt, c);
        const T* z = Z + p * s.Np * s.M;
        T acc = T(0);
        for (int64_t i = 0; i < s.Np; ++i) {
          const int64_t wi = s.local ? i * s.M * s.Nc : 0;
          preact(z + i * s.M, wt + wi, s.Nc, s.Nc, s.M, k.inv_sqrt_m, h.data());
          preact(z + i * s.M, twt + wi, s.Nc, s.Nc, s.M, k.inv_sqrt_m, dh.data());
          const T *vi = vtc + i * s.Nc, *tvi = tvc + i * s.Nc;
          T part = T(0);
#pragma omp simd reduction(+ : part)
          for (int64_t a = 0; a < s.Nc; ++a)
            part += vi[a] * dsig<A>(h[a]) * dh[a] + tvi[a] * sig<A>(h[a]);
          acc += part;
        }
        out[cp] = acc * k.cs;
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
  const int64_t nb = a1 - a0, Nc = s.Nc, M = s.M, Np = s.Np;
  const int nt = threads(nthreads, s.P * s.Np * nb * (s.M + 1));
  const T cg = k.cs * k.inv_sqrt_m;
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
#pragma omp parallel num_threads(nt)
    {
      std::vector<T> h(nb), e(nb);
#pragma omp for schedule(static)
      for (int64_t p = 0; p < s.P; ++p) {
        const T* z = Z + p * Np * M;
        T* Sp = S + p * ldS;
        T* Gp = G + p * ldG;
        if (!s.local)
          for (int64_t j = 0; j < nb * M; ++j) Gp[j] = T(0);
        for (int64_t i = 0; i < Np; ++i) {
          const T* zi = z + i * M;
          preact(zi, Wt.data() + (s.local ? i * M * Nc : 0) + a0, Nc, nb, M, k.inv_sqrt_m,
                 h.data());
          const T* vi = vt.data() + i * Nc + a0;
          for (int64_t b = 0; b < nb; ++b) {
            Sp[b * Np + i] = k.cs * sig<A>(h[b]);
            e[b] = cg * vi[b] * dsig<A>(h[b]);
          }
          if (s.local) {
            for (int64_t b = 0; b < nb; ++b) Gp[b * Np + i] = e[b];
          } else {
            for (int64_t b = 0; b < nb; ++b)
              for (int64_t m = 0; m < M; ++m) Gp[b * M + m] += e[b] * zi[m];
          }
        }
      }
    }
  });
}

template <class T>
void activation_pair(const T* h, int64_t n, Activation act, int nthreads, T* s, T* d) {
  const int nt = threads(nthreads, 8 * n);
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    if (d) {
#pragma omp parallel for simd schedule(static) num_threads(nt)
      for (int64_t j = 0; j < n; ++j) {
        s[j] = sig<A>(h[j]);
        d[j] = dsig<A>(h[j]);
      }
    } else {
#pragma omp parallel for simd schedule(static) num_threads(nt)
      for (int64_t j = 0; j < n; ++j) s[j] = sig<A>(h[j]);
    }
  });
}

#define LKR_INSTANTIATE_NETS(T)                                                                  \
  template void patch_forward<T>(const T*, const PatchNetShape&, Chained<T>, Chained<T>, int64_t, \
                                 Activation, int, T*);                                          \
  template void patch_vjp<T>(const T*, const PatchNetShape&, Chained<T>, Chained<T>, Chained<T>, \
                             int64_t, Activation, int, T*, T*);                                 \
  template void patch_jvp<T>(const T*, const PatchNetShape&, Chained<T>, Chained<T>, Chained<T>, \
                             Chained<T>, int64_t, Activation, int, T*);                         \
  template void patch_features<T>(const T*, const PatchNetShape&, const T*, const T*, int64_t,   \
                                  int64_t, Activation, int, T*, int64_t, T*, int64_t);         \
  template void activation_pair<T>(const T*, int64_t, Activation, int, T*, T*);
LKR_INSTANTIATE_NETS(float)
LKR_INSTANTIATE_NETS(double)

}  // namespace lkr
