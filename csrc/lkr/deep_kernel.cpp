#include "deep_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "tiles.hpp"

namespace lkr {

void check_deep_plan(const DeepParams& p) {
  const int64_t n1 = p.n1;
  const DeepPlan& pl = p.plan;
  const int64_t L = int64_t(p.layers.size()) + 1;
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("deep pair plan: " + what);
  };
  if (int64_t(pl.levels.size()) != L)
    fail(std::to_string(pl.levels.size()) + " levels for " + std::to_string(L) + " layers");
  if (p.n1 < 0 || p.m1 < 1 || (p.n1 > 0 && !p.index1)) fail("no layer-1 index");
  for (int64_t e = 0; e < p.n1 * p.m1; ++e)
    if (p.index1[e] < 0 || p.index1[e] > p.n0)
      fail("the layer-1 index has entry " + std::to_string(p.index1[e]) + " outside [0, " +
           std::to_string(p.n0) + "]");
  if (pl.nchunks < 0 || !pl.chunks) fail("no chunk table");
  for (int64_t l = 0; l < L; ++l) {
    const DeepLevel& v = pl.levels[l];
    const int64_t n = l == 0 ? n1 : p.layers[l - 1].n_out;
    if (v.npairs < 0 || (v.npairs > 0 && !v.pairs))
      fail("level " + std::to_string(l + 1) + " has no pairs");
    for (int64_t e = 0; e < 2 * v.npairs; ++e)
      if (v.pairs[e] < 0 || v.pairs[e] >= n)
        fail("level " + std::to_string(l + 1) + " has position " + std::to_string(v.pairs[e]) +
             " outside [0, " + std::to_string(n) + ")");
    if (pl.chunks[l] != 0 || pl.chunks[pl.nchunks * L + l] != v.npairs)
      fail("the chunks of level " + std::to_string(l + 1) + " do not cover its pairs");
    for (int64_t c = 0; c < pl.nchunks; ++c)
      if (pl.chunks[(c + 1) * L + l] < pl.chunks[c * L + l]) fail("chunk bounds decrease");
    if (l == 0) continue;
    if (v.npairs > 0 && !v.gather) fail("level " + std::to_string(l + 1) + " has no gather table");
    const int64_t k = p.layers[l - 1].k, below = pl.levels[l - 1].npairs;
    for (int64_t c = 0; c < pl.nchunks; ++c) {
      const int64_t lo = pl.chunks[c * L + l - 1], hi = pl.chunks[(c + 1) * L + l - 1];
      for (int64_t e = pl.chunks[c * L + l]; e < pl.chunks[(c + 1) * L + l]; ++e)
        for (int64_t t = 0; t < k; ++t) {
          const int64_t g = v.gather[e * k + t];
          if (g != below && (g < lo || g >= hi))
            fail("level " + std::to_string(l + 1) + " pair " + std::to_string(e) + " reads pair " +
                 std::to_string(g) + " outside its chunk [" + std::to_string(lo) + ", " +
                 std::to_string(hi) + ")");
        }
    }
  }
}

namespace {

using namespace tiles;

// Prepared samples, in panels of CW samples (the B side of the register tiles; the A side
// reads the same layout with stride CW). Samples are padded to Ppad, a multiple of CW, with
// zeros. Layer 1: rows z scaled so that u = z_p . z_q (activations.hpp), amplitudes s1.
// Layers >= 2: the factors of the map K = s_p s_q F(C r_p r_q) from each sample's own
// variances v = C_l,pp(mu, mu) (map_factors); the variances follow their own recursion (only
// the diagonal K_l,pp(mu, mu) = K_sigma(v, v, v) enters the next layer's diagonal). A window
// that is all padding has v = 0: every map gives K = 0 there, nothing divides by zero.
template <class T>
struct Samples {
  int64_t P = 0, Ppad = 0, N1 = 0, M = 0, CW = 0;
  std::vector<T> zt;                 // (Ppad / CW, N1, M, CW)
  std::vector<T> s1;                 // (Ppad / CW, N1, CW)
  std::vector<std::vector<T>> r, s;  // layer l + 2: (Ppad / CW, n, CW)

  // Row (mu, p): entry k at row(mu, p)[k * CW].
  const T* row(int64_t mu, int64_t p) const {
    return zt.data() + (mu / CW * N1 + p) * M * CW + mu % CW;
  }
  // The M x CW panel of position q for the samples b0 .. b0 + CW - 1 (b0 a multiple of CW).
  const T* panel(int64_t b0, int64_t q) const { return zt.data() + (b0 / CW * N1 + q) * M * CW; }
  // Per-position factors: one sample's, and the CW of a panel's.
  T at(const std::vector<T>& f, int64_t np, int64_t mu, int64_t p) const {
    return f[(mu / CW * np + p) * CW + mu % CW];
  }
  const T* vec(const std::vector<T>& f, int64_t np, int64_t b0, int64_t q) const {
    return f.data() + (b0 / CW * np + q) * CW;
  }
};

template <class T>
Samples<T> prepare_samples(const View2<T>& x, const DeepParams& p, int64_t CW, int nthreads) {
  Samples<T> c;
  c.P = x.shape[0];
  c.N1 = p.n1;
  c.M = p.m1;
  c.CW = CW;
  c.Ppad = round_up(std::max<int64_t>(c.P, 1), CW);
  const int64_t N1 = c.N1, M = c.M, nb = c.Ppad / CW;
  const Activation act = p.activation;
  c.zt.assign(static_cast<size_t>(c.Ppad * N1 * M), T(0));
  c.s1.assign(static_cast<size_t>(c.Ppad * N1), T(0));
  const size_t nl = p.layers.size();
  for (size_t l = 0; l < nl; ++l) {
    c.r.emplace_back(static_cast<size_t>(nb * CW * p.layers[l].n_out), T(0));
    c.s.emplace_back(static_cast<size_t>(nb * CW * p.layers[l].n_out), T(0));
  }
  const double norm = 1.0 / (p.lambda0 * double(M));
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<double> kd, kn;
#pragma omp for schedule(static)
    for (int64_t mu = 0; mu < c.P; ++mu) {
      const int64_t blk = mu / CW, lane = mu % CW;
      kd.assign(static_cast<size_t>(N1), 0.0);
      for (int64_t i = 0; i < N1; ++i) {
        const int32_t* ix = p.index1 + i * M;
        const auto get = [&](int64_t k) {
          return ix[k] < p.n0 ? x(mu, ix[k]) : T(0);
        };
        T* dst = c.zt.data() + (blk * N1 + i) * M * CW + lane;
        c.s1[(blk * N1 + i) * CW + lane] = prepare_row<T>(get, M, act, norm, dst, CW);
        double sq = 0;
        for (int64_t k = 0; k < M; ++k) sq += double(get(k)) * double(get(k));
        const double cv = sq * norm;
        kd[i] = nngp_map<double>(act, cv, cv, cv);
      }
      for (size_t l = 0; l < nl; ++l) {
        const DeepLayer& Ly = p.layers[l];
        kn.assign(static_cast<size_t>(Ly.n_out), 0.0);
        for (int64_t q = 0; q < Ly.n_out; ++q) {
          double v = 0;
          for (int64_t t = 0; t < Ly.k; ++t) {
            const int32_t j = Ly.index[q * Ly.k + t];
            if (j < Ly.n_in) v += kd[j];
          }
          v *= Ly.norm;
          const MapFactors f = map_factors(act, v);
          c.r[l][(blk * Ly.n_out + q) * CW + lane] = T(f.r);
          c.s[l][(blk * Ly.n_out + q) * CW + lane] = T(f.s);
          kn[q] = nngp_map<double>(act, v, v, v);
        }
        kd.swap(kn);
      }
    }
  }
  return c;
}

// What a call computes with: the plan's levels with their gathers made relative to the
// chunk (the chunk's blocks sit at 0 .. size - 1 of a level's buffer, the zero block of
// padding at index maxc), and the tile shape: na = R ra samples of A (register groups of R
// rows) times nb = CW samples of B (one register panel).
template <class T>
struct Engine {
  const DeepParams& p;
  const DeepPlan& plan;
  int64_t L = 1, N1 = 0, M = 0, d = 0;
  Isa isa = Isa::base;
  int R = 4;
  int64_t CW = 4, na = 4, nb = 4;
  std::vector<int64_t> maxc;              // per level: the most pairs of one chunk
  std::vector<std::vector<int32_t>> rel;  // per level >= 1: (npairs, k) relative gathers
  std::vector<int64_t> k, npos;           // per level >= 1: window size; per level: positions

  Engine(const DeepParams& params, bool square_tiles)
      : p(params),
        plan(params.plan),
        L(int64_t(params.layers.size()) + 1),
        N1(params.n1),
        M(params.m1) {
    check_deep_plan(p);
    isa = tile_isa();
    R = isa == Isa::v4 ? 8 : 4;
    CW = tile_cw<T>(isa);
    d = p.layers.empty() ? N1 : p.layers.back().n_out;
    npos.push_back(N1);
    for (const DeepLayer& Ly : p.layers) npos.push_back(Ly.n_out);
    maxc.assign(static_cast<size_t>(L), 0);
    for (int64_t c = 0; c < plan.nchunks; ++c)
      for (int64_t l = 0; l < L; ++l)
        maxc[l] = std::max(maxc[l], plan.chunks[(c + 1) * L + l] - plan.chunks[c * L + l]);
    rel.resize(static_cast<size_t>(L));
    k.assign(static_cast<size_t>(L), 0);
    for (int64_t l = 1; l < L; ++l) {
      const int64_t kk = p.layers[l - 1].k, below = plan.levels[l - 1].npairs;
      k[l] = kk;
      rel[l].resize(static_cast<size_t>(plan.levels[l].npairs * kk));
      for (int64_t c = 0; c < plan.nchunks; ++c) {
        const int64_t lo = plan.chunks[c * L + l - 1];
        for (int64_t e = plan.chunks[c * L + l]; e < plan.chunks[(c + 1) * L + l]; ++e)
          for (int64_t t = 0; t < kk; ++t) {
            const int64_t g = plan.levels[l].gather[e * kk + t];
            rel[l][e * kk + t] = int32_t(g == below ? maxc[l - 1] : g - lo);
          }
      }
    }
    // Tile: the stored blocks of a chunk (levels below the last) in ~512 KB per thread.
    nb = CW;
    if (square_tiles) {
      na = CW;
    } else {
      int64_t stored = 3;
      for (int64_t l = 0; l + 1 < L; ++l) stored += maxc[l] + 1;
      const int64_t entries = (int64_t(1) << 19) / (stored * int64_t(sizeof(T)));
      na = R * std::max<int64_t>(1, std::min<int64_t>(4, entries / (R * nb)));
    }
  }

  int64_t entries() const { return na * nb; }
};

// Per-thread buffers: level l < L - 1 holds a chunk's blocks (maxc_l + 1 of them, the last
// the zero block of padding, never written); fin the block of a final pair.
template <class T>
struct Work {
  std::vector<std::vector<T>> lev;
  std::vector<T> fin;
  explicit Work(const Engine<T>& e) {
    const size_t E = static_cast<size_t>(e.entries());
    for (int64_t l = 0; l + 1 < e.L; ++l) lev.emplace_back((e.maxc[l] + 1) * E, T(0));
    fin.assign(E, T(0));
  }
};

// One tile of sample pairs through every chunk of the plan: the level-0 blocks from register
// tiles of dot products, each level above from the sum of the blocks its windows read, the
// map applied per entry; each final block goes to the consumer C at once.
template <class T, Activation ACT, class C>
struct DeepTile {
  template <int R, int CW>
  static LKR_INLINE void run(const Engine<T>* e, const Samples<T>* A, const Samples<T>* B,
                             TilePair tp, Work<T>* w, C* con, int64_t group) {
    const int64_t na = e->na, nb = CW, E = na * nb, L = e->L, M = e->M;
    if (!con->begin_tile(tp, na, nb, group)) return;
    const DeepPlan& pl = e->plan;
    for (int64_t c = 0; c < pl.nchunks; ++c) {
      // level 0: u = z_p^mu . z_q^nu in registers, R samples of A by one panel of B
      {
        const DeepLevel& v = pl.levels[0];
        const int64_t lo = pl.chunks[c * L], hi = pl.chunks[(c + 1) * L];
        for (int64_t ep = lo; ep < hi; ++ep) {
          const int64_t pp = v.pairs[2 * ep], q = v.pairs[2 * ep + 1];
          T* dst = L == 1 ? w->fin.data() : w->lev[0].data() + (ep - lo) * E;
          const T* panel = B->panel(tp.b0, q);
          const T* sq = B->vec(B->s1, B->N1, tp.b0, q);
          for (int64_t g0 = 0; g0 < na; g0 += R) {
            const T* a[R];
            T wr[R];
            for (int r = 0; r < R; ++r) {
              const int64_t mu = tp.a0 + g0 + r < tp.a1 ? tp.a0 + g0 + r : tp.a0;
              a[r] = A->row(mu, pp);
              wr[r] = A->at(A->s1, A->N1, mu, pp);
            }
            T u[R][CW];
            dot_chunk<T, R, CW, CW>(a, M, panel, u);
            for (int r = 0; r < R; ++r) {
              T* o = dst + (g0 + r) * nb;
#pragma omp simd
              for (int cc = 0; cc < CW; ++cc) {
                const T f = map_F_t<ACT>(u[r][cc]);
                o[cc] = ACT == Activation::relu ? (wr[r] * sq[cc]) * f : f;
              }
            }
          }
          if (L == 1) con->final(ep, pp, q, w->fin.data());
        }
      }
      // levels >= 1: C = norm sum_t K_below(w_p(t), w_q(t)), then the map
      for (int64_t l = 1; l < L; ++l) {
        const DeepLevel& v = pl.levels[l];
        const int64_t lo = pl.chunks[c * L + l], hi = pl.chunks[(c + 1) * L + l];
        const int64_t k = e->k[l], np = e->npos[l];
        const int32_t* rel = e->rel[l].data();
        const T* below = w->lev[l - 1].data();
        const T norm = T(e->p.layers[l - 1].norm);
        const std::vector<T>& ra = A->r[l - 1];
        const std::vector<T>& sa = A->s[l - 1];
        for (int64_t ep = lo; ep < hi; ++ep) {
          const int64_t pp = v.pairs[2 * ep], q = v.pairs[2 * ep + 1];
          T* dst = l == L - 1 ? w->fin.data() : w->lev[l].data() + (ep - lo) * E;
          const int32_t* g = rel + ep * k;
          {
            const T* b0 = below + int64_t(g[0]) * E;
#pragma omp simd
            for (int64_t x = 0; x < E; ++x) dst[x] = b0[x];
          }
          for (int64_t t = 1; t < k; ++t) {
            const T* bt = below + int64_t(g[t]) * E;
#pragma omp simd
            for (int64_t x = 0; x < E; ++x) dst[x] += bt[x];
          }
          const T* rq = B->vec(B->r[l - 1], np, tp.b0, q);
          const T* sq = B->vec(B->s[l - 1], np, tp.b0, q);
          for (int64_t ar = 0; ar < na; ++ar) {
            const int64_t mu = tp.a0 + ar < tp.a1 ? tp.a0 + ar : tp.a0;
            const T rp = A->at(ra, np, mu, pp), sp = A->at(sa, np, mu, pp);
            T* o = dst + ar * nb;
            // (C norm) (r_p r_q): both factors are symmetric in (p, q) when mu = nu, so the
            // blocks of a sample with itself come out exactly symmetric
#pragma omp simd
            for (int cc = 0; cc < CW; ++cc) {
              const T f = map_F_t<ACT>((o[cc] * norm) * (rp * rq[cc]));
              o[cc] = ACT == Activation::relu ? (sp * sq[cc]) * f : f;
            }
          }
          if (l == L - 1) con->final(ep, pp, q, w->fin.data());
        }
      }
      con->end_chunk();
    }
    con->end_tile();
  }
};

// Runs the tiles (tiles of `groups` in order per group, groups in parallel) with one consumer
// per thread, made by make().
template <class T, class Make>
void drive(const Engine<T>& e, const Samples<T>& A, const Samples<T>& B,
           const std::vector<TilePair>& tiles, int64_t ngroups, int nthreads, Make&& make) {
  const int64_t nt = int64_t(tiles.size());
  if (nt == 0) return;
  with_activation(e.p.activation, [&](auto act) {
    constexpr Activation ACT = decltype(act)::value;
#pragma omp parallel num_threads(nthreads)
    {
      Work<T> w(e);
      auto con = make();
      using C = decltype(con);
#pragma omp for schedule(dynamic, 1)
      for (int64_t g = 0; g < ngroups; ++g)
        for (int64_t ti = g * nt / ngroups; ti < (g + 1) * nt / ngroups; ++ti)
          run_tile<DeepTile<T, ACT, C>, T>(e.isa, e.R, &e, &A, &B, tiles[ti], &w, &con, g);
    }
  });
}

// The pairs (mu, nu) of a tile that a consumer takes: inside [a0, a1) x [b0, b1), and
// nu >= mu when only the upper triangle is wanted.
struct TileView {
  TilePair tp;
  int64_t na = 0, nb = 0;
  bool upper = false;
  bool take(int64_t ar, int64_t bc) const {
    const int64_t mu = tp.a0 + ar, nu = tp.b0 + bc;
    return mu < tp.a1 && nu < tp.b1 && (!upper || nu >= mu);
  }
};

// K_R: acc += Q_ij K_ij per final pair (in T over a chunk, then in double), written out at
// the end of the tile. diag: only the pairs (mu, mu) (square tiles on the diagonal).
template <class T>
struct RenormConsumer {
  const T* Q;
  int64_t d, P2;
  bool sym, diag;
  double norm;
  T* out;
  TileView tv;
  std::vector<T> acc;
  std::vector<double> accd;
  LKR_INLINE bool begin_tile(const TilePair& tp, int64_t na, int64_t nb, int64_t) {
    tv = TileView{tp, na, nb, sym};
    acc.assign(static_cast<size_t>(na * nb), T(0));
    accd.assign(static_cast<size_t>(na * nb), 0.0);
    return true;
  }
  LKR_INLINE void final(int64_t, int64_t i, int64_t j, const T* K) {
    const T q = Q[i * d + j];
    if (q == T(0)) return;
    T* a = acc.data();
    const int64_t E = tv.na * tv.nb;
#pragma omp simd
    for (int64_t x = 0; x < E; ++x) a[x] += q * K[x];
  }
  LKR_INLINE void end_chunk() {
    const int64_t E = tv.na * tv.nb;
    for (int64_t x = 0; x < E; ++x) {
      accd[x] += double(acc[x]);
      acc[x] = T(0);
    }
  }
  LKR_INLINE void end_tile() {
    for (int64_t ar = 0; ar < tv.na; ++ar)
      for (int64_t bc = 0; bc < tv.nb; ++bc) {
        if (!tv.take(ar, bc)) continue;
        const int64_t mu = tv.tp.a0 + ar, nu = tv.tp.b0 + bc;
        const T v = T(accd[ar * tv.nb + bc] * norm);
        if (diag) {
          if (mu == nu) out[mu] = v;
          continue;
        }
        out[mu * P2 + nu] = v;
        if (sym) out[nu * P2 + mu] = v;
      }
  }
};

// The final blocks into out (P, P2, d, d), mirrored for B = A.
template <class T>
struct FullConsumer {
  int64_t d, P2;
  bool sym;
  T* out;
  TileView tv;
  LKR_INLINE bool begin_tile(const TilePair& tp, int64_t na, int64_t nb, int64_t) {
    tv = TileView{tp, na, nb, sym};
    return true;
  }
  LKR_INLINE void final(int64_t, int64_t i, int64_t j, const T* K) {
    for (int64_t ar = 0; ar < tv.na; ++ar)
      for (int64_t bc = 0; bc < tv.nb; ++bc) {
        if (!tv.take(ar, bc)) continue;
        const int64_t mu = tv.tp.a0 + ar, nu = tv.tp.b0 + bc;
        const T v = K[ar * tv.nb + bc];
        out[((mu * P2 + nu) * d + i) * d + j] = v;
        if (sym && nu != mu) out[((nu * P2 + mu) * d + j) * d + i] = v;
      }
  }
  LKR_INLINE void end_chunk() {}
  LKR_INLINE void end_tile() {}
};

// G: slot[group][e] += sum_{mu nu} w_{mu nu} K_e^{mu nu} with the tile's weights w (0 outside
// the tile and, with sym, below the diagonal; 1/2 on it: then G = H + H^T).
template <class T>
struct AdjointConsumer {
  const View2<T>* W;
  bool sym;
  double* slots;
  int64_t nfinal;
  TileView tv;
  std::vector<T> wb;
  double* h = nullptr;
  LKR_INLINE bool begin_tile(const TilePair& tp, int64_t na, int64_t nb, int64_t group) {
    tv = TileView{tp, na, nb, sym};
    wb.assign(static_cast<size_t>(na * nb), T(0));
    bool any = false;
    for (int64_t ar = 0; ar < na; ++ar)
      for (int64_t bc = 0; bc < nb; ++bc) {
        if (!tv.take(ar, bc)) continue;
        const int64_t mu = tp.a0 + ar, nu = tp.b0 + bc;
        const T v = (*W)(mu, nu) * ((sym && mu == nu) ? T(0.5) : T(1));
        wb[ar * nb + bc] = v;
        any = any || v != T(0);
      }
    h = slots + group * nfinal;
    return any;  // e.g. a block-sparse W: the tile's whole recursion is skipped
  }
  LKR_INLINE void final(int64_t e, int64_t, int64_t, const T* K) {
    const T* wv = wb.data();
    const int64_t E = tv.na * tv.nb;
    T s = T(0);
#pragma omp simd reduction(+ : s)
    for (int64_t x = 0; x < E; ++x) s += wv[x] * K[x];
    h[e] += double(s);
  }
  LKR_INLINE void end_chunk() {}
  LKR_INLINE void end_tile() {}
};

// The stored kernel of the theories: row of (mu, nu), mu <= nu; column cols[e].
template <class T>
struct PackConsumer {
  const int32_t* cols;
  int64_t ncols, P;
  T* out;
  TileView tv;
  LKR_INLINE bool begin_tile(const TilePair& tp, int64_t na, int64_t nb, int64_t) {
    tv = TileView{tp, na, nb, true};
    return true;
  }
  LKR_INLINE void final(int64_t e, int64_t, int64_t, const T* K) {
    const int64_t col = cols[e];
    for (int64_t ar = 0; ar < tv.na; ++ar) {
      const int64_t mu = tv.tp.a0 + ar;
      T* row = out + (mu * P - mu * (mu - 1) / 2 - mu) * ncols + col;
      for (int64_t bc = 0; bc < tv.nb; ++bc)
        if (tv.take(ar, bc)) row[(tv.tp.b0 + bc) * ncols] += K[ar * tv.nb + bc];
    }
  }
  LKR_INLINE void end_chunk() {}
  LKR_INLINE void end_tile() {}
};

int64_t final_pairs(const DeepParams& p) { return p.plan.levels.back().npairs; }

// What every call prepares: the engine and the samples of A and (when given) B.
template <class T>
struct Call {
  int nt;
  Engine<T> e;
  Samples<T> a, b;
  bool sym;  // B = A
  Call(const DeepParams& p, const View2<T>& A, const View2<T>* B, bool square_tiles)
      : nt(omp_threads(p.nthreads)),
        e(p, square_tiles),
        a(prepare_samples(A, p, e.CW, nt)),
        b(B ? prepare_samples(*B, p, e.CW, nt) : Samples<T>{}),
        sym(B == nullptr) {}
  const Samples<T>& bs() const { return sym ? a : b; }
};

}  // namespace

template <class T>
void deep_local_kernel(const View2<T>& A, const View2<T>* B, const DeepParams& p, T* out) {
  const Call<T> c(p, A, B, false);
  const int64_t d = c.e.d, P2 = c.bs().P;
  if (final_pairs(p) < d * d) std::fill(out, out + c.a.P * P2 * d * d, T(0));
  const auto tiles = tile_pairs(c.a.P, P2, c.e.na, c.e.nb, c.sym);
  drive(c.e, c.a, c.bs(), tiles, int64_t(tiles.size()), c.nt, [&] {
    return FullConsumer<T>{d, P2, c.sym, out, {}};
  });
}

template <class T>
void deep_renormalized_kernel(const View2<T>& A, const View2<T>* B, const T* Q, double lambdaL,
                              const DeepParams& p, T* out) {
  const Call<T> c(p, A, B, false);
  const int64_t P2 = c.bs().P;
  const double norm = 1.0 / (lambdaL * double(c.e.d));
  const auto tiles = tile_pairs(c.a.P, P2, c.e.na, c.e.nb, c.sym);
  drive(c.e, c.a, c.bs(), tiles, int64_t(tiles.size()), c.nt, [&] {
    return RenormConsumer<T>{Q, c.e.d, P2, c.sym, false, norm, out, {}, {}, {}};
  });
}

template <class T>
void deep_renormalized_kernel_diag(const View2<T>& A, const T* Q, double lambdaL,
                                   const DeepParams& p, T* out) {
  const Call<T> c(p, A, nullptr, true);
  const int64_t P = c.a.P, CW = c.e.CW;
  const double norm = 1.0 / (lambdaL * double(c.e.d));
  std::vector<TilePair> tiles;  // the square tiles on the diagonal
  for (int64_t a0 = 0; a0 < P; a0 += CW)
    tiles.push_back({a0, std::min(P, a0 + CW), a0, std::min(P, a0 + CW)});
  drive(c.e, c.a, c.a, tiles, int64_t(tiles.size()), c.nt, [&] {
    return RenormConsumer<T>{Q, c.e.d, P, false, true, norm, out, {}, {}, {}};
  });
}

template <class T>
void deep_local_kernel_adjoint(const View2<T>& A, const View2<T>* B, const View2<T>& W,
                               bool w_symmetric, const DeepParams& p, T* out) {
  const Call<T> c(p, A, B, false);
  const bool sym = c.sym && w_symmetric;
  const int64_t d = c.e.d, nf = final_pairs(p);
  const auto tiles = tile_pairs(c.a.P, c.bs().P, c.e.na, c.e.nb, sym);
  // Tiles are summed in a fixed number of contiguous groups, each into its own slot, and the
  // slots in order: the same result bit for bit whatever the thread count.
  const int64_t ngroups = std::max<int64_t>(1, std::min<int64_t>(int64_t(tiles.size()), 64));
  std::vector<double> slots(static_cast<size_t>(ngroups * nf), 0.0);
  drive(c.e, c.a, c.bs(), tiles, ngroups, c.nt, [&] {
    return AdjointConsumer<T>{&W, sym, slots.data(), nf, {}, {}, nullptr};
  });
  std::vector<double> H(static_cast<size_t>(nf));
  reduce_slots(slots, ngroups, nf, H.data());
  // G = H, or H + H^T for the symmetric visit (the plan holds (j, i) with (i, j))
  std::vector<double> G(static_cast<size_t>(d * d), 0.0);
  const int32_t* fp = p.plan.levels.back().pairs;
  for (int64_t f = 0; f < nf; ++f) {
    G[fp[2 * f] * d + fp[2 * f + 1]] += H[f];
    if (sym) G[fp[2 * f + 1] * d + fp[2 * f]] += H[f];
  }
  for (int64_t x = 0; x < d * d; ++x) out[x] = T(G[x]);
}

template <class T>
void deep_pack_compressed(const View2<T>& A, const int32_t* cols, int64_t ncols,
                          const DeepParams& p, T* out) {
  const int64_t nf = final_pairs(p);
  for (int64_t f = 0; f < nf; ++f)
    if (cols[f] < 0 || cols[f] >= ncols)
      throw std::invalid_argument("deep pack: column " + std::to_string(cols[f]) + " outside [0, " +
                                  std::to_string(ncols) + ")");
  const Call<T> c(p, A, nullptr, false);
  const int64_t P = c.a.P;
  std::fill(out, out + P * (P + 1) / 2 * ncols, T(0));
  const auto tiles = tile_pairs(P, P, c.e.na, c.e.nb, true);
  // Each row (mu, nu) belongs to one tile: no two threads write one entry.
  drive(c.e, c.a, c.a, tiles, int64_t(tiles.size()), c.nt, [&] {
    return PackConsumer<T>{cols, ncols, P, out, {}};
  });
}

#define LKR_DEEP_INSTANTIATE(T)                                                                    \
  template void deep_local_kernel<T>(const View2<T>&, const View2<T>*, const DeepParams&, T*);     \
  template void deep_renormalized_kernel<T>(const View2<T>&, const View2<T>*, const T*, double,    \
                                            const DeepParams&, T*);                                \
  template void deep_renormalized_kernel_diag<T>(const View2<T>&, const T*, double,                \
                                                 const DeepParams&, T*);                           \
  template void deep_local_kernel_adjoint<T>(const View2<T>&, const View2<T>*, const View2<T>&,    \
                                             bool, const DeepParams&, T*);                         \
  template void deep_pack_compressed<T>(const View2<T>&, const int32_t*, int64_t,                  \
                                        const DeepParams&, T*);
LKR_DEEP_INSTANTIATE(float)
LKR_DEEP_INSTANTIATE(double)

}  // namespace lkr
