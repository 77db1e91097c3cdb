#include "cholupdate.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "dispatch.hpp"

namespace lkr {
namespace {

// Rotations of column j for m vectors (rows of X, stride R) with signs sg, on the row
// s = S[j] (entries j..R-1). Returns false when a downdate would make L_jj^2 <= 0.
LKR_HOT bool column_rotations(double* s, int64_t j, int64_t R, double* X, int64_t m,
                              const double* sg) {
  double d = s[j];
  for (int64_t r = 0; r < m; ++r) {
    double* x = X + r * R;
    const double xj = x[j];
    if (xj == 0.0) continue;
    const double sgn = sg[r];
    const double rho2 = d * d + sgn * xj * xj;
    if (!(rho2 > 0.0) || !std::isfinite(rho2)) return false;
    const double rho = std::sqrt(rho2);
    const double c = rho / d, sn = xj / d, inv_c = d / rho, ss = sgn * sn;
    for (int64_t i = j + 1; i < R; ++i) {
      const double l = (s[i] + ss * x[i]) * inv_c;
      x[i] = c * x[i] - sn * l;
      s[i] = l;
    }
    d = rho;
  }
  s[j] = d;
  return true;
}

// A <- A + sum_r sg_r x_r x_r^T on one chain's augmented factor (P x R); X (m x R) is
// overwritten.
bool update_factor(double* S, int64_t P, int64_t R, double* X, int64_t m, const double* sg) {
  for (int64_t j = 0; j < P; ++j)
    if (!column_rotations(S + j * R, j, R, X, m, sg)) return false;
  return true;
}

// Wm (m x P) <- Wm L^{-T} (each row solved by forward substitution) and cv (m x D) = Wm b.
LKR_HOT void forward_solve(const double* S, int64_t P, int64_t R, double* Wm, int64_t m,
                           double* cv) {
  const int64_t D = R - P;
  std::fill(cv, cv + m * D, 0.0);
  for (int64_t j = 0; j < P; ++j) {
    const double* s = S + j * R;
    const double inv = 1.0 / s[j];
    for (int64_t r = 0; r < m; ++r) {
      double* w = Wm + r * P;
      const double wj = w[j] * inv;
      w[j] = wj;
      for (int64_t d = 0; d < D; ++d) cv[r * D + d] += wj * s[P + d];
      for (int64_t i = j + 1; i < P; ++i) w[i] -= s[i] * wj;
    }
  }
}

LKR_HOT double dot(const double* a, const double* b, int64_t n) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// In place lower Cholesky of the k x k row-major A (upper part ignored); false if not PD.
bool small_cholesky(double* A, int64_t k) {
  for (int64_t j = 0; j < k; ++j) {
    double d = A[j * k + j];
    for (int64_t q = 0; q < j; ++q) d -= A[j * k + q] * A[j * k + q];
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    d = std::sqrt(d);
    A[j * k + j] = d;
    for (int64_t i = j + 1; i < k; ++i) {
      double v = A[i * k + j];
      for (int64_t q = 0; q < j; ++q) v -= A[i * k + q] * A[j * k + q];
      A[i * k + j] = v / d;
    }
  }
  return true;
}

// B (k x m, row-major) <- L^{-1} B for the lower Cholesky factor L (k x k).
void small_lsolve(const double* L, int64_t k, double* B, int64_t m) {
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t q = 0; q < i; ++q) {
      const double l = L[i * k + q];
      for (int64_t c = 0; c < m; ++c) B[i * m + c] -= l * B[q * m + c];
    }
    const double inv = 1.0 / L[i * k + i];
    for (int64_t c = 0; c < m; ++c) B[i * m + c] *= inv;
  }
}

struct Work {
  std::vector<double> Wm, X, cv, E, Bt, Sch, z, r, sg;
  Work(int64_t k, int64_t P, int64_t R)
      : Wm(2 * k * P),
        X(2 * k * R),
        cv(2 * k * (R - P)),
        E(k * k),
        Bt(k * k),
        Sch(k * k),
        z(k * (R - P)),
        r(k * (R - P)),
        sg(2 * k) {}
};

// delta for one block (NaN on breakdown); Wm rows hold [old; new] features on entry.
double block_delta(const double* S, int64_t P, int64_t R, int64_t k, Work& w) {
  const int64_t D = R - P;
  double* Wm = w.Wm.data();
  forward_solve(S, P, R, Wm, 2 * k, w.cv.data());
  const double* Wo = Wm;
  const double* Wn = Wm + k * P;
  for (int64_t a = 0; a < k; ++a) {
    for (int64_t q = 0; q <= a; ++q) {
      w.E[a * k + q] = (a == q ? 1.0 : 0.0) - dot(Wo + a * P, Wo + q * P, P);
      w.Sch[a * k + q] = (a == q ? 1.0 : 0.0) + dot(Wn + a * P, Wn + q * P, P);
    }
    // Bt = Bm^T: Bt[a][q] = <Wo_a, Wn_q>
    for (int64_t q = 0; q < k; ++q) w.Bt[a * k + q] = dot(Wo + a * P, Wn + q * P, P);
  }
  if (!small_cholesky(w.E.data(), k)) return std::numeric_limits<double>::quiet_NaN();
  // z = LE^{-1} c_o (k x D), Yk = LE^{-1} Bm^T (k x k)
  std::memcpy(w.z.data(), w.cv.data(), sizeof(double) * k * D);
  small_lsolve(w.E.data(), k, w.z.data(), D);
  small_lsolve(w.E.data(), k, w.Bt.data(), k);
  double quad1 = 0.0, logdet = 0.0;
  for (int64_t i = 0; i < k * D; ++i) quad1 += w.z[i] * w.z[i];
  for (int64_t a = 0; a < k; ++a) logdet += 2.0 * std::log(w.E[a * k + a]);
  // Sch = F + Yk^T Yk (lower part), r = c_n + Yk^T z
  const double* Yk = w.Bt.data();
  for (int64_t a = 0; a < k; ++a) {
    for (int64_t q = 0; q <= a; ++q) {
      double v = 0.0;
      for (int64_t i = 0; i < k; ++i) v += Yk[i * k + a] * Yk[i * k + q];
      w.Sch[a * k + q] += v;
    }
    for (int64_t d = 0; d < D; ++d) {
      double v = w.cv[(k + a) * D + d];
      for (int64_t i = 0; i < k; ++i) v += Yk[i * k + a] * w.z[i * D + d];
      w.r[a * D + d] = v;
    }
  }
  if (!small_cholesky(w.Sch.data(), k)) return std::numeric_limits<double>::quiet_NaN();
  small_lsolve(w.Sch.data(), k, w.r.data(), D);
  double quad2 = 0.0;
  for (int64_t i = 0; i < k * D; ++i) quad2 += w.r[i] * w.r[i];
  for (int64_t a = 0; a < k; ++a) logdet += 2.0 * std::log(w.Sch[a * k + a]);
  const double delta = 0.5 * (quad2 - quad1) - 0.5 * static_cast<double>(D) * logdet;
  return std::isfinite(delta) ? delta : std::numeric_limits<double>::quiet_NaN();
}

void sweep_chain(double* S, double* G, const double* Gp, const double* logu, int64_t P, int64_t D,
                 int64_t n, int64_t k, uint8_t* accepted, double* delta, int32_t* status) {
  const int64_t R = P + D, nb = n / k;
  Work w(k, P, R);
  for (int64_t r = 0; r < k; ++r) {
    w.sg[r] = 1.0;       // the new rows first: A + Gp_a^T Gp_a stays well conditioned
    w.sg[k + r] = -1.0;  // then the old ones out
  }
  *status = 0;
  for (int64_t a = 0; a < nb; ++a) {
    accepted[a] = 0;
    delta[a] = std::numeric_limits<double>::quiet_NaN();
  }
  for (int64_t a = 0; a < nb; ++a) {
    double* Go = G + a * k * P;
    const double* Gn = Gp + a * k * P;
    std::memcpy(w.Wm.data(), Go, sizeof(double) * k * P);
    std::memcpy(w.Wm.data() + k * P, Gn, sizeof(double) * k * P);
    const double dl = block_delta(S, P, R, k, w);
    if (std::isnan(dl)) {
      *status = 1;
      return;
    }
    delta[a] = dl;
    if (!(logu[a] < dl)) continue;
    std::fill(w.X.begin(), w.X.end(), 0.0);
    for (int64_t r = 0; r < k; ++r) {
      std::memcpy(w.X.data() + r * R, Gn + r * P, sizeof(double) * P);
      std::memcpy(w.X.data() + (k + r) * R, Go + r * P, sizeof(double) * P);
    }
    if (!update_factor(S, P, R, w.X.data(), 2 * k, w.sg.data())) {
      *status = 1;
      return;
    }
    std::memcpy(Go, Gn, sizeof(double) * k * P);
    accepted[a] = 1;
  }
}

}  // namespace

void chol_update(double* S, int64_t C, int64_t P, int64_t D, const double* X, int64_t k, int sign,
                 int nthreads, uint8_t* ok) {
  const int64_t R = P + D;
#pragma omp parallel for schedule(dynamic, 1) num_threads(omp_threads_for(nthreads, C * k * P * P))
  for (int64_t c = 0; c < C; ++c) {
    std::vector<double> Xw(k * R, 0.0), sg(k, sign > 0 ? 1.0 : -1.0);
    for (int64_t r = 0; r < k; ++r)
      std::memcpy(Xw.data() + r * R, X + (c * k + r) * P, sizeof(double) * P);
    ok[c] = update_factor(S + c * P * R, P, R, Xw.data(), k, sg.data()) ? 1 : 0;
  }
}

void collapsed_sweep(double* S, double* G, const double* Gp, const double* logu, int64_t C,
                     int64_t P, int64_t D, int64_t n, int64_t block, int nthreads,
                     uint8_t* accepted, double* delta, int32_t* status) {
  const int64_t R = P + D, nb = n / block;
#pragma omp parallel for schedule(dynamic, 1) num_threads(omp_threads_for(nthreads, C * n * P * P))
  for (int64_t c = 0; c < C; ++c)
    sweep_chain(S + c * P * R, G + c * n * P, Gp + c * n * P, logu + c * nb, P, D, n, block,
                accepted + c * nb, delta + c * nb, status + c);
}

}  // namespace lkr
