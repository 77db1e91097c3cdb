// sigma(h) and sigma'(h) of the nets' activations, inlined into the compiled passes
// (nets.cpp, readout.cpp). Fast: the vectorisable erf/exp of fast_math.hpp (the AVX2/FMA
// variants), else libm (the baseline variants, where the fast double erf cannot vectorise).
#pragma once
#include <cmath>

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

}  // namespace lkr
