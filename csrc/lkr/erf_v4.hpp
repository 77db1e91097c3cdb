// erf and its derivative for the AVX-512 CPUs, with intrinsics: the training step's
// elementwise pass (train_step.cpp) and the nets' activation pass (nets.cpp).
//
// For |x| < 6 (float: 4) the range is cut into 16 intervals of width 3/8 (float: 1/4); on
// each, a polynomial of degree 12 (float: 6) gives erf, its coefficients picked per lane by
// one permute from two registers (the 16-entry tables): Horner in t = |x| - c_j on
// intervals 1..15, and erf(x) = x P(x^2) on interval 0 (relative accuracy near 0). Beyond,
// erf = +-1 (erfc(6) = 2e-17, erfc(4) = 1.5e-8: below half an ulp of 1). The coefficients
// are Chebyshev interpolants (first-kind nodes) computed in 40-digit arithmetic (mpmath),
// rewritten in powers of t; in double Horner they stay within 1.3e-16 of erf (absolute;
// relative 1.2e-16 on interval 0), float within 6e-8 (relative 1.1e-7 on interval 0).
// The derivative (2/sqrt(pi)) exp(-x^2) takes x^2 exactly as x2 + x2lo (an FMA) and
// exp(-y) by a Cody-Waite reduction, a Taylor polynomial (degree 13; float 7) and scalef.
// Measured ~6x the AVX2 branch-free pair of fast_math.hpp, which evaluates every branch.
#pragma once
#include <cstdint>

namespace lkr {

// Whether the AVX-512 routines below may run (built in and the CPU has AVX-512).
bool erf_v4_ready();

// s = erf(h); h <- (2/sqrt(pi)) exp(-h^2) u; returns sum_k u_k s_k (the training step's
// segment, sigma = erf).
double erf_segment_v4(double* h, const double* u, int64_t len, double* s);
float erf_segment_v4(float* h, const float* u, int64_t len, float* s);

// s = erf(h) and, when d is not null, d = (2/sqrt(pi)) exp(-h^2).
void erf_pair_v4(const double* h, int64_t n, double* s, double* d);
void erf_pair_v4(const float* h, int64_t n, float* s, float* d);

}  // namespace lkr
