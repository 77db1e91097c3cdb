// NNGP maps K_sigma(c_xx, c_xy, c_yy) of DESIGN.md section 2, in the factorised form the
// kernels use: K = s_x s_y F(u), with u = z_x . z_y for prepared (scaled) patches z.
//   linear: z = x / sqrt(lambda0 M),                    s = 1,   F(u) = u
//   erf:    z = x sqrt(2 / (lambda0 M)) / sqrt(1 + 2c), s = 1,   F(u) = (2/pi) asin(u)
//   relu:   z = x / |x|,  s = sqrt(c),                          F(u) = (u (pi/2 + asin u) + sqrt(1 - u^2)) / (2 pi)
// with c = |x|^2 / (lambda0 M) and u clipped to [-1, 1] where the map needs it.
#pragma once
#include <cmath>
#include <stdexcept>
#include <string>

namespace lkr {

enum class Activation { linear = 0, erf = 1, relu = 2 };

inline Activation activation_from_name(const std::string& name) {
  if (name == "linear") return Activation::linear;
  if (name == "erf") return Activation::erf;
  if (name == "relu") return Activation::relu;
  throw std::invalid_argument("unknown activation '" + name + "'; expected 'linear', 'erf' or 'relu'");
}

// Branch-free arcsine, written so that the compiler vectorises it (libm's asin is scalar
// and costs ~20 ns, which would dominate the local kernel). For |x| <= 1/2 the Taylor
// series in x^2 converges to double precision in 24 terms; above, the half-angle identity
// asin(x) = pi/2 - 2 asin(sqrt((1 - x) / 2)) maps the argument back below 1/2.
template <class T> struct AsinSeries;
template <> struct AsinSeries<double> { static constexpr int terms = 24; };
template <> struct AsinSeries<float> { static constexpr int terms = 10; };

template <class T>
struct AsinCoefficients {
  T c[AsinSeries<T>::terms + 1];
  constexpr AsinCoefficients() : c() {
    // a_n = (2n)! / (4^n (n!)^2 (2n + 1)); a_n / a_{n-1} = (2n-1)^2 / (2n (2n+1)).
    double a = 1.0, prev = 1.0;  // prev = (2n)!/(4^n (n!)^2) without the 1/(2n+1)
    c[0] = T(1);
    for (int n = 1; n <= AsinSeries<T>::terms; ++n) {
      prev *= double(2 * n - 1) / double(2 * n);
      a = prev / double(2 * n + 1);
      c[n] = T(a);
    }
  }
};

template <class T>
inline T fast_asin(T x) {
  static constexpr AsinCoefficients<T> k{};
  const T ax = std::fabs(x);
  const bool big = ax > T(0.5);
  const T t = big ? std::sqrt((T(1) - ax) * T(0.5)) : ax;
  const T z = t * t;
  T p = k.c[AsinSeries<T>::terms];
  for (int n = AsinSeries<T>::terms - 1; n >= 0; --n) p = p * z + k.c[n];
  p *= t;
  const T r = big ? T(1.5707963267948966192313216916397514) - T(2) * p : p;
  return std::copysign(r, x);
}

template <class T>
inline T clip_unit(T u) {
  return u > T(1) ? T(1) : (u < T(-1) ? T(-1) : u);
}

// F(u) of the factorised map (see the header comment).
template <class T>
inline T map_F(Activation act, T u) {
  constexpr T two_over_pi = T(0.63661977236758134307553505349005745);
  constexpr T half_pi = T(1.5707963267948966192313216916397514);
  constexpr T inv_two_pi = T(0.15915494309189533576888376337251436);
  switch (act) {
    case Activation::linear:
      return u;
    case Activation::erf:
      return two_over_pi * fast_asin(clip_unit(u));
    case Activation::relu: {
      const T v = clip_unit(u);
      return (v * (half_pi + fast_asin(v)) + std::sqrt(T(1) - v * v)) * inv_two_pi;
    }
  }
  return u;
}

// The full map from covariances, for the FC kernel and for references.
template <class T>
inline T nngp_map(Activation act, T cxx, T cxy, T cyy) {
  switch (act) {
    case Activation::linear:
      return cxy;
    case Activation::erf:
      return map_F(act, T(2) * cxy / std::sqrt((T(1) + T(2) * cxx) * (T(1) + T(2) * cyy)));
    case Activation::relu: {
      const T n2 = cxx * cyy;
      if (!(n2 > T(0))) return T(0);
      const T n = std::sqrt(n2);
      return n * map_F(act, cxy / n);
    }
  }
  return cxy;
}

}  // namespace lkr
