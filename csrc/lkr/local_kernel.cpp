#include "local_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "local_kernel_tiles.hpp"
#include "tiles.hpp"

namespace lkr {
namespace {

using namespace tiles;

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
  for (int64_t mu = 0; mu < r.P; ++mu)
    for (int64_t i = 0; i < r.Np; ++i)
      r.s[mu * r.Np + i] = prepare_row<T>(
          [&](int64_t k) {
            return x(mu, i, k);
          },
          r.M, act, norm, r.z.data() + (mu * r.Np + i) * r.M, 1);
  return r;
}

// Tile engine. A tile pairs a block of samples mu in [a0, a1) of A with a block nu in
// [b0, b1) of B. The B block is packed into panels of CW columns: column c = (nu - b0) Np + j
// (patch j of sample nu) sits in panel c / CW as bt[(c / CW) M CW + k CW + c % CW],
// zero-padded to Cp, a multiple of CW, so that every inner loop runs over whole panels
// with no tail, and a panel is one contiguous M x CW block (a column-major layout with
// leading dimension Cp would put the M rows of a panel 8 Cp bytes apart, all in the same
// few L1 sets). Rows (mu, i) of A are taken R at a time; for each panel the R x CW dot
// products sit in registers, F is applied there, and the epilogue of the calling
// contraction consumes them at once: the local kernel never exists beyond R x CW values.
template <class T>
void pack_block(const Prepared<T>& B, int64_t b0, int64_t b1, int64_t Cp, int64_t CW,
                std::vector<T>& bt, std::vector<T>& sb) {
  const int64_t C = (b1 - b0) * B.Np, M = B.M;
  bt.assign(static_cast<size_t>(Cp * M), T(0));
  sb.assign(static_cast<size_t>(Cp), T(0));
  for (int64_t c = 0; c < C; ++c) {
    const T* zr = B.z.data() + (b0 * B.Np + c) * M;
    T* panel = bt.data() + (c / CW) * M * CW + c % CW;
    for (int64_t k = 0; k < M; ++k) panel[k * CW] = zr[k];
    sb[c] = B.s[b0 * B.Np + c];
  }
}

// One tile of K_R: acc[mu - a0][nu - b0] = sum_ij Q_ij K_ij^{mu nu}. qs (Np rounded up to
// R, Cp) holds F_scale Q_ij sb_c at column c = (nu, j), and zero rows for padding rows. Per
// sample mu and panel, y[c] = sum_i Q_ij K_ij^{mu nu} accumulates in registers over the Np rows
// (an elementwise FMA, so it vectorises: a dot product over j per (mu, i, nu) would not),
// then the Np entries of each nu are summed in double.
template <class T, Activation ACT>
struct RenormalizedTile {
  template <int R, int CW>
  static LKR_INLINE void run(const T* az, const T* as, int64_t na, int64_t Np, int64_t M,
                             const T* bt, int64_t nb, int64_t Cp, const T* qs, T* y, double* acc) {
    const int64_t ngroups = (Np + R - 1) / R;
    for (int64_t mu = 0; mu < na; ++mu) {
      for (int64_t c0 = 0; c0 < Cp; c0 += CW) {
        const T* panel = bt + c0 * M;
        T yc[CW];
#pragma omp simd
        for (int c = 0; c < CW; ++c) yc[c] = T(0);
        for (int64_t gi = 0; gi < ngroups; ++gi) {
          const int64_t i0 = gi * R;
          const T* a[R];
          T w[R];
          for (int r = 0; r < R; ++r) {
            const int64_t i = i0 + r < Np ? i0 + r : i0;
            a[r] = az + (mu * Np + i) * M;
            w[r] = ACT == Activation::relu ? as[mu * Np + i] : T(1);
          }
          T u[R][CW];
          dot_chunk<T, R, CW>(a, M, panel, u);
          // qs rows are affine in r (padding rows are zero rows, not a shared sink): through an
          // array of row pointers GCC emulates a gather for every load.
          const T* qg = qs + i0 * Cp + c0;
          for (int r = 0; r < R; ++r) {
            const T* qc = qg + r * Cp;
            const T wr = w[r];
#pragma omp simd
            for (int c = 0; c < CW; ++c) {
              const T f = map_F_core<ACT>(u[r][c]);
              yc[c] += qc[c] * (ACT == Activation::relu ? wr * f : f);
            }
          }
        }
        T* yo = y + c0;
#pragma omp simd
        for (int c = 0; c < CW; ++c) yo[c] = yc[c];
      }
      for (int64_t v = 0; v < nb; ++v) {
        const T* yv = y + v * Np;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < Np; ++j) s += double(yv[j]);
        acc[mu * nb + v] = s;
      }
    }
  }
};

// One tile of G: h[i][c] += sum_mu W_{mu nu} K_ij^{mu nu} at column c = (nu, j). wrow is
// scratch (Cp) for F_scale W_{mu nu} sb_c; h has Np rounded up to R rows (the extra ones
// collect the padding rows' values and are ignored).
template <class T, Activation ACT>
struct AdjointTile {
  template <int R, int CW>
  static LKR_INLINE void run(const T* az, const T* as, int64_t na, int64_t Np, int64_t M,
                             const T* bt, const T* sb, int64_t nb, int64_t Cp, const T* wmat,
                             int64_t ws0, int64_t ws1, T weight, T* wrow, T* h) {
    for (int64_t mu = 0; mu < na; ++mu) {
      bool any = false;
      for (int64_t v = 0; v < nb; ++v) {
        const T wv = weight * wmat[mu * ws0 + v * ws1];
        any = any || wv != T(0);
        for (int64_t j = 0; j < Np; ++j) wrow[v * Np + j] = T(F_scale<ACT>) * wv * sb[v * Np + j];
      }
      if (!any) continue;  // e.g. a block-sparse W
      for (int64_t c0 = 0; c0 < Cp; c0 += CW) {
        const T* panel = bt + c0 * M;
        const T* wc = wrow + c0;
        for (int64_t i0 = 0; i0 < Np; i0 += R) {
          const T* a[R];
          group_rows<T, R>(az, mu, i0, Np, M, a);
          T u[R][CW];
          dot_chunk<T, R, CW>(a, M, panel, u);
          T* hg = h + i0 * Cp + c0;  // rows affine in r, as in renormalized_tile
          for (int r = 0; r < R; ++r) {
            T* hc = hg + r * Cp;
            const T wr = ACT == Activation::relu ? as[mu * Np + (i0 + r < Np ? i0 + r : i0)] : T(1);
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
};

// One tile of the materialised tensor: rows[r][c] = s_r s_c F(a_r . b_c), then copied out.
template <class T, Activation ACT>
struct FullTile {
  template <int R, int CW>
  static LKR_INLINE void run(const T* az, const T* as, int64_t na, int64_t Np, int64_t M,
                             const T* bt, const T* sb, int64_t nb, int64_t Cp, T* rows, T* out,
                             int64_t P2, int64_t mu0, int64_t nu0) {
    for (int64_t mu = 0; mu < na; ++mu) {
      for (int64_t i0 = 0; i0 < Np; i0 += R) {
        const T* a[R];
        group_rows<T, R>(az, mu, i0, Np, M, a);
        for (int64_t c0 = 0; c0 < Cp; c0 += CW) {
          T u[R][CW];
          dot_chunk<T, R, CW>(a, M, bt + c0 * M, u);
          for (int r = 0; r < R; ++r) {
            T* o = rows + r * Cp + c0;
            const T* s = sb + c0;
            const T wr = ACT == Activation::relu ? as[mu * Np + (i0 + r < Np ? i0 + r : i0)] : T(1);
#pragma omp simd
            for (int c = 0; c < CW; ++c)
              o[c] = ACT == Activation::relu ? wr * s[c] * map_F_t<ACT>(u[r][c])
                                             : map_F_t<ACT>(u[r][c]);
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
};

// Tile geometry: ~512 columns per B block (the transposed block, M x 512, then sits in
// L2 for any M up to 64 and in L1 for small M), and as many samples per A block, so that
// the symmetric case shares one grid.
inline int64_t block_samples(int64_t Np, int64_t M) {
  const int64_t cols =
      std::max<int64_t>(64, std::min<int64_t>(512, 32768 / std::max<int64_t>(M, 1)));
  return std::max<int64_t>(1, cols / Np);
}

template <class T, Activation ACT>
void renormalized_impl(const Prepared<T>& A, const Prepared<T>& B, bool sym, const T* Q,
                       double lambda1, int nthreads, T* out) {
  const int64_t Np = A.Np, M = A.M, P = A.P, P2 = B.P;
  const int64_t bs = block_samples(Np, M);
  const auto tiles = tile_pairs(P, P2, bs, bs, sym);
  const double norm = 1.0 / (lambda1 * double(Np));
  const Isa isa = tile_isa();
  const int cw = tile_cw<T>(isa), R = tile_rows(isa, Np);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> bt, sb, qs, y;
    std::vector<double> acc;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t) {
      const TilePair tp = tiles[t];
      const int64_t na = tp.a1 - tp.a0, nb = tp.b1 - tp.b0;
      const int64_t Cp = round_up(nb * Np, cw);
      pack_block(B, tp.b0, tp.b1, Cp, cw, bt, sb);
      qs.assign(static_cast<size_t>(round_up(Np, R) * Cp), T(0));
      for (int64_t i = 0; i < Np; ++i)
        for (int64_t v = 0; v < nb; ++v)
          for (int64_t j = 0; j < Np; ++j)
            qs[i * Cp + v * Np + j] =
                T(F_scale<ACT> * double(Q[i * Np + j]) * double(sb[v * Np + j]));
      y.resize(static_cast<size_t>(Cp));
      acc.resize(static_cast<size_t>(na * nb));
      run_tile<RenormalizedTile<T, ACT>, T>(isa, R, A.z.data() + tp.a0 * Np * M,
                                            A.s.data() + tp.a0 * Np, na, Np, M,
                                            static_cast<const T*>(bt.data()), nb, Cp,
                                            static_cast<const T*>(qs.data()), y.data(), acc.data());
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
  const auto tiles = tile_pairs(P, P2, bs, bs, sym);
  const int64_t ntiles = static_cast<int64_t>(tiles.size());
  // Tiles are summed in a fixed number of contiguous groups, each into its own slot, and
  // the slots in order: the result is then the same bit for bit whatever the thread count
  // or schedule (a per-thread sum would depend on both).
  const int64_t ngroups = std::min<int64_t>(ntiles, 64);
  std::vector<double> slots(static_cast<size_t>(ngroups * Np * Np), 0.0);
  const Isa isa = tile_isa();
  const int cw = tile_cw<T>(isa), R = tile_rows(isa, Np);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> bt, sb, wrow, h;
#pragma omp for schedule(dynamic, 1)
    for (int64_t grp = 0; grp < ngroups; ++grp) {
      double* g = slots.data() + grp * Np * Np;
      for (int64_t t = grp * ntiles / ngroups; t < (grp + 1) * ntiles / ngroups; ++t) {
        const TilePair tp = tiles[t];
        const int64_t na = tp.a1 - tp.a0, nb = tp.b1 - tp.b0;
        const int64_t Cp = round_up(nb * Np, cw);
        // On diagonal tiles every ordered pair is visited: half weight, then G = H + H^T.
        const T weight = (sym && tp.a0 == tp.b0) ? T(0.5) : T(1);
        pack_block(B, tp.b0, tp.b1, Cp, cw, bt, sb);
        wrow.assign(static_cast<size_t>(Cp), T(0));
        h.assign(static_cast<size_t>(round_up(Np, R) * Cp), T(0));
        run_tile<AdjointTile<T, ACT>, T>(
            isa, R, A.z.data() + tp.a0 * Np * M, A.s.data() + tp.a0 * Np, na, Np, M,
            static_cast<const T*>(bt.data()), static_cast<const T*>(sb.data()), nb, Cp,
            W.data + tp.a0 * W.stride[0] + tp.b0 * W.stride[1], W.stride[0], W.stride[1], weight,
            wrow.data(), h.data());
        // The tile's partial sums (over one block of samples each) move to double here.
        for (int64_t i = 0; i < Np; ++i)
          for (int64_t v = 0; v < nb; ++v)
            for (int64_t j = 0; j < Np; ++j) g[i * Np + j] += double(h[i * Cp + v * Np + j]);
      }
    }
  }
  std::vector<double> total(static_cast<size_t>(Np * Np));
  reduce_slots(slots, ngroups, Np * Np, total.data());
  for (int64_t i = 0; i < Np; ++i)
    for (int64_t j = 0; j < Np; ++j)
      out[i * Np + j] = T(sym ? total[i * Np + j] + total[j * Np + i] : total[i * Np + j]);
}

template <class T, Activation ACT>
void full_impl(const Prepared<T>& A, const Prepared<T>& B, int nthreads, T* out) {
  const int64_t Np = A.Np, M = A.M, P = A.P, P2 = B.P;
  const int64_t bs = block_samples(Np, M);
  const auto tiles = tile_pairs(P, P2, bs, bs, false);
  const Isa isa = tile_isa();
  const int cw = tile_cw<T>(isa), R = tile_rows(isa, Np);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> bt, sb, rows;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t) {
      const TilePair tp = tiles[t];
      const int64_t na = tp.a1 - tp.a0, nb = tp.b1 - tp.b0;
      const int64_t Cp = round_up(nb * Np, cw);
      pack_block(B, tp.b0, tp.b1, Cp, cw, bt, sb);
      rows.resize(static_cast<size_t>(R * Cp));
      run_tile<FullTile<T, ACT>, T>(isa, R, A.z.data() + tp.a0 * Np * M, A.s.data() + tp.a0 * Np,
                                    na, Np, M, static_cast<const T*>(bt.data()),
                                    static_cast<const T*>(sb.data()), nb, Cp, rows.data(), out, P2,
                                    tp.a0, tp.b0);
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

}  // namespace

template <class T>
void local_kernel(const View3<T>& A, const View3<T>* B, const KernelParams& p, T* out) {
  const int nt = omp_threads(p.nthreads);
  const auto a = prepare(A, p.activation, p.lambda0, nt);
  const auto b = B ? prepare(*B, p.activation, p.lambda0, nt) : Prepared<T>{};
  with_activation(p.activation, [&](auto act) {
    full_impl<T, decltype(act)::value>(a, B ? b : a, nt, out);
  });
}

template <class T>
void renormalized_kernel(const View3<T>& A, const View3<T>* B, const T* Q, double lambda1,
                         const KernelParams& p, T* out) {
  const int nt = omp_threads(p.nthreads);
  const auto a = prepare(A, p.activation, p.lambda0, nt);
  const auto b = B ? prepare(*B, p.activation, p.lambda0, nt) : Prepared<T>{};
  with_activation(p.activation, [&](auto act) {
    renormalized_impl<T, decltype(act)::value>(a, B ? b : a, B == nullptr, Q, lambda1, nt, out);
  });
}

template <class T>
void renormalized_kernel_diag(const View3<T>& A, const T* Q, double lambda1, const KernelParams& p,
                              T* out) {
  const int nt = omp_threads(p.nthreads);
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
void local_kernel_adjoint(const View3<T>& A, const View3<T>* B, const View2<T>& W, bool w_symmetric,
                          const KernelParams& p, T* out) {
  const int nt = omp_threads(p.nthreads);
  const auto a = prepare(A, p.activation, p.lambda0, nt);
  const auto b = B ? prepare(*B, p.activation, p.lambda0, nt) : Prepared<T>{};
  const bool sym = B == nullptr && w_symmetric;
  with_activation(p.activation, [&](auto act) {
    adjoint_impl<T, decltype(act)::value>(a, B ? b : a, sym, W, nt, out);
  });
}

template <class T>
void nngp_map_inplace(Activation act, T* K, int64_t P, int64_t P2, const T* dx, const T* dy,
                      int nthreads) {
  if (act == Activation::linear) return;
  // ~1 ns per entry: below ~256k entries a thread, waking a team costs more than it saves
  const int64_t per_thread = 1 << 18;
  const int nt = static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(omp_threads(nthreads), (P * P2 + per_thread - 1) / per_thread)));
  // Factorised as in the local kernel: K = s_x s_y F(c_xy r_x r_y) (activations.hpp).
  std::vector<T> rx(P), ry(P2), sx(P), sy(P2);
  auto factors = [&](const T* d, int64_t n, T* r, T* s) {
    for (int64_t m = 0; m < n; ++m) {
      const MapFactors f = map_factors(act, double(d[m]));
      r[m] = T(f.r);
      s[m] = T(f.s);
    }
  };
  factors(dx, P, rx.data(), sx.data());
  factors(dy, P2, ry.data(), sy.data());
  with_activation(act, [&](auto a) {
    constexpr Activation ACT = decltype(a)::value;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t m = 0; m < P; ++m)
      nngp_row<T, ACT>(K + m * P2, P2, rx[m], sx[m], ry.data(), sy.data());
  });
}

template <class T>
int64_t for_each_kernel_tile(const View3<T>& A, const View3<T>* B, const KernelParams& p,
                             bool upper_only, int64_t ngroups,
                             const std::function<void(int64_t, const KernelTile&)>& fn) {
  const int nt = omp_threads(p.nthreads);
  const auto a = prepare(A, p.activation, p.lambda0, nt);
  const auto b = B ? prepare(*B, p.activation, p.lambda0, nt) : Prepared<T>{};
  const Prepared<T>& bb = B ? b : a;
  const int64_t Np = a.Np, M = a.M;
  const auto tiles = tile_pairs(a.P, bb.P, block_samples(Np, M), block_samples(Np, M), upper_only);
  const int64_t ntiles = static_cast<int64_t>(tiles.size());
  if (ngroups <= 0 || ngroups > ntiles) ngroups = ntiles;
  const Isa isa = tile_isa();
  const int cw = tile_cw<T>(isa), R = tile_rows(isa, Np);
  with_activation(p.activation, [&](auto act) {
    constexpr Activation ACT = decltype(act)::value;
#pragma omp parallel num_threads(nt)
    {
      std::vector<T> bt, sb, rows, k;
#pragma omp for schedule(dynamic, 1)
      for (int64_t grp = 0; grp < ngroups; ++grp) {
        for (int64_t t = grp * ntiles / ngroups; t < (grp + 1) * ntiles / ngroups; ++t) {
          const TilePair tp = tiles[t];
          const int64_t na = tp.a1 - tp.a0, nb = tp.b1 - tp.b0;
          const int64_t Cp = round_up(nb * Np, cw);
          pack_block(bb, tp.b0, tp.b1, Cp, cw, bt, sb);
          rows.resize(static_cast<size_t>(R * Cp));
          k.resize(static_cast<size_t>(nb * Np * Np));
          (void)na;
          for (int64_t mu = tp.a0; mu < tp.a1; ++mu) {
            run_tile<FullTile<T, ACT>, T>(isa, R, a.z.data() + mu * Np * M, a.s.data() + mu * Np,
                                          int64_t(1), Np, M, static_cast<const T*>(bt.data()),
                                          static_cast<const T*>(sb.data()), nb, Cp, rows.data(),
                                          k.data(), nb, int64_t(0), int64_t(0));
            fn(grp,
               KernelTile{mu, mu + 1, tp.b0, tp.b1, Np, upper_only && tp.a0 == tp.b0, k.data()});
          }
        }
      }
    }
  });
  return ngroups;
}

#define LKR_INSTANTIATE(T)                                                                         \
  template void local_kernel<T>(const View3<T>&, const View3<T>*, const KernelParams&, T*);        \
  template void renormalized_kernel<T>(const View3<T>&, const View3<T>*, const T*, double,         \
                                       const KernelParams&, T*);                                   \
  template void renormalized_kernel_diag<T>(const View3<T>&, const T*, double,                     \
                                            const KernelParams&, T*);                              \
  template void local_kernel_adjoint<T>(const View3<T>&, const View3<T>*, const View2<T>&, bool,   \
                                        const KernelParams&, T*);                                  \
  template void nngp_map_inplace<T>(Activation, T*, int64_t, int64_t, const T*, const T*, int);    \
  template int64_t for_each_kernel_tile<T>(                                                        \
      const View3<T>&, const View3<T>*, const KernelParams&, bool, int64_t,                        \
      const std::function<void(int64_t, const KernelTile&)>&);
LKR_INSTANTIATE(float)
LKR_INSTANTIATE(double)

}  // namespace lkr
