#include "blas_calls.hpp"

#include <atomic>
#include <climits>

namespace lkr {
namespace {

std::atomic<FortranGemm<double>> g_dgemm{nullptr};
std::atomic<FortranGemm<float>> g_sgemm{nullptr};

template <class T>
FortranGemm<T> gemm_ptr();
template <>
FortranGemm<double> gemm_ptr<double>() {
  return g_dgemm.load(std::memory_order_acquire);
}
template <>
FortranGemm<float> gemm_ptr<float>() {
  return g_sgemm.load(std::memory_order_acquire);
}

bool fits_int(int64_t x) { return x >= 0 && x <= INT_MAX; }

// The fallback: i-k-j loops (contiguous inner loop over C's row when B is not transposed).
template <class T>
void gemm_loops(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
                const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    T* c = C + i * ldc;
    for (int64_t j = 0; j < n; ++j) c[j] = beta == T(0) ? T(0) : beta * c[j];
    for (int64_t l = 0; l < k; ++l) {
      const T a = alpha * (ta ? A[l * lda + i] : A[i * lda + l]);
      if (tb) {
        for (int64_t j = 0; j < n; ++j) c[j] += a * B[j * ldb + l];
      } else {
        const T* b = B + l * ldb;
        for (int64_t j = 0; j < n; ++j) c[j] += a * b[j];
      }
    }
  }
}

}  // namespace

void set_gemm(FortranGemm<double> dgemm, FortranGemm<float> sgemm) {
  g_dgemm.store(dgemm, std::memory_order_release);
  g_sgemm.store(sgemm, std::memory_order_release);
}

bool have_gemm() { return gemm_ptr<double>() != nullptr && gemm_ptr<float>() != nullptr; }

template <class T>
void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
             const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  const FortranGemm<T> f = gemm_ptr<T>();
  if (!f || !fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(lda) || !fits_int(ldb) ||
      !fits_int(ldc)) {
    gemm_loops(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the stored B comes
  // first, transposed when tb
  const char opb = tb ? 'T' : 'N', opa = ta ? 'T' : 'N';
  const int M = int(n), N = int(m), K = int(k), la = int(lda), lb = int(ldb), lc = int(ldc);
  f(&opb, &opa, &M, &N, &K, &alpha, B, &lb, A, &la, &beta, C, &lc);
}

template void gemm_rm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                             const float*, int64_t, float, float*, int64_t);
template void gemm_rm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                              const double*, int64_t, double, double*, int64_t);

}  // namespace lkr
