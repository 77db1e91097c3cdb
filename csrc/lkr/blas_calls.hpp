// Matrix products inside lkr's own threads: BLAS GEMM reached through function pointers
// that the Python layer registers once (SciPy's BLAS, exported by scipy.linalg.cython_blas
// for exactly this use), so that the C++ core links no BLAS and uses the one the user's
// SciPy ships. The caller keeps that BLAS at one thread while lkr's threads call it
// (lkr._blas); each call then runs on the calling thread.
//
// Without registered pointers a plain loop nest does the product (correct, slow): it
// serves the tests of the fallback and builds without SciPy.
#pragma once
#include <cstdint>

namespace lkr {

// Fortran-ABI GEMM: C = alpha op(A) op(B) + beta C, column-major, 32-bit integers.
template <class T>
using FortranGemm = void (*)(const char*, const char*, const int*, const int*, const int*, const T*,
                             const T*, const int*, const T*, const int*, const T*, T*, const int*);

// Register (or, with nullptr, forget) the GEMM of each precision.
void set_gemm(FortranGemm<double> dgemm, FortranGemm<float> sgemm);
bool have_gemm();

// Row-major GEMM: C (m x n, leading dimension ldc) = alpha op(A) op(B) + beta C with
// op(A) m x k (A stored k x m when ta), op(B) k x n (B stored n x k when tb).
template <class T>
void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
             const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace lkr
