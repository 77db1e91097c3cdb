#include "local_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

// Hot loops are compiled twice on x86-64, for AVX2+FMA and for the baseline, and picked at
// load time, so the default build stays portable without -march=native.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LKR_NO_CLONES)
#define LKR_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LKR_HOT
#endif

namespace lkr {
namespace {

int resolve_threads(int n) {
#ifdef _OPENMP
  return n > 0 ? n : omp_get_max_threads();
#else
  (void)n;
  return 1;
#endif
}

// Prepared patches: z (P, Np, M) contiguous, scaled so that u = z_i . z_j (see
// activations.hpp), and s (P, Np) the relu amplitudes (1 otherwise).
template <class T>
struct Prepared {
  int64_t P = 0, Np = 0, M = 0;
  std::vector<T> z, s;
  const T* row(int64_t mu, int64_t i) const { return z.data() + (mu * Np + i) * M; }
};

template <class T>
Prepared<T> prepare(const View3<T>& x, Activation act, double lambda0, int nthreads) {
  Prepared<T> r;
  r.P = x.shape[0];
  r.Np = x.shape[1];
  r.M = x.shape[2];
  r.z.resize(static_cast<size_t>(r.P * r.Np * r.M));
  r.s.assign(static_cast<size_t>(r.P * r.Np), T(1));
  const double norm = 1.0 / (lambda0 * double(r.M));
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t mu = 0; mu < r.P; ++mu) {
    for (int64_t i = 0; i < r.Np; ++i) {
      double sq = 0;
      for (int64_t k = 0; k < r.M; ++k) {
        const double v = double(x(mu, i, k));
        sq += v * v;
      }
      const double c = sq * norm;  // C_ii^{mu mu}
      double scale;
      switch (act) {
        case Activation::linear: scale = std::sqrt(norm); break;
        case Activation::erf: scale = std::sqrt(2.0 * norm / (1.0 + 2.0 * c)); break;
        default:
          scale = sq > 0 ? 1.0 / std::sqrt(sq) : 0.0;
          r.s[mu * r.Np + i] = T(std::sqrt(c));
      }
      T* zr = r.z.data() + (mu * r.Np + i) * r.M;
      for (int64_t k = 0; k < r.M; ++k) zr[k] = T(double(x(mu, i, k)) * scale);
    }
  }
  return r;
}

// One block of samples nu in [b0, b1) of B, transposed to (M, C) with C = (b1 - b0) Np,
// so that a row of dot products is a sum of contiguous axpys the compiler vectorises.
template <class T>
void transpose_block(const Prepared<T>& B, int64_t b0, int64_t b1, std::vector<T>& bt,
                     std::vector<T>& sb) {
  const int64_t C = (b1 - b0) * B.Np, M = B.M;
  bt.resize(static_cast<size_t>(C * M));
  sb.resize(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const T* zr = B.z.data() + (b0 * B.Np + c) * M;
    for (int64_t k = 0; k < M; ++k) bt[k * C + c] = zr[k];
    sb[c] = B.s[b0 * B.Np + c];
  }
}

// rows[r][c] = s_r s_c F(a_r . b_c) for R rows a_r of A (given by pointers and amplitudes)
// against all C columns of the transposed block.
template <class T, Activation ACT, int R>
LKR_HOT void kernel_rows(const T* const* a, const T* sa, int64_t M, const T* bt, const T* sb,
                         int64_t C, T* rows) {
  for (int r = 0; r < R; ++r) std::fill(rows + r * C, rows + (r + 1) * C, T(0));
  for (int64_t k = 0; k < M; ++k) {
    const T* b = bt + k * C;
    T av[R];
    for (int r = 0; r < R; ++r) av[r] = a[r][k];
    for (int r = 0; r < R; ++r) {
      T* out = rows + r * C;
      const T ar = av[r];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) out[c] += ar * b[c];
    }
  }
  for (int r = 0; r < R; ++r) {
    T* out = rows + r * C;
    if constexpr (ACT == Activation::relu) {
      const T s = sa[r];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) out[c] = s * sb[c] * map_F(ACT, out[c]);
    } else if constexpr (ACT == Activation::erf) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) out[c] = map_F(ACT, out[c]);
    }
  }
}

constexpr int kRows = 4;

// Visits the tile (mu in [a0, a1)) x (nu in [b0, b1)): for each row (mu, i) calls
// sink(mu, i, row) with row[(nu - b0) Np + j] = K_ij^{mu nu}.
template <class T, Activation ACT, class Sink>
void visit_tile(const Prepared<T>& A, int64_t a0, int64_t a1, const std::vector<T>& bt,
                const std::vector<T>& sb, int64_t C, std::vector<T>& rows, Sink&& sink) {
  const int64_t Np = A.Np, M = A.M;
  rows.resize(static_cast<size_t>(kRows * C));
  const int64_t n = (a1 - a0) * Np;  // flattened (mu, i) rows of the A block
  for (int64_t r0 = 0; r0 < n; r0 += kRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kRows, n - r0));
    const T* ap[kRows];
    T sa[kRows];
    for (int r = 0; r < kRows; ++r) {
      const int64_t f = a0 * Np + r0 + std::min(r, nr - 1);
      ap[r] = A.z.data() + f * M;
      sa[r] = A.s[f];
    }
    kernel_rows<T, ACT, kRows>(ap, sa, M, bt.data(), sb.data(), C, rows.data());
    for (int r = 0; r < nr; ++r) {
      const int64_t f = a0 * Np + r0 + r;
      sink(f / Np, f % Np, rows.data() + r * C);
    }
  }
}

// Tile geometry: columns per block ~ 512 (the transposed block then sits in L2), rows
// per block the same count of samples so that the symmetric case shares one grid.
inline int64_t block_samples(int64_t Np, int64_t M) {
  const int64_t cols = std::max<int64_t>(64, std::min<int64_t>(512, 32768 / std::max<int64_t>(M, 1)));
  return std::max<int64_t>(1, cols / Np);
}

struct TilePair {
  int64_t a0, a1, b0, b1;
};

std::vector<TilePair> tile_pairs(int64_t P, int64_t P2, int64_t bs, bool upper_only) {
  std::vector<TilePair> t;
  for (int64_t a0 = 0; a0 < P; a0 += bs)
    for (int64_t b0 = upper_only ? a0 : 0; b0 < P2; b0 += bs)
      t.push_back({a0, std::min(P, a0 + bs), b0, std::min(P2, b0 + bs)});
  return t;
}

template <class T, Activation ACT>
void renormalized_impl(const Prepared<T>& A, const Prepared<T>& B, bool sym, const T* Q,
                       double lambda1, int nthreads, T* out) {
  const int64_t Np = A.Np, P = A.P, P2 = B.P;
  const int64_t bs = block_samples(Np, A.M);
  const auto tiles = tile_pairs(P, P2, bs, sym);
  const double norm = 1.0 / (lambda1 * double(Np));
  // Q in the working precision of the reduction, row by row.
  std::vector<double> q(Q, Q + Np * Np);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> bt, sb, rows;
    std::vector<double> acc;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t) {
      const TilePair tp = tiles[t];
      const int64_t nb = tp.b1 - tp.b0, C = nb * Np;
      transpose_block(B, tp.b0, tp.b1, bt, sb);
      acc.assign(static_cast<size_t>((tp.a1 - tp.a0) * nb), 0.0);
      visit_tile<T, ACT>(A, tp.a0, tp.a1, bt, sb, C, rows, [&](int64_t mu, int64_t i, const T* row) {
        const double* qi = q.data() + i * Np;
        double* a = acc.data() + (mu - tp.a0) * nb;
        for (int64_t v = 0; v < nb; ++v) {
          const T* rv = row + v * Np;
          double s = 0;
          for (int64_t j = 0; j < Np; ++j) s += qi[j] * double(rv[j]);
          a[v] += s;
        }
      });
      for (int64_t mu = tp.a0; mu < tp.a1; ++mu)
        for (int64_t nu = tp.b0; nu < tp.b1; ++nu) {
          if (sym && nu < mu) continue;
          const T v = T(acc[(mu - tp.a0) * nb + (nu - tp.b0)] * norm);
          out[mu * P2 + nu] = v;
          if (sym) out[nu * P2 + mu] = v;
        }
    }
  }
}

template <class T, Activation ACT>
void adjoint_impl(const Prepared<T>& A, const Prepared<T>& B, bool sym, const View2<T>& W,
                  int nthreads, T* out) {
  const int64_t Np = A.Np, P = A.P, P2 = B.P;
  const int64_t bs = block_samples(Np, A.M);
  const auto tiles = tile_pairs(P, P2, bs, sym);
  std::vector<double> total(static_cast<size_t>(Np * Np), 0.0);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> bt, sb, rows;
    std::vector<double> g(static_cast<size_t>(Np * Np), 0.0);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t) {
      const TilePair tp = tiles[t];
      const int64_t nb = tp.b1 - tp.b0, C = nb * Np;
      // On diagonal tiles every ordered pair is visited: half weight, then G = H + H^T.
      const double half = (sym && tp.a0 == tp.b0) ? 0.5 : 1.0;
      transpose_block(B, tp.b0, tp.b1, bt, sb);
      visit_tile<T, ACT>(A, tp.a0, tp.a1, bt, sb, C, rows, [&](int64_t mu, int64_t i, const T* row) {
        double* gi = g.data() + i * Np;
        for (int64_t v = 0; v < nb; ++v) {
          const double w = half * double(W(mu, tp.b0 + v));
          if (w == 0) continue;
          const T* rv = row + v * Np;
          for (int64_t j = 0; j < Np; ++j) gi[j] += w * double(rv[j]);
        }
      });
    }
#pragma omp critical
    for (size_t k = 0; k < g.size(); ++k) total[k] += g[k];
  }
  for (int64_t i = 0; i < Np; ++i)
    for (int64_t j = 0; j < Np; ++j)
      out[i * Np + j] = T(sym ? total[i * Np + j] + total[j * Np + i] : total[i * Np + j]);
}

template <class T, Activation ACT>
void full_impl(const Prepared<T>& A, const Prepared<T>& B, int nthreads, T* out) {
  const int64_t Np = A.Np, P = A.P, P2 = B.P;
  const int64_t bs = block_samples(Np, A.M);
  const auto tiles = tile_pairs(P, P2, bs, false);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> bt, sb, rows;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t) {
      const TilePair tp = tiles[t];
      const int64_t nb = tp.b1 - tp.b0, C = nb * Np;
      transpose_block(B, tp.b0, tp.b1, bt, sb);
      visit_tile<T, ACT>(A, tp.a0, tp.a1, bt, sb, C, rows, [&](int64_t mu, int64_t i, const T* row) {
        for (int64_t v = 0; v < nb; ++v) {
          T* o = out + ((mu * P2 + tp.b0 + v) * Np + i) * Np;
          std::copy(row + v * Np, row + (v + 1) * Np, o);
        }
      });
    }
  }
}

template <class T, class F>
void with_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::linear: f(std::integral_constant<Activation, Activation::linear>{}); break;
    case Activation::erf: f(std::integral_constant<Activation, Activation::erf>{}); break;
    case Activation::relu: f(std::integral_constant<Activation, Activation::relu>{}); break;
  }
}

}  // namespace

template <class T>
void local_kernel(const View3<T>& A, const View3<T>* B, const KernelParams& p, T* out) {
  const int nt = resolve_threads(p.nthreads);
  const auto a = prepare(A, p.activation, p.lambda0, nt);
  const auto b = B ? prepare(*B, p.activation, p.lambda0, nt) : Prepared<T>{};
  with_activation<T>(p.activation, [&](auto act) {
    full_impl<T, decltype(act)::value>(a, B ? b : a, nt, out);
  });
}

template <class T>
void renormalized_kernel(const View3<T>& A, const View3<T>* B, const T* Q, double lambda1,
                         const KernelParams& p, T* out) {
  const int nt = resolve_threads(p.nthreads);
  const auto a = prepare(A, p.activation, p.lambda0, nt);
  const auto b = B ? prepare(*B, p.activation, p.lambda0, nt) : Prepared<T>{};
  with_activation<T>(p.activation, [&](auto act) {
    renormalized_impl<T, decltype(act)::value>(a, B ? b : a, B == nullptr, Q, lambda1, nt, out);
  });
}

template <class T>
void renormalized_kernel_diag(const View3<T>& A, const T* Q, double lambda1,
                              const KernelParams& p, T* out) {
  const int nt = resolve_threads(p.nthreads);
  const auto a = prepare(A, p.activation, p.lambda0, nt);
  const int64_t Np = a.Np, M = a.M;
  const double norm = 1.0 / (lambda1 * double(Np));
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t mu = 0; mu < a.P; ++mu) {
    double s = 0;
    for (int64_t i = 0; i < Np; ++i) {
      const T* zi = a.row(mu, i);
      for (int64_t j = 0; j < Np; ++j) {
        const T* zj = a.row(mu, j);
        T u = 0;
        for (int64_t k = 0; k < M; ++k) u += zi[k] * zj[k];
        const T kij = a.s[mu * Np + i] * a.s[mu * Np + j] * map_F(p.activation, u);
        s += double(Q[i * Np + j]) * double(kij);
      }
    }
    out[mu] = T(s * norm);
  }
}

template <class T>
void local_kernel_adjoint(const View3<T>& A, const View3<T>* B, const View2<T>& W,
                          bool w_symmetric, const KernelParams& p, T* out) {
  const int nt = resolve_threads(p.nthreads);
  const auto a = prepare(A, p.activation, p.lambda0, nt);
  const auto b = B ? prepare(*B, p.activation, p.lambda0, nt) : Prepared<T>{};
  const bool sym = B == nullptr && w_symmetric;
  with_activation<T>(p.activation, [&](auto act) {
    adjoint_impl<T, decltype(act)::value>(a, B ? b : a, sym, W, nt, out);
  });
}

template <class T>
void nngp_map_inplace(Activation act, T* K, int64_t P, int64_t P2, const T* dx, const T* dy,
                      int nthreads) {
  const int nt = resolve_threads(nthreads);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t m = 0; m < P; ++m) {
    T* row = K + m * P2;
    for (int64_t n = 0; n < P2; ++n) row[n] = nngp_map(act, dx[m], row[n], dy[n]);
  }
}

#define LKR_INSTANTIATE(T)                                                                      \
  template void local_kernel<T>(const View3<T>&, const View3<T>*, const KernelParams&, T*);     \
  template void renormalized_kernel<T>(const View3<T>&, const View3<T>*, const T*, double,      \
                                       const KernelParams&, T*);                                \
  template void renormalized_kernel_diag<T>(const View3<T>&, const T*, double,                  \
                                            const KernelParams&, T*);                           \
  template void local_kernel_adjoint<T>(const View3<T>&, const View3<T>*, const View2<T>&, bool, \
                                        const KernelParams&, T*);                               \
  template void nngp_map_inplace<T>(Activation, T*, int64_t, int64_t, const T*, const T*, int);
LKR_INSTANTIATE(float)
LKR_INSTANTIATE(double)

}  // namespace lkr
