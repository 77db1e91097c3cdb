// sigma(h) and sigma'(h) of the nets' activations, inlined into the compiled passes
// (nets.cpp, readout.cpp, train_step.cpp). Fast: the vectorisable erf/exp of fast_math.hpp (the AVX2/FMA
// variants), else libm (the baseline variants, where the fast double erf cannot vectorise).
#pragma once
#include <cmath>
#include <cstdint>

#include "activations.hpp"
#include "dispatch.hpp"
#include "fast_math.hpp"

namespace lkr {

template <Activation A, bool Fast, class T>
LKR_INLINE T sig(T h) {
  if constexpr (A == Activation::linear) return h;
  else if constexpr (A == Activation::erf) {
    if constexpr (Fast) return fastmath::erf(h);
    else return std::erf(h);
  } else return h > T(0) ? h : T(0);
}

template <Activation A, bool Fast, class T>
LKR_INLINE T dsig(T h) {
  constexpr T two_over_sqrt_pi = T(1.1283791670955125738961589031215452);
  if constexpr (A == Activation::linear) return T(1);
  else if constexpr (A == Activation::erf) {
    if constexpr (Fast) return two_over_sqrt_pi * fastmath::exp_neg(h * h);
    else return two_over_sqrt_pi * std::exp(-h * h);
  } else return h > T(0) ? T(1) : T(0);
}

// One row of the readout's backward pass: s = sigma(h), h <- sigma'(h) u; returns
// sum_k u_k s_k (readout.cpp per sample, train_step.cpp per segment of a sample).
template <Activation A, bool Fast, class T>
LKR_INLINE T sigma_row_body(T* h, const T* u, int64_t len, T* s) {
  T acc = T(0);
#pragma omp simd reduction(+ : acc)
  for (int64_t k = 0; k < len; ++k) {
    const T x = h[k];
    const T sx = sig<A, Fast>(x);
    s[k] = sx;
    h[k] = dsig<A, Fast>(x) * u[k];
    acc += u[k] * sx;
  }
  return acc;
}

template <Activation A, class T>
LKR_TARGET_FAST T sigma_row_fast(T* h, const T* u, int64_t len, T* s) {
  return sigma_row_body<A, true, T>(h, u, len, s);
}
template <Activation A, class T>
T sigma_row_base(T* h, const T* u, int64_t len, T* s) {
  return sigma_row_body<A, false, T>(h, u, len, s);
}

}  // namespace lkr
