#include "local_kernel_multi.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "local_kernel_tiles.hpp"
#include "tiles.hpp"

namespace lkr {
namespace {

using tiles::reduce_slots;

// m_i^mu in double, (P, Np).
template <class T>
std::vector<double> means(const View3<T>& x, const KernelParams& p, int nt) {
  const int64_t P = x.shape[0], Np = x.shape[1], M = x.shape[2];
  std::vector<double> m(static_cast<size_t>(P * Np), 0.0);
  if (p.activation != Activation::relu) return m;  // odd maps: mean zero
  const double norm = 1.0 / (p.lambda0 * double(M) * 2.0 * 3.14159265358979323846);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t mu = 0; mu < P; ++mu)
    for (int64_t i = 0; i < Np; ++i) {
      double sq = 0;
      for (int64_t k = 0; k < M; ++k) {
        const double v = double(x(mu, i, k));
        sq += v * v;
      }
      m[mu * Np + i] = std::sqrt(sq * norm);  // sqrt(C_ii / (2 pi))
    }
  return m;
}

// (Np D, Np D) patch-major matrix -> (Np^2, D^2) with row i Np + j holding block (i, j),
// times `scale`: the layout in which one kernel entry K_ij multiplies a contiguous row.
template <class T>
std::vector<double> blocks_by_patch_pair(const T* Q, int64_t Np, int64_t D, double scale) {
  const int64_t ND = Np * D, D2 = D * D;
  std::vector<double> r(static_cast<size_t>(Np * Np * D2));
  for (int64_t i = 0; i < Np; ++i)
    for (int64_t j = 0; j < Np; ++j)
      for (int64_t a = 0; a < D; ++a)
        for (int64_t b = 0; b < D; ++b)
          r[(i * Np + j) * D2 + a * D + b] = scale * double(Q[(i * D + a) * ND + j * D + b]);
  return r;
}

}  // namespace

template <class T>
void patch_mean(const View3<T>& A, const KernelParams& p, T* out) {
  const auto m = means(A, p, omp_threads(p.nthreads));
  for (size_t k = 0; k < m.size(); ++k) out[k] = T(m[k]);
}

template <class T>
void renormalized_kernel_multi(const View3<T>& A, const View3<T>* B, const T* Q, const T* Qm,
                               int64_t D, double lambda1, const KernelParams& p, T* out) {
  const bool sym = B == nullptr;
  const View3<T>& Bv = sym ? A : *B;
  const int64_t Np = A.shape[1], P = A.shape[0], P2 = Bv.shape[0], D2 = D * D;
  const int64_t ld = P2 * D;  // row length of out
  const double norm = 1.0 / (lambda1 * double(Np));
  const auto qr = blocks_by_patch_pair(Q, Np, D, norm);
  for_each_kernel_tile<T>(A, B, p, sym, 0, [&](int64_t, const KernelTile& t) {
    const T* k = static_cast<const T*>(t.k);
    const int64_t nb = t.b1 - t.b0, NN = Np * Np;
    std::vector<double> acc(static_cast<size_t>(D2));
    for (int64_t mu = t.a0; mu < t.a1; ++mu)
      for (int64_t nu = sym ? std::max(mu, t.b0) : t.b0; nu < t.b1; ++nu) {
        const T* kk = k + ((mu - t.a0) * nb + (nu - t.b0)) * NN;
        std::fill(acc.begin(), acc.end(), 0.0);
        double* ac = acc.data();
        // one kernel entry, D^2 outputs: an axpy over the contiguous (a, b) row of Q
        for (int64_t ij = 0; ij < NN; ++ij) {
          const double kv = double(kk[ij]);
          const double* q = qr.data() + ij * D2;
#pragma omp simd
          for (int64_t ab = 0; ab < D2; ++ab) ac[ab] += kv * q[ab];
        }
        for (int64_t a = 0; a < D; ++a)
          for (int64_t b = 0; b < D; ++b) {
            const T v = T(ac[a * D + b]);
            out[(mu * D + a) * ld + nu * D + b] = v;
            if (sym) out[(nu * D + b) * ld + mu * D + a] = v;
          }
      }
  });
  if (!Qm) return;
  // mean term: U[(mu a), (j b)] = sum_i m_i^mu Qm[(i a), (j b)], then contract with m^nu
  const int nt = omp_threads(p.nthreads);
  const auto ma = means(A, p, nt);
  const auto mb = sym ? std::vector<double>() : means(Bv, p, nt);
  const double* mB = sym ? ma.data() : mb.data();
  const int64_t ND = Np * D;
  std::vector<double> U(static_cast<size_t>(P * D * ND), 0.0);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t mu = 0; mu < P; ++mu)
    for (int64_t i = 0; i < Np; ++i) {
      const double mi = ma[mu * Np + i] * norm;
      if (mi == 0.0) continue;
      for (int64_t a = 0; a < D; ++a) {
        double* u = U.data() + (mu * D + a) * ND;
        const T* q = Qm + (i * D + a) * ND;
        for (int64_t c = 0; c < ND; ++c) u[c] += mi * double(q[c]);
      }
    }
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
  for (int64_t mu = 0; mu < P; ++mu)
    for (int64_t nu = sym ? mu : 0; nu < P2; ++nu)
      for (int64_t a = 0; a < D; ++a)
        for (int64_t b = (sym && nu == mu) ? a : 0; b < D; ++b) {  // each entry once
          const double* u = U.data() + (mu * D + a) * ND + b;
          double s = 0;
          for (int64_t j = 0; j < Np; ++j) s += u[j * D] * mB[nu * Np + j];
          T& o = out[(mu * D + a) * ld + nu * D + b];
          o = T(double(o) + s);
          if (sym) out[(nu * D + b) * ld + mu * D + a] = o;
        }
}

template <class T>
void local_kernel_adjoint_multi(const View3<T>& A, const View3<T>* B, const View2<T>& W,
                                bool w_symmetric, int64_t D, const KernelParams& p, T* out,
                                T* gm_out) {
  const bool sym = B == nullptr && w_symmetric;
  const View3<T>& Bv = B ? *B : A;
  const int64_t Np = A.shape[1], P = A.shape[0], P2 = Bv.shape[0], D2 = D * D, NN = Np * Np;
  constexpr int64_t kGroups = 64;
  std::vector<double> slots(static_cast<size_t>(kGroups * NN * D2), 0.0);
  const int64_t used =
      for_each_kernel_tile<T>(A, B, p, sym, kGroups, [&](int64_t grp, const KernelTile& t) {
        const T* k = static_cast<const T*>(t.k);
        const int64_t nb = t.b1 - t.b0;
        // diagonal tiles visit every ordered pair: half weight, then G = H + H^T below
        const double weight = (sym && t.diagonal_block) ? 0.5 : 1.0;
        double* h = slots.data() + grp * NN * D2;
        std::vector<double> w(static_cast<size_t>(D2));
        for (int64_t mu = t.a0; mu < t.a1; ++mu)
          for (int64_t nu = t.b0; nu < t.b1; ++nu) {
            bool any = false;
            for (int64_t a = 0; a < D; ++a)
              for (int64_t b = 0; b < D; ++b) {
                const double v = weight * double(W(mu * D + a, nu * D + b));
                w[a * D + b] = v;
                any = any || v != 0.0;
              }
            if (!any) continue;
            const T* kk = k + ((mu - t.a0) * nb + (nu - t.b0)) * NN;
            const double* wc = w.data();
            for (int64_t ij = 0; ij < NN; ++ij) {
              const double kv = double(kk[ij]);
              double* hr = h + ij * D2;
#pragma omp simd
              for (int64_t ab = 0; ab < D2; ++ab) hr[ab] += kv * wc[ab];
            }
          }
      });
  std::vector<double> total(static_cast<size_t>(NN * D2));
  reduce_slots(slots, used, NN * D2, total.data());
  const int64_t ND = Np * D;
  for (int64_t i = 0; i < Np; ++i)
    for (int64_t j = 0; j < Np; ++j)
      for (int64_t a = 0; a < D; ++a)
        for (int64_t b = 0; b < D; ++b) {
          double v = total[(i * Np + j) * D2 + a * D + b];
          if (sym) v += total[(j * Np + i) * D2 + b * D + a];
          out[(i * D + a) * ND + j * D + b] = T(v);
        }
  if (!gm_out) return;
  // G_m = m^T W m by blocks: V[(mu a), (j b)] = sum_nu W[(mu a), (nu b)] m_j^nu, then
  // G_m[(i a), (j b)] = sum_mu m_i^mu V[(mu a), (j b)]; subtracted from G in double.
  const int nt = omp_threads(p.nthreads);
  const auto ma = means(A, p, nt);
  const auto mb = B ? means(Bv, p, nt) : std::vector<double>();
  const double* mB = B ? mb.data() : ma.data();
  std::vector<double> V(static_cast<size_t>(P * D * ND), 0.0);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t r = 0; r < P * D; ++r) {
    double* v = V.data() + r * ND;
    for (int64_t nu = 0; nu < P2; ++nu)
      for (int64_t b = 0; b < D; ++b) {
        const double wv = double(W(r, nu * D + b));
        if (wv == 0.0) continue;
        for (int64_t j = 0; j < Np; ++j) v[j * D + b] += wv * mB[nu * Np + j];
      }
  }
  std::vector<double> gm(static_cast<size_t>(ND * ND), 0.0);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < Np; ++i)
    for (int64_t mu = 0; mu < P; ++mu) {
      const double mi = ma[mu * Np + i];
      if (mi == 0.0) continue;
      for (int64_t a = 0; a < D; ++a) {
        double* g = gm.data() + (i * D + a) * ND;
        const double* v = V.data() + (mu * D + a) * ND;
        for (int64_t c = 0; c < ND; ++c) g[c] += mi * v[c];
      }
    }
  for (int64_t r = 0; r < ND; ++r)
    for (int64_t c = 0; c < ND; ++c) {
      double g = gm[r * ND + c];
      if (sym) g = 0.5 * (gm[r * ND + c] + gm[c * ND + r]);  // exactly symmetric like G
      gm_out[r * ND + c] = T(g);
      out[r * ND + c] = T(double(out[r * ND + c]) - g);
    }
}

template <class T>
void stored_matmul(const T* S, int64_t rows, int64_t cols, const double* X, int64_t nrhs,
                   int nthreads, double* out) {
  const int nt = omp_threads(nthreads);
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> acc(static_cast<size_t>(nrhs));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* s = S + r * cols;
      if (nrhs == 1) {
        double v = 0;
#pragma omp simd reduction(+ : v)
        for (int64_t k = 0; k < cols; ++k) v += double(s[k]) * X[k];
        out[r] = v;
        continue;
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      double* ac = acc.data();
      for (int64_t k = 0; k < cols; ++k) {
        const double sv = double(s[k]);
        const double* x = X + k * nrhs;
#pragma omp simd
        for (int64_t c = 0; c < nrhs; ++c) ac[c] += sv * x[c];
      }
      std::copy(acc.begin(), acc.end(), out + r * nrhs);
    }
  }
}

template <class T>
void stored_matmul_t(const T* S, int64_t rows, int64_t cols, const double* W, int64_t nrhs,
                     int nthreads, double* out) {
  const int nt = omp_threads(nthreads);
  const int64_t n = cols * nrhs;
  const int64_t ngroups = std::max<int64_t>(1, std::min<int64_t>(rows, 64));
  std::vector<double> slots(static_cast<size_t>(ngroups * n), 0.0);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t g = 0; g < ngroups; ++g) {
    double* acc = slots.data() + g * n;
    for (int64_t r = g * rows / ngroups; r < (g + 1) * rows / ngroups; ++r) {
      const T* s = S + r * cols;
      const double* w = W + r * nrhs;
      if (nrhs == 1) {
        const double wv = w[0];
        if (wv == 0.0) continue;
#pragma omp simd
        for (int64_t k = 0; k < cols; ++k) acc[k] += double(s[k]) * wv;
        continue;
      }
      for (int64_t k = 0; k < cols; ++k) {
        const double sv = double(s[k]);
        double* a = acc + k * nrhs;
#pragma omp simd
        for (int64_t c = 0; c < nrhs; ++c) a[c] += sv * w[c];
      }
    }
  }
  reduce_slots(slots, ngroups, n, out);
}

template <class T, class S>
void pack_compressed(const View3<T>& A, bool antisym, bool diagonal, const KernelParams& p,
                     S* out) {
  const int64_t P = A.shape[0], Np = A.shape[1], NN = Np * Np;
  // column -> (i, j) of the stored patch pairs
  std::vector<int64_t> ci, cj;
  for (int64_t i = 0; i < Np; ++i)
    for (int64_t j = diagonal ? i : i + (antisym ? 1 : 0); j < (diagonal ? i + 1 : Np); ++j)
      ci.push_back(i), cj.push_back(j);
  const int64_t ncols = static_cast<int64_t>(ci.size());
  for_each_kernel_tile<T>(A, nullptr, p, true, 0, [&](int64_t, const KernelTile& t) {
    const T* k = static_cast<const T*>(t.k);
    const int64_t nb = t.b1 - t.b0;
    for (int64_t mu = t.a0; mu < t.a1; ++mu)
      for (int64_t nu = std::max(mu, t.b0); nu < t.b1; ++nu) {
        const T* kk = k + ((mu - t.a0) * nb + (nu - t.b0)) * NN;
        S* o = out + (mu * P - mu * (mu - 1) / 2 + nu - mu) * ncols;
        for (int64_t c = 0; c < ncols; ++c) {
          const int64_t i = ci[c], j = cj[c];
          const double kij = double(kk[i * Np + j]);
          if (i == j) o[c] = S(kij);
          else if (antisym) o[c] = S(kij - double(kk[j * Np + i]));
          else o[c] = S(kij + double(kk[j * Np + i]));
        }
      }
  });
}

template <class S>
void stored_kr_sym(const S* Sm, int64_t P, int64_t ncols, const double* q, double scale,
                   int nthreads, double* out) {
  const int nt = omp_threads(nthreads);
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt)
  for (int64_t mu = 0; mu < P; ++mu) {
    const S* row = Sm + (mu * P - mu * (mu - 1) / 2) * ncols;
    for (int64_t nu = mu; nu < P; ++nu) {
      const S* r = row + (nu - mu) * ncols;
      double v = 0;
#pragma omp simd reduction(+ : v)
      for (int64_t c = 0; c < ncols; ++c) v += double(r[c]) * q[c];
      v *= scale;
      out[mu * P + nu] = v;
      out[nu * P + mu] = v;
    }
  }
}

template <class S>
void stored_adjoint_sym(const S* Sm, int64_t P, int64_t ncols, const double* B, int nthreads,
                        double* g) {
  const int nt = omp_threads(nthreads);
  const int64_t ngroups = std::max<int64_t>(1, std::min<int64_t>(P, 64));
  std::vector<double> slots(static_cast<size_t>(ngroups * ncols), 0.0);
  // groups of rows mu with about equal numbers of pairs (row mu has P - mu of them)
  std::vector<int64_t> bounds(static_cast<size_t>(ngroups + 1), P);
  {
    const double total = double(P) * double(P + 1) / 2;
    int64_t mu = 0;
    double done = 0;
    bounds[0] = 0;
    for (int64_t gi = 1; gi < ngroups; ++gi) {
      while (mu < P && done < total * double(gi) / double(ngroups)) done += double(P - mu++);
      bounds[gi] = mu;
    }
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t gi = 0; gi < ngroups; ++gi) {
    double* acc = slots.data() + gi * ncols;
    for (int64_t mu = bounds[gi]; mu < bounds[gi + 1]; ++mu) {
      const S* row = Sm + (mu * P - mu * (mu - 1) / 2) * ncols;
      for (int64_t nu = mu; nu < P; ++nu) {
        const double w = (nu == mu ? 1.0 : 2.0) * B[mu * P + nu];
        if (w == 0.0) continue;
        const S* r = row + (nu - mu) * ncols;
#pragma omp simd
        for (int64_t c = 0; c < ncols; ++c) acc[c] += double(r[c]) * w;
      }
    }
  }
  reduce_slots(slots, ngroups, ncols, g);
}

void stored_assemble(const double* vS, const double* vA, int64_t P, int64_t D, double scale,
                     int nthreads, double* K) {
  const int nt = omp_threads(nthreads);
  const int64_t nS = D * (D + 1) / 2, nA = D * (D - 1) / 2, n = P * D;
  // (a, b) -> column of vS (a <= b) and of vA (a < b)
  std::vector<int64_t> cs(static_cast<size_t>(D * D)), ca(static_cast<size_t>(D * D), -1);
  for (int64_t a = 0; a < D; ++a)
    for (int64_t b = a; b < D; ++b) {
      cs[a * D + b] = cs[b * D + a] = a * D - a * (a - 1) / 2 + b - a;
      if (b > a) ca[a * D + b] = ca[b * D + a] = a * (D - 1) - a * (a - 1) / 2 + b - a - 1;
    }
  // pass 1: the upper blocks (mu <= nu) row by row (contiguous writes; the diagonal blocks
  // are symmetric and written whole)
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt)
  for (int64_t mu = 0; mu < P; ++mu) {
    const int64_t row0 = mu * P - mu * (mu - 1) / 2 - mu;
    for (int64_t a = 0; a < D; ++a) {
      double* up = K + (mu * D + a) * n;
      for (int64_t nu = mu; nu < P; ++nu) {
        const double* s = vS + (row0 + nu) * nS;
        const double* t = (vA && nu != mu) ? vA + (row0 + nu) * nA : nullptr;
        double* o = up + nu * D;
        for (int64_t b = 0; b < D; ++b) {
          double v = s[cs[a * D + b]];
          if (t && a != b) v += (a < b ? 1.0 : -1.0) * t[ca[a * D + b]];
          o[b] = scale * v;
        }
      }
    }
  }
  // pass 2: the lower blocks as the transpose of the upper ones, in cache-sized tiles
  constexpr int64_t TB = 64;
  const int64_t nt_tiles = (n + TB - 1) / TB;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t ti = 0; ti < nt_tiles; ++ti) {
    for (int64_t tj = 0; tj <= ti; ++tj) {
      const int64_t r1 = std::min(n, (ti + 1) * TB), c1 = std::min(n, (tj + 1) * TB);
      for (int64_t r = ti * TB; r < r1; ++r) {
        const int64_t rs = r / D;  // the sample of row r
        for (int64_t c = tj * TB; c < c1 && c / D < rs; ++c) K[r * n + c] = K[c * n + r];
      }
    }
  }
}

void stored_gather(const double* B, int64_t P, int64_t D, int nthreads, double* Ws, double* Wa) {
  const int nt = omp_threads(nthreads);
  const int64_t nS = D * (D + 1) / 2, nA = D * (D - 1) / 2, n = P * D;
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt)
  for (int64_t mu = 0; mu < P; ++mu) {
    const int64_t row0 = mu * P - mu * (mu - 1) / 2 - mu;
    for (int64_t nu = mu; nu < P; ++nu) {
      const double h = nu == mu ? 0.25 : 0.5;  // (w + w') / 2, halved on the diagonal
      double* s = Ws + (row0 + nu) * nS;
      double* t = Wa + (row0 + nu) * nA;
      for (int64_t a = 0; a < D; ++a) {
        const double* ra = B + (mu * D + a) * n + nu * D;  // w(a, .)
        for (int64_t b = a; b < D; ++b) {
          const double wab = ra[b], wba = B[(mu * D + b) * n + nu * D + a];
          *s++ = h * (wab + wba);
          if (b > a) *t++ = h * (wab - wba);
        }
      }
    }
  }
}

#define LKR_INSTANTIATE_MULTI(T)                                                                   \
  template void patch_mean<T>(const View3<T>&, const KernelParams&, T*);                           \
  template void renormalized_kernel_multi<T>(const View3<T>&, const View3<T>*, const T*, const T*, \
                                             int64_t, double, const KernelParams&, T*);            \
  template void local_kernel_adjoint_multi<T>(const View3<T>&, const View3<T>*, const View2<T>&,   \
                                              bool, int64_t, const KernelParams&, T*, T*);         \
  template void stored_matmul<T>(const T*, int64_t, int64_t, const double*, int64_t, int,          \
                                 double*);                                                         \
  template void stored_matmul_t<T>(const T*, int64_t, int64_t, const double*, int64_t, int,        \
                                   double*);
LKR_INSTANTIATE_MULTI(float)
LKR_INSTANTIATE_MULTI(double)
template void pack_compressed<float, float>(const View3<float>&, bool, bool, const KernelParams&,
                                            float*);
template void pack_compressed<double, float>(const View3<double>&, bool, bool, const KernelParams&,
                                             float*);
template void pack_compressed<double, double>(const View3<double>&, bool, bool, const KernelParams&,
                                              double*);
template void stored_kr_sym<float>(const float*, int64_t, int64_t, const double*, double, int,
                                   double*);
template void stored_kr_sym<double>(const double*, int64_t, int64_t, const double*, double, int,
                                    double*);
template void stored_adjoint_sym<float>(const float*, int64_t, int64_t, const double*, int,
                                        double*);
template void stored_adjoint_sym<double>(const double*, int64_t, int64_t, const double*, int,
                                         double*);

}  // namespace lkr
