#include "deep_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "dispatch.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

// As in local_kernel.cpp: the hot per-pair function is compiled for AVX-512, AVX2+FMA and
// the baseline and picked at run time (the build stays portable without -march=native).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LKR_NO_CLONES)
#define LKR_DEEP_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LKR_DEEP_HOT
#endif
#if defined(__GNUC__)
#define LKR_DEEP_INLINE inline __attribute__((always_inline))
#else
#define LKR_DEEP_INLINE inline
#endif

namespace lkr {
namespace {

int threads_of(int n) { return omp_threads(n); }

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Register blocking of the layer-1 dot products: R rows x CW columns (64 bytes) of one panel.
constexpr int kRows = 4;
template <class T>
constexpr int kCols = 64 / int(sizeof(T));

// Which layer-1 position pairs the layers above read. Layer l + 1 reads K_l only at pairs
// (w_p(t), w_q(t)) of pairs (p, q) it needs itself (the same offset t on both sides); the
// last layer needs all of its d x d. Upper strides thin this out: after a stride-2 layer
// only pairs with p = q (mod 2) per axis are read, a quarter of them in 2D. Layer 1 (the
// costly one: n1^2 M1 multiply-adds per sample pair) is computed on the connected
// components of the needed pairs only, each component a dense block: positions are
// permuted so that a component's rows are consecutive and its columns start a panel.
// Entries outside the blocks are never written and never read. With one component (e.g.
// L = 1, or stride-1 layers) this is the plain computation of all pairs.
struct Layout {
  int64_t N1 = 0, Ctot = 0, ld1 = 0;
  std::vector<int64_t> perm;            // permuted row r -> position
  std::vector<int64_t> rowpos, colpos;  // position -> row / padded column (N1: the sentinel)
  std::vector<int64_t> roff, rsize, coff;  // per component: first row, size, first column
};

template <class T>
Layout layer1_layout(const DeepParams& p, int64_t N1, int CW) {
  Layout lay;
  lay.N1 = N1;
  // needed pairs, top down
  const size_t nl = p.layers.size();
  std::vector<char> need;
  if (nl == 0) {
    need.assign(static_cast<size_t>(N1 * N1), 1);
  } else {
    int64_t n = p.layers.back().n_out;
    std::vector<char> up(static_cast<size_t>(n * n), 1);
    for (size_t l = nl; l-- > 0;) {
      const DeepLayer& L = p.layers[l];
      std::vector<char> down(static_cast<size_t>(L.n_in * L.n_in), 0);
      for (int64_t a = 0; a < L.n_out; ++a)
        for (int64_t b = 0; b < L.n_out; ++b) {
          if (!up[a * L.n_out + b]) continue;
          for (int64_t t = 0; t < L.k; ++t) {
            const int32_t i = L.index[a * L.k + t], j = L.index[b * L.k + t];
            if (i < L.n_in && j < L.n_in) down[i * L.n_in + j] = 1;
          }
        }
      up.swap(down);
    }
    need.swap(up);
  }
  // components (union-find over the needed pairs)
  std::vector<int64_t> parent(static_cast<size_t>(N1));
  for (int64_t i = 0; i < N1; ++i) parent[i] = i;
  auto find = [&](int64_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  };
  std::vector<char> used(static_cast<size_t>(N1), 0);
  for (int64_t i = 0; i < N1; ++i)
    for (int64_t j = 0; j < N1; ++j)
      if (need[i * N1 + j]) {
        used[i] = used[j] = 1;
        const int64_t a = find(i), b = find(j);
        if (a != b) parent[std::max(a, b)] = std::min(a, b);
      }
  lay.rowpos.assign(static_cast<size_t>(N1 + 1), N1);
  lay.colpos.assign(static_cast<size_t>(N1 + 1), 0);
  std::vector<int64_t> comp_of_root(static_cast<size_t>(N1), -1);
  std::vector<std::vector<int64_t>> comps;
  for (int64_t i = 0; i < N1; ++i) {
    if (!used[i]) continue;
    const int64_t r = find(i);
    if (comp_of_root[r] < 0) {
      comp_of_root[r] = int64_t(comps.size());
      comps.emplace_back();
    }
    comps[comp_of_root[r]].push_back(i);
  }
  int64_t row = 0, col = 0;
  for (const auto& c : comps) {
    lay.roff.push_back(row);
    lay.rsize.push_back(int64_t(c.size()));
    lay.coff.push_back(col);
    for (size_t k = 0; k < c.size(); ++k) {
      lay.perm.push_back(c[k]);
      lay.rowpos[c[k]] = row + int64_t(k);
      lay.colpos[c[k]] = col + int64_t(k);
    }
    row += int64_t(c.size());
    col += round_up(int64_t(c.size()), CW);
  }
  lay.Ctot = col;
  for (int64_t i = 0; i < N1; ++i)
    if (!used[i]) lay.colpos[i] = col;  // never read; the zero sentinel column to be safe
  lay.colpos[N1] = col;                 // the sentinel: column Ctot is never written
  lay.ld1 = col + 1;
  return lay;
}

// Per-sample preparation of every layer. Layer 1 (l = 0 here): rows z scaled so that
// u = z_p . z_q (see activations.hpp), amplitudes s. Layers l >= 1: the factors of the map
// K = s_p s_q F(C r_p r_q), from the sample's own variances v = C_l,pp(mu, mu):
//   erf: r = sqrt(2 / (1 + 2 v)), s = 1;  relu: r = 1 / sqrt(v) (0 at v = 0), s = sqrt(v);
//   linear: r = s = 1.
// A window that is all padding has v = 0: erf and linear give K = 0 through C = 0, relu
// through s = 0; nothing divides by zero. The variances follow their own recursion (only
// the diagonal K_l,pp(mu, mu) = K_sigma(v, v, v) enters the next layer's diagonal).
template <class T>
struct Chain {
  int64_t P = 0, N1 = 0, M = 0, Cp = 0;
  std::vector<T> z;      // (P, N1, M)
  std::vector<T> zt;     // (P, Cp * M): z packed in panels of CW columns (Layout::colpos)
  std::vector<T> s1;     // (P, Cp): layer-1 amplitudes by column, zero in padding columns
  std::vector<T> s1r;    // (P, N1): the same by permuted row (Layout::perm)
  std::vector<std::vector<T>> r, s;  // layers >= 2: (P, n_l)
};

double map_factor_r(Activation act, double v) {
  switch (act) {
    case Activation::erf: return std::sqrt(2.0 / (1.0 + 2.0 * v));
    case Activation::relu: return v > 0 ? 1.0 / std::sqrt(v) : 0.0;
    default: return 1.0;
  }
}
double map_factor_s(Activation act, double v) {
  return act == Activation::relu ? std::sqrt(v > 0 ? v : 0.0) : 1.0;
}

template <class T>
Chain<T> prepare_chain(const View3<T>& x, const DeepParams& p, const Layout& lay,
                       int nthreads) {
  const int64_t Cp = lay.Ctot;
  Chain<T> c;
  c.P = x.shape[0];
  c.N1 = x.shape[1];
  c.M = x.shape[2];
  c.Cp = Cp;
  const int64_t P = c.P, N1 = c.N1, M = c.M;
  constexpr int CW = kCols<T>;
  const Activation act = p.activation;
  c.z.resize(static_cast<size_t>(P * N1 * M));
  c.zt.assign(static_cast<size_t>(P * Cp * M), T(0));
  c.s1.assign(static_cast<size_t>(P * Cp), T(0));
  c.s1r.assign(static_cast<size_t>(P * N1), T(0));
  const size_t nl = p.layers.size();
  c.r.resize(nl);
  c.s.resize(nl);
  for (size_t l = 0; l < nl; ++l) {
    c.r[l].resize(static_cast<size_t>(P * p.layers[l].n_out));
    c.s[l].resize(static_cast<size_t>(P * p.layers[l].n_out));
  }
  const double norm = 1.0 / (p.lambda0 * double(M));
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<double> kd, kn;
#pragma omp for schedule(static)
    for (int64_t mu = 0; mu < P; ++mu) {
      kd.assign(static_cast<size_t>(N1), 0.0);
      for (int64_t i = 0; i < N1; ++i) {
        double sq = 0;
        for (int64_t k = 0; k < M; ++k) {
          const double v = double(x(mu, i, k));
          sq += v * v;
        }
        const double cv = sq * norm;
        double scale;
        switch (act) {
          case Activation::linear: scale = std::sqrt(norm); break;
          case Activation::erf: scale = std::sqrt(2.0 * norm / (1.0 + 2.0 * cv)); break;
          default: scale = sq > 0 ? 1.0 / std::sqrt(sq) : 0.0;
        }
        const int64_t col = lay.colpos[i], row = lay.rowpos[i];
        const bool placed = row < N1;  // positions no layer above reads are not packed
        if (placed) {
          c.s1[mu * Cp + col] = T(map_factor_s(act, cv));
          c.s1r[mu * N1 + row] = T(map_factor_s(act, cv));
        }
        T* zr = c.z.data() + (mu * N1 + i) * M;
        T* panel = c.zt.data() + mu * Cp * M + (col / CW) * M * CW + col % CW;
        for (int64_t k = 0; k < M; ++k) {
          zr[k] = T(double(x(mu, i, k)) * scale);
          if (placed) panel[k * CW] = zr[k];
        }
        kd[i] = nngp_map<double>(act, cv, cv, cv);
      }
      for (size_t l = 0; l < nl; ++l) {
        const DeepLayer& L = p.layers[l];
        kn.assign(static_cast<size_t>(L.n_out), 0.0);
        for (int64_t q = 0; q < L.n_out; ++q) {
          double v = 0;
          for (int64_t t = 0; t < L.k; ++t) {
            const int32_t j = L.index[q * L.k + t];
            if (j < L.n_in) v += kd[j];
          }
          v *= L.norm;
          c.r[l][mu * L.n_out + q] = T(map_factor_r(act, v));
          c.s[l][mu * L.n_out + q] = T(map_factor_s(act, v));
          kn[q] = nngp_map<double>(act, v, v, v);
        }
        kd.swap(kn);
      }
    }
  }
  return c;
}

// A layer >= 2 as the pair kernel reads it: the window table and its transpose (k, n_out),
// the leading dimensions of the previous and of this layer's buffers.
struct Tab {
  int64_t n_in, n_out, k, ldp, ldn;
  const int32_t* idx;
  const int32_t* idxT;
  double norm;
};

// u[r][c] = a_r . b_c over one packed panel (M x CW, contiguous), as in local_kernel.cpp.
template <class T, int R, int CW>
LKR_DEEP_INLINE void dot_panel(const T* const* a, int64_t M, const T* panel, T (&u)[R][CW]) {
  for (int r = 0; r < R; ++r) {
    const T ar = a[r][0];
#pragma omp simd
    for (int c = 0; c < CW; ++c) u[r][c] = ar * panel[c];
  }
  for (int64_t k = 1; k < M; ++k) {
    const T* bk = panel + k * CW;
    for (int r = 0; r < R; ++r) {
      const T ar = a[r][k];
#pragma omp simd
      for (int c = 0; c < CW; ++c) u[r][c] += ar * bk[c];
    }
  }
}

// All position pairs of every layer for one sample pair (mu, nu); returns the final block
// (d x d, leading dimension ld of the returned buffer). buf[l] holds layer l's block with
// one extra zero row and column (position n_l, the padding sentinel of the next layer's
// windows): rows/columns past n_l are never written, so they stay zero.
template <class T, Activation ACT>
LKR_DEEP_HOT void pair_blocks(const T* az, const T* as, const T* bt, const T* sb,
                              const int64_t* perm, const int64_t* roff, const int64_t* rsize,
                              const int64_t* coff, int64_t ncomp, int64_t ld1, int64_t M,
                              const Tab* tabs, int64_t ntabs, const T* const* ra,
                              const T* const* sa, const T* const* rb, const T* const* sbl,
                              T* const* buf, T* crow) {
  constexpr int R = kRows, CW = kCols<T>;
  T* K1 = buf[0];
  for (int64_t comp = 0; comp < ncomp; ++comp) {
   const int64_t r0 = roff[comp], n = rsize[comp], cb = coff[comp], ce = cb + round_up(n, CW);
   for (int64_t g = 0; g < n; g += R) {
    const T* a[R];
    for (int r = 0; r < R; ++r) a[r] = az + perm[r0 + (g + r < n ? g + r : g)] * M;
    for (int64_t c0 = cb; c0 < ce; c0 += CW) {
      T u[R][CW];
      dot_panel<T, R, CW>(a, M, bt + c0 * M, u);
      for (int r = 0; r < R && g + r < n; ++r) {
        T* o = K1 + (r0 + g + r) * ld1 + c0;
        const T* s = sb + c0;
        const T wr = as[r0 + g + r];
#pragma omp simd
        for (int c = 0; c < CW; ++c) {
          const T f = map_F_t<ACT>(u[r][c]);
          o[c] = ACT == Activation::relu ? wr * s[c] * f : f;
        }
      }
    }
   }
  }
  for (int64_t l = 0; l < ntabs; ++l) {
    const Tab& t = tabs[l];
    const T* Kp = buf[l];
    T* Kn = buf[l + 1];
    const T norm = T(t.norm);
    const T* ral = ra[l];
    const T* rbl = rb[l];
    const T* sal = sa[l];
    const T* sbll = sbl[l];
    for (int64_t p = 0; p < t.n_out; ++p) {
      for (int64_t q = 0; q < t.n_out; ++q) crow[q] = T(0);
      for (int64_t k = 0; k < t.k; ++k) {
        const T* Krow = Kp + int64_t(t.idx[p * t.k + k]) * t.ldp;
        const int32_t* it = t.idxT + k * t.n_out;
#pragma omp simd
        for (int64_t q = 0; q < t.n_out; ++q) crow[q] += Krow[it[q]];
      }
      // (C norm) (r_p r_q): both factors are symmetric in (p, q) when mu = nu, so the
      // diagonal blocks come out exactly symmetric
      const T rp = ral[p], sp = sal[p];
      T* o = Kn + p * t.ldn;
#pragma omp simd
      for (int64_t q = 0; q < t.n_out; ++q) {
        const T f = map_F_t<ACT>((crow[q] * norm) * (rp * rbl[q]));
        o[q] = ACT == Activation::relu ? (sp * sbll[q]) * f : f;
      }
    }
  }
}

template <class T>
struct Engine {
  const DeepParams& p;
  Layout lay;
  std::vector<std::vector<int32_t>> idxT, idx1;
  std::vector<Tab> tabs;
  int64_t N1, M, Cp, d, ldf;
  std::vector<int64_t> sizes;  // buffer sizes per layer

  Engine(const DeepParams& params, int64_t n1, int64_t m)
      : p(params), lay(layer1_layout<T>(params, n1, kCols<T>)), N1(n1), M(m) {
    Cp = lay.Ctot;
    int64_t ldp = lay.ld1;
    sizes.push_back((N1 + 1) * lay.ld1);
    for (size_t l = 0; l < p.layers.size(); ++l) {
      const DeepLayer& L = p.layers[l];
      // layer 2 reads layer 1 in the permuted layout: rows by rowpos, columns by colpos
      const int32_t* index = L.index;
      std::vector<int32_t> rows;
      std::vector<int32_t> tr(static_cast<size_t>(L.k * L.n_out));
      if (l == 0) {
        rows.resize(static_cast<size_t>(L.n_out * L.k));
        for (int64_t e = 0; e < L.n_out * L.k; ++e) rows[e] = int32_t(lay.rowpos[L.index[e]]);
      }
      for (int64_t q = 0; q < L.n_out; ++q)
        for (int64_t k = 0; k < L.k; ++k)
          tr[k * L.n_out + q] = l == 0 ? int32_t(lay.colpos[L.index[q * L.k + k]])
                                       : L.index[q * L.k + k];
      idxT.push_back(std::move(tr));
      idx1.push_back(std::move(rows));
      if (l == 0) index = idx1.back().data();
      const int64_t ldn = L.n_out + 1;
      tabs.push_back(Tab{L.n_in, L.n_out, L.k, ldp, ldn, index, nullptr, L.norm});
      sizes.push_back((L.n_out + 1) * ldn);
      ldp = ldn;
    }
    for (size_t l = 0; l < tabs.size(); ++l) tabs[l].idxT = idxT[l].data();
    d = p.layers.empty() ? N1 : p.layers.back().n_out;
    ldf = ldp;
  }

  struct Work {
    std::vector<std::vector<T>> buf;
    std::vector<T*> ptr;
    std::vector<T> crow;
    std::vector<const T*> ra, sa, rb, sb;
  };

  Work work() const {
    Work w;
    for (int64_t s : sizes) w.buf.emplace_back(static_cast<size_t>(s), T(0));
    for (auto& b : w.buf) w.ptr.push_back(b.data());
    int64_t nmax = 1;
    for (const Tab& t : tabs) nmax = std::max(nmax, t.n_out);
    w.crow.resize(static_cast<size_t>(nmax));
    w.ra.resize(tabs.size());
    w.sa.resize(tabs.size());
    w.rb.resize(tabs.size());
    w.sb.resize(tabs.size());
    return w;
  }

  // The final block of pair (mu of A, nu of B), leading dimension ldf.
  const T* pair(const Chain<T>& A, int64_t mu, const Chain<T>& B, int64_t nu, Work& w) const {
    for (size_t l = 0; l < tabs.size(); ++l) {
      const int64_t n = tabs[l].n_out;
      w.ra[l] = A.r[l].data() + mu * n;
      w.sa[l] = A.s[l].data() + mu * n;
      w.rb[l] = B.r[l].data() + nu * n;
      w.sb[l] = B.s[l].data() + nu * n;
    }
    const auto run = [&](auto act) {
      pair_blocks<T, decltype(act)::value>(
          A.z.data() + mu * N1 * M, A.s1r.data() + mu * N1, B.zt.data() + nu * Cp * M,
          B.s1.data() + nu * Cp, lay.perm.data(), lay.roff.data(), lay.rsize.data(),
          lay.coff.data(), int64_t(lay.roff.size()), lay.ld1, M, tabs.data(),
          int64_t(tabs.size()), w.ra.data(), w.sa.data(), w.rb.data(), w.sb.data(),
          w.ptr.data(), w.crow.data());
    };
    switch (p.activation) {
      case Activation::linear: run(std::integral_constant<Activation, Activation::linear>{}); break;
      case Activation::erf: run(std::integral_constant<Activation, Activation::erf>{}); break;
      case Activation::relu: run(std::integral_constant<Activation, Activation::relu>{}); break;
    }
    return w.buf.back().data();
  }
};

// Tiles of sample pairs: blocks of bs samples of A times blocks of B (upper triangle when
// sym); within a tile, the B samples' packed panels stay in cache.
struct TilePair {
  int64_t a0, a1, b0, b1;
};

std::vector<TilePair> tiles_of(int64_t P, int64_t P2, int64_t bs, bool upper) {
  std::vector<TilePair> t;
  for (int64_t a0 = 0; a0 < P; a0 += bs)
    for (int64_t b0 = upper ? a0 : 0; b0 < P2; b0 += bs)
      t.push_back({a0, std::min(P, a0 + bs), b0, std::min(P2, b0 + bs)});
  return t;
}

// Calls f(mu, nu, block, work, group) for every pair (mu <= nu when sym), tiles split into a
// fixed number of contiguous groups (so that per-group sums are independent of threads).
template <class T, class F>
void for_pairs(const Engine<T>& e, const Chain<T>& A, const Chain<T>& B, bool sym, int nthreads,
               int64_t ngroups_max, int64_t& ngroups_out, F&& f) {
  const int64_t bs = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, e.Cp * e.M));
  const auto tiles = tiles_of(A.P, B.P, bs, sym);
  const int64_t nt = int64_t(tiles.size());
  const int64_t ng = std::max<int64_t>(1, std::min(nt, ngroups_max));
  ngroups_out = ng;
#pragma omp parallel num_threads(nthreads)
  {
    auto w = e.work();
#pragma omp for schedule(dynamic, 1)
    for (int64_t g = 0; g < ng; ++g)
      for (int64_t ti = g * nt / ng; ti < (g + 1) * nt / ng; ++ti) {
        const TilePair tp = tiles[ti];
        for (int64_t mu = tp.a0; mu < tp.a1; ++mu)
          for (int64_t nu = tp.b0; nu < tp.b1; ++nu) {
            if (sym && nu < mu) continue;
            f(mu, nu, w, g);
          }
      }
  }
}

}  // namespace

template <class T>
void deep_local_kernel(const View3<T>& A, const View3<T>* B, const DeepParams& p, T* out) {
  const int nt = threads_of(p.nthreads);
  Engine<T> e(p, A.shape[1], A.shape[2]);
  const auto a = prepare_chain(A, p, e.lay, nt);
  const auto b = B ? prepare_chain(*B, p, e.lay, nt) : Chain<T>{};
  const Chain<T>& bb = B ? b : a;
  const bool sym = B == nullptr;
  const int64_t d = e.d, ldf = e.ldf, P2 = bb.P;
  int64_t ng = 0;
  for_pairs<T>(e, a, bb, sym, nt, 1 << 20, ng, [&](int64_t mu, int64_t nu, auto& w, int64_t) {
    const T* K = e.pair(a, mu, bb, nu, w);
    T* o = out + (mu * P2 + nu) * d * d;
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) o[i * d + j] = K[i * ldf + j];
    if (sym && nu != mu) {
      T* m = out + (nu * P2 + mu) * d * d;
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j) m[j * d + i] = K[i * ldf + j];
    }
  });
}

template <class T>
void deep_renormalized_kernel(const View3<T>& A, const View3<T>* B, const T* Q, double lambdaL,
                              const DeepParams& p, T* out) {
  const int nt = threads_of(p.nthreads);
  Engine<T> e(p, A.shape[1], A.shape[2]);
  const auto a = prepare_chain(A, p, e.lay, nt);
  const auto b = B ? prepare_chain(*B, p, e.lay, nt) : Chain<T>{};
  const Chain<T>& bb = B ? b : a;
  const bool sym = B == nullptr;
  const int64_t d = e.d, ldf = e.ldf, P2 = bb.P;
  const double norm = 1.0 / (lambdaL * double(d));
  int64_t ng = 0;
  for_pairs<T>(e, a, bb, sym, nt, 1 << 20, ng, [&](int64_t mu, int64_t nu, auto& w, int64_t) {
    const T* K = e.pair(a, mu, bb, nu, w);
    double s = 0;
    for (int64_t i = 0; i < d; ++i) {
      T row = T(0);
      for (int64_t j = 0; j < d; ++j) row += Q[i * d + j] * K[i * ldf + j];
      s += double(row);
    }
    const T v = T(s * norm);
    out[mu * P2 + nu] = v;
    if (sym) out[nu * P2 + mu] = v;
  });
}

template <class T>
void deep_renormalized_kernel_diag(const View3<T>& A, const T* Q, double lambdaL,
                                   const DeepParams& p, T* out) {
  const int nt = threads_of(p.nthreads);
  Engine<T> e(p, A.shape[1], A.shape[2]);
  const auto a = prepare_chain(A, p, e.lay, nt);
  const int64_t d = e.d, ldf = e.ldf;
  const double norm = 1.0 / (lambdaL * double(d));
#pragma omp parallel num_threads(nt)
  {
    auto w = e.work();
#pragma omp for schedule(dynamic, 4)
    for (int64_t mu = 0; mu < a.P; ++mu) {
      const T* K = e.pair(a, mu, a, mu, w);
      double s = 0;
      for (int64_t i = 0; i < d; ++i) {
        T row = T(0);
        for (int64_t j = 0; j < d; ++j) row += Q[i * d + j] * K[i * ldf + j];
        s += double(row);
      }
      out[mu] = T(s * norm);
    }
  }
}

template <class T>
void deep_local_kernel_adjoint(const View3<T>& A, const View3<T>* B, const View2<T>& W,
                               bool w_symmetric, const DeepParams& p, T* out) {
  const int nt = threads_of(p.nthreads);
  Engine<T> e(p, A.shape[1], A.shape[2]);
  const auto a = prepare_chain(A, p, e.lay, nt);
  const auto b = B ? prepare_chain(*B, p, e.lay, nt) : Chain<T>{};
  const Chain<T>& bb = B ? b : a;
  const bool sym = B == nullptr && w_symmetric;
  const int64_t d = e.d, ldf = e.ldf;
  const int64_t gmax = 64;
  std::vector<double> slots(static_cast<size_t>(gmax * d * d), 0.0);
  int64_t ng = 0;
  // With sym each unordered pair is visited once: off-diagonal pairs stand for W_mu,nu K^{mu nu}
  // + W_nu,mu K^{nu mu} = W_mu,nu (K + K^T), diagonal ones at half weight; G = H + H^T.
  for_pairs<T>(e, a, bb, sym, nt, gmax, ng, [&](int64_t mu, int64_t nu, auto& w, int64_t g) {
    const double wv = double(W(mu, nu)) * ((sym && mu == nu) ? 0.5 : 1.0);
    if (wv == 0.0) return;  // e.g. a block-sparse W: skip the pair's whole recursion
    const T* K = e.pair(a, mu, bb, nu, w);
    double* h = slots.data() + g * d * d;
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) h[i * d + j] += wv * double(K[i * ldf + j]);
  });
  std::vector<double> total(static_cast<size_t>(d * d), 0.0);
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t k = 0; k < d * d; ++k) total[k] += slots[g * d * d + k];
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j)
      out[i * d + j] = T(sym ? total[i * d + j] + total[j * d + i] : total[i * d + j]);
}

#define LKR_DEEP_INSTANTIATE(T)                                                                    \
  template void deep_local_kernel<T>(const View3<T>&, const View3<T>*, const DeepParams&, T*);    \
  template void deep_renormalized_kernel<T>(const View3<T>&, const View3<T>*, const T*, double,   \
                                            const DeepParams&, T*);                               \
  template void deep_renormalized_kernel_diag<T>(const View3<T>&, const T*, double,               \
                                                 const DeepParams&, T*);                          \
  template void deep_local_kernel_adjoint<T>(const View3<T>&, const View3<T>*, const View2<T>&,   \
                                             bool, const DeepParams&, T*);
LKR_DEEP_INSTANTIATE(float)
LKR_DEEP_INSTANTIATE(double)

}  // namespace lkr
