// No FP traps are ever enabled here, so GCC may compute both sides of a select: without
// this, -ftrapping-math (the default) keeps the branch-free arcsine from vectorising on
// AVX2, where there are no masked instructions (3x slower). NaN results are unchanged.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "local_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

// Hot loops are compiled twice on x86-64, for AVX2+FMA and for the baseline, and picked at
// load time, so the default build stays portable without -march=native.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LKR_NO_CLONES)
#define LKR_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LKR_HOT
#endif
// Helpers of the hot loops must inline into each clone to get its instruction set.
#if defined(__GNUC__)
#define LKR_INLINE inline __attribute__((always_inline))
#else
#define LKR_INLINE inline
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

// Tile engine. A tile pairs a block of samples mu in [a0, a1) of A with a block nu in
// [b0, b1) of B. The B block is transposed to bt (M, Cp): column c = (nu - b0) Np + j
// holds patch j of sample nu, zero-padded to Cp, a multiple of the chunk width, so that
// every inner loop runs over whole chunks with no tail. Rows (mu, i) of A are taken R at a
// time; for each chunk of CW columns the R x CW dot products sit in a small local array
// (registers or L1), F is applied there, and the epilogue of the calling contraction
// consumes them at once: the local kernel never exists beyond R x CW values.
constexpr int kRows = 4;
template <class T> struct Chunk { static constexpr int width = 64 / sizeof(T) * 2; };  // 2 cache lines

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

template <class T>
void transpose_block(const Prepared<T>& B, int64_t b0, int64_t b1, int64_t Cp, std::vector<T>& bt,
                     std::vector<T>& sb) {
  const int64_t C = (b1 - b0) * B.Np, M = B.M;
  bt.assign(static_cast<size_t>(Cp * M), T(0));
  sb.assign(static_cast<size_t>(Cp), T(0));
  for (int64_t c = 0; c < C; ++c) {
    const T* zr = B.z.data() + (b0 * B.Np + c) * M;
    for (int64_t k = 0; k < M; ++k) bt[k * Cp + c] = zr[k];
    sb[c] = B.s[b0 * B.Np + c];
  }
}

// u[r][c] = a_r . b_c for the CW columns starting at b (leading dimension ldb).
template <class T, int R, int CW>
LKR_INLINE void dot_chunk(const T* const* a, int64_t M, const T* b, int64_t ldb, T (&u)[R][CW]) {
  for (int r = 0; r < R; ++r)
#pragma omp simd
    for (int c = 0; c < CW; ++c) u[r][c] = T(0);
  for (int64_t k = 0; k < M; ++k) {
    const T* bk = b + k * ldb;
    for (int r = 0; r < R; ++r) {
      const T ar = a[r][k];
#pragma omp simd
      for (int c = 0; c < CW; ++c) u[r][c] += ar * bk[c];
    }
  }
}

// One tile of K_R: acc[mu - a0][nu - b0] = sum_ij Q_ij K_ij^{mu nu}. qs (Np + 1, Cp) holds
// Q_ij sb_c at column c = (nu, j), and a zero last row for the padding rows of a group.
// Per sample mu, y[c] = sum_i Q_ij K_ij^{mu nu} accumulates in T over the Np rows (an
// elementwise FMA, so it vectorises: a dot product over j per (mu, i, nu) would not), then
// the Np entries of each nu are summed in double.
template <class T, Activation ACT>
LKR_HOT void renormalized_tile(const T* az, const T* as, int64_t na, int64_t Np, int64_t M,
                               const T* bt, int64_t nb, int64_t Cp, const T* qs, T* y,
                               double* acc) {
  constexpr int R = kRows, CW = Chunk<T>::width;
  for (int64_t mu = 0; mu < na; ++mu) {
    std::fill(y, y + Cp, T(0));
    for (int64_t i0 = 0; i0 < Np; i0 += R) {
      const T* a[R];
      const T* q[R];
      T w[R];
      for (int r = 0; r < R; ++r) {
        const bool in = i0 + r < Np;
        const int64_t i = in ? i0 + r : i0;
        a[r] = az + (mu * Np + i) * M;
        q[r] = qs + (in ? i : Np) * Cp;
        w[r] = ACT == Activation::relu ? as[mu * Np + i] : T(1);
      }
      for (int64_t c0 = 0; c0 < Cp; c0 += CW) {
        T u[R][CW];
        dot_chunk<T, R, CW>(a, M, bt + c0, Cp, u);
        T* yc = y + c0;
        for (int r = 0; r < R; ++r) {
          const T* qc = q[r] + c0;
          const T wr = w[r];
#pragma omp simd
          for (int c = 0; c < CW; ++c) {
            const T f = map_F_core<ACT>(u[r][c]);
            yc[c] += qc[c] * (ACT == Activation::relu ? wr * f : f);
          }
        }
      }
    }
    for (int64_t v = 0; v < nb; ++v) {
      double s = 0;
      for (int64_t j = 0; j < Np; ++j) s += double(y[v * Np + j]);
      acc[mu * nb + v] = s;
    }
  }
}

// One tile of G: h[i][c] += sum_mu W_{mu nu} K_ij^{mu nu} at column c = (nu, j). wrow is
// scratch (Cp) for W_{mu nu} sb_c; h has Np + 1 rows, the last a sink for padding rows.
template <class T, Activation ACT>
LKR_HOT void adjoint_tile(const T* az, const T* as, int64_t na, int64_t Np, int64_t M,
                          const T* bt, const T* sb, int64_t nb, int64_t Cp, const T* wmat,
                          int64_t ws0, int64_t ws1, T weight, T* wrow, T* h) {
  constexpr int R = kRows, CW = Chunk<T>::width;
  for (int64_t mu = 0; mu < na; ++mu) {
    bool any = false;
    for (int64_t v = 0; v < nb; ++v) {
      const T wv = weight * wmat[mu * ws0 + v * ws1];
      any = any || wv != T(0);
      for (int64_t j = 0; j < Np; ++j) wrow[v * Np + j] = T(F_scale<ACT>) * wv * sb[v * Np + j];
    }
    if (!any) continue;  // e.g. a block-sparse W
    for (int64_t i0 = 0; i0 < Np; i0 += R) {
      const T* a[R];
      T* hr[R];
      T w[R];
      for (int r = 0; r < R; ++r) {
        const bool in = i0 + r < Np;
        const int64_t i = in ? i0 + r : i0;
        a[r] = az + (mu * Np + i) * M;
        hr[r] = h + (in ? i : Np) * Cp;
        w[r] = ACT == Activation::relu ? as[mu * Np + i] : T(1);
      }
      for (int64_t c0 = 0; c0 < Cp; c0 += CW) {
        T u[R][CW];
        dot_chunk<T, R, CW>(a, M, bt + c0, Cp, u);
        const T* wc = wrow + c0;
        for (int r = 0; r < R; ++r) {
          T* hc = hr[r] + c0;
          const T wr = w[r];
#pragma omp simd
          for (int c = 0; c < CW; ++c) {
            const T f = map_F_core<ACT>(u[r][c]);
            hc[c] += wc[c] * (ACT == Activation::relu ? wr * f : f);
          }
        }
      }
    }
  }
}

// One tile of the materialised tensor: rows[r][c] = s_r s_c F(a_r . b_c), then copied out.
template <class T, Activation ACT>
LKR_HOT void full_tile(const T* az, const T* as, int64_t na, int64_t Np, int64_t M,
                       const T* bt, const T* sb, int64_t nb, int64_t Cp, T* rows, T* out,
                       int64_t P2, int64_t mu0, int64_t nu0) {
  constexpr int R = kRows, CW = Chunk<T>::width;
  for (int64_t mu = 0; mu < na; ++mu) {
    for (int64_t i0 = 0; i0 < Np; i0 += R) {
      const T* a[R];
      T w[R];
      for (int r = 0; r < R; ++r) {
        const int64_t i = i0 + r < Np ? i0 + r : i0;
        a[r] = az + (mu * Np + i) * M;
        w[r] = ACT == Activation::relu ? as[mu * Np + i] : T(1);
      }
      for (int64_t c0 = 0; c0 < Cp; c0 += CW) {
        T u[R][CW];
        dot_chunk<T, R, CW>(a, M, bt + c0, Cp, u);
        for (int r = 0; r < R; ++r) {
          T* o = rows + r * Cp + c0;
          const T* s = sb + c0;
          const T wr = w[r];
#pragma omp simd
          for (int c = 0; c < CW; ++c)
            o[c] = ACT == Activation::relu ? wr * s[c] * map_F_t<ACT>(u[r][c]) : map_F_t<ACT>(u[r][c]);
        }
      }
      for (int r = 0; r < R && i0 + r < Np; ++r)
        for (int64_t v = 0; v < nb; ++v) {
          T* o = out + (((mu0 + mu) * P2 + nu0 + v) * Np + i0 + r) * Np;
          std::copy(rows + r * Cp + v * Np, rows + r * Cp + (v + 1) * Np, o);
        }
    }
  }
}

// Tile geometry: ~512 columns per B block (the transposed block, M x 512, then sits in
// L2 for any M up to 64 and in L1 for small M), and as many samples per A block, so that
// the symmetric case shares one grid.
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
  const int64_t Np = A.Np, M = A.M, P = A.P, P2 = B.P;
  const int64_t bs = block_samples(Np, M);
  const auto tiles = tile_pairs(P, P2, bs, sym);
  const double norm = 1.0 / (lambda1 * double(Np));
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> bt, sb, qs, y;
    std::vector<double> acc;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t) {
      const TilePair tp = tiles[t];
      const int64_t na = tp.a1 - tp.a0, nb = tp.b1 - tp.b0;
      const int64_t Cp = round_up(nb * Np, Chunk<T>::width);
      transpose_block(B, tp.b0, tp.b1, Cp, bt, sb);
      qs.assign(static_cast<size_t>((Np + 1) * Cp), T(0));
      for (int64_t i = 0; i < Np; ++i)
        for (int64_t c = 0; c < nb * Np; ++c)
          qs[i * Cp + c] = T(F_scale<ACT> * double(Q[i * Np + c % Np]) * double(sb[c]));
      y.resize(static_cast<size_t>(Cp));
      acc.resize(static_cast<size_t>(na * nb));
      renormalized_tile<T, ACT>(A.z.data() + tp.a0 * Np * M, A.s.data() + tp.a0 * Np, na, Np, M,
                                bt.data(), nb, Cp, qs.data(), y.data(), acc.data());
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
  const int64_t Np = A.Np, M = A.M, P = A.P, P2 = B.P;
  const int64_t bs = block_samples(Np, M);
  const auto tiles = tile_pairs(P, P2, bs, sym);
  const int64_t ntiles = static_cast<int64_t>(tiles.size());
  // Tiles are summed in a fixed number of contiguous groups, each into its own slot, and
  // the slots in order: the result is then the same bit for bit whatever the thread count
  // or schedule (a per-thread sum would depend on both).
  const int64_t ngroups = std::min<int64_t>(ntiles, 64);
  std::vector<double> slots(static_cast<size_t>(ngroups * Np * Np), 0.0);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> bt, sb, wrow, h;
#pragma omp for schedule(dynamic, 1)
    for (int64_t grp = 0; grp < ngroups; ++grp) {
      double* g = slots.data() + grp * Np * Np;
      for (int64_t t = grp * ntiles / ngroups; t < (grp + 1) * ntiles / ngroups; ++t) {
        const TilePair tp = tiles[t];
        const int64_t na = tp.a1 - tp.a0, nb = tp.b1 - tp.b0;
        const int64_t Cp = round_up(nb * Np, Chunk<T>::width);
        // On diagonal tiles every ordered pair is visited: half weight, then G = H + H^T.
        const T weight = (sym && tp.a0 == tp.b0) ? T(0.5) : T(1);
        transpose_block(B, tp.b0, tp.b1, Cp, bt, sb);
        wrow.assign(static_cast<size_t>(Cp), T(0));
        h.assign(static_cast<size_t>((Np + 1) * Cp), T(0));
        adjoint_tile<T, ACT>(A.z.data() + tp.a0 * Np * M, A.s.data() + tp.a0 * Np, na, Np, M,
                             bt.data(), sb.data(), nb, Cp,
                             W.data + tp.a0 * W.stride[0] + tp.b0 * W.stride[1], W.stride[0],
                             W.stride[1], weight, wrow.data(), h.data());
        // The tile's partial sums (over one block of samples each) move to double here.
        for (int64_t i = 0; i < Np; ++i)
          for (int64_t v = 0; v < nb; ++v)
            for (int64_t j = 0; j < Np; ++j) g[i * Np + j] += double(h[i * Cp + v * Np + j]);
      }
    }
  }
  std::vector<double> total(static_cast<size_t>(Np * Np), 0.0);
  for (int64_t grp = 0; grp < ngroups; ++grp)
    for (int64_t k = 0; k < Np * Np; ++k) total[k] += slots[grp * Np * Np + k];
  for (int64_t i = 0; i < Np; ++i)
    for (int64_t j = 0; j < Np; ++j)
      out[i * Np + j] = T(sym ? total[i * Np + j] + total[j * Np + i] : total[i * Np + j]);
}

template <class T, Activation ACT>
void full_impl(const Prepared<T>& A, const Prepared<T>& B, int nthreads, T* out) {
  const int64_t Np = A.Np, M = A.M, P = A.P, P2 = B.P;
  const int64_t bs = block_samples(Np, M);
  const auto tiles = tile_pairs(P, P2, bs, false);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> bt, sb, rows;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t) {
      const TilePair tp = tiles[t];
      const int64_t na = tp.a1 - tp.a0, nb = tp.b1 - tp.b0;
      const int64_t Cp = round_up(nb * Np, Chunk<T>::width);
      transpose_block(B, tp.b0, tp.b1, Cp, bt, sb);
      rows.resize(static_cast<size_t>(kRows * Cp));
      full_tile<T, ACT>(A.z.data() + tp.a0 * Np * M, A.s.data() + tp.a0 * Np, na, Np, M,
                        bt.data(), sb.data(), nb, Cp, rows.data(), out, P2, tp.a0, tp.b0);
    }
  }
}

// One row of the FC NNGP map in factorised form (see nngp_map_inplace).
template <class T, Activation ACT>
LKR_HOT void nngp_row(T* row, int64_t n, T rx, T sx, const T* ry, const T* sy) {
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) {
    // (rx ry) and (sx sy) first: products that commute, so K stays exactly symmetric for Y = X
    const T f = map_F_t<ACT>(row[c] * (rx * ry[c]));
    row[c] = ACT == Activation::relu ? (sx * sy[c]) * f : f;
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
  if (act == Activation::linear) return;
  const int nt = resolve_threads(nthreads);
  // Factorised as in the local kernel: K = s_x s_y F(c_xy r_x r_y), with
  // erf: r = sqrt(2) / sqrt(1 + 2c), s = 1; relu: r = 1 / sqrt(c) (0 when c = 0), s = sqrt(c).
  std::vector<T> rx(P), ry(P2), sx(P, T(1)), sy(P2, T(1));
  auto factors = [&](const T* d, int64_t n, T* r, T* s) {
    for (int64_t m = 0; m < n; ++m) {
      const double c = double(d[m]);
      if (act == Activation::erf) {
        r[m] = T(std::sqrt(2.0 / (1.0 + 2.0 * c)));
      } else {
        r[m] = c > 0 ? T(1.0 / std::sqrt(c)) : T(0);
        s[m] = c > 0 ? T(std::sqrt(c)) : T(0);
      }
    }
  };
  factors(dx, P, rx.data(), sx.data());
  factors(dy, P2, ry.data(), sy.data());
  with_activation<T>(act, [&](auto a) {
    constexpr Activation ACT = decltype(a)::value;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t m = 0; m < P; ++m)
      nngp_row<T, ACT>(K + m * P2, P2, rx[m], sx[m], ry.data(), sy.data());
  });
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
