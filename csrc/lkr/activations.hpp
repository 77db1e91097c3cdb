// NNGP maps K_sigma(c_xx, c_xy, c_yy) of docs/theory.md section 2, in the factorised form the
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
  throw std::invalid_argument("unknown activation '" + name +
                              "'; expected 'linear', 'erf' or 'relu'");
}

// Branch-free arcsine, written so that the compiler vectorises it (libm's asin is scalar
// and costs ~20 ns, which would dominate the local kernel). On |x| <= 1/2,
// asin(x) = x + x z p(z) with z = x^2 and p a near-minimax (Chebyshev) fit of
// (asin(sqrt z)/sqrt z - 1)/z on [0, 1/4]: 12 coefficients give |error in p| < 2.4e-16
// (double), 6 give < 4.2e-9 (float), i.e. below half an ulp of the result after the
// factor z <= 1/4. Above 1/2 the half-angle identity
// asin(x) = pi/2 - 2 asin(sqrt((1 - x) / 2)) maps the argument back below 1/2; 1 - x is
// exact there (Sterbenz), so the reduction adds no error beyond the final rounding.
// (A Taylor series needs 24 terms for the same double accuracy: the fit halves the cost.)
template <class T>
struct AsinPoly;
template <>
struct AsinPoly<double> {
  static constexpr int n = 12;
  static constexpr double c[n] = {
      0.166666666666666486278,  0.0750000000002076436089,  0.0446428571034236433629,
      0.0303819473670984811257, 0.0223720476317445103787,  0.0173552599557863217484,
      0.0139296529023266332477, 0.0118754943826369231995,  0.00780294947735331714357,
      0.0160355143491488230789, -0.0107490503396978075615, 0.0281692180608814128989};
};
template <>
struct AsinPoly<float> {
  static constexpr int n = 6;
  static constexpr float c[n] = {0.166666663374309070536f,  0.0750009454349742347622f,
                                 0.0445994015285121837185f, 0.0311006627354945679275f,
                                 0.0171492383576772531896f, 0.033690847202830119524f};
};

template <class T>
inline T fast_asin(T x) {
  using K = AsinPoly<T>;
  const T ax = std::fabs(x);
  // |x| > 1 (rounding past the range) gives w < 0: clamped, so asin(x) = +-pi/2 there with
  // no separate clip of x; NaN still propagates (w < 0 is false for NaN).
  const T w = (T(1) - ax) * T(0.5);
  const T s = std::sqrt(w < T(0) ? T(0) : w);
  // Below 1/2, s > 1/2 >= ax; above, s < 1/2 < ax: so the reduced argument is a min. Written
  // as a min rather than a select on ax > 1/2 because GCC otherwise evaluates the
  // polynomial once per branch and blends (twice the work).
  const bool small = ax < s;
  const T t = small ? ax : s;
  const T z = t * t;
  T p = K::c[K::n - 1];
  for (int n = K::n - 2; n >= 0; --n) p = p * z + K::c[n];
  const T a = t + t * z * p;
  const T r = small ? a : T(1.5707963267948966192313216916397514) - T(2) * a;
  return std::copysign(r, x);
}

template <class T>
inline T clip_unit(T u) {
  return u > T(1) ? T(1) : (u < T(-1) ? T(-1) : u);
}

// F(u) = F_scale * F_core(u) with the activation fixed at compile time (the hot loops'
// form: no switch per element, so the loops vectorise; the kernels fold the constant
// F_scale into their weights, saving a multiply per entry).
template <Activation ACT>
constexpr double F_scale =
    ACT == Activation::erf    ? 0.63661977236758134307553505349005745  // 2/pi
    : ACT == Activation::relu ? 0.15915494309189533576888376337251436  // 1/(2 pi)
                              : 1.0;

template <Activation ACT, class T>
inline T map_F_core(T u) {
  if constexpr (ACT == Activation::linear) {
    return u;
  } else if constexpr (ACT == Activation::erf) {
    return fast_asin(u);  // saturates at +-pi/2 for |u| > 1 by itself
  } else {
    // sqrt((1 - v)(1 + v)), not sqrt(1 - v^2): near |v| = 1, where the two terms' square-root
    // singularities cancel, 1 - v is exact and the product keeps full relative accuracy.
    const T v = clip_unit(u);
    return v * (T(1.5707963267948966192313216916397514) + fast_asin(v)) +
           std::sqrt((T(1) - v) * (T(1) + v));
  }
}

template <Activation ACT, class T>
inline T map_F_t(T u) {
  if constexpr (ACT == Activation::linear) return u;
  else return T(F_scale<ACT>) * map_F_core<ACT>(u);
}

// F(u) of the factorised map (see the header comment), activation chosen at run time.
template <class T>
inline T map_F(Activation act, T u) {
  switch (act) {
    case Activation::linear: return map_F_t<Activation::linear>(u);
    case Activation::erf: return map_F_t<Activation::erf>(u);
    case Activation::relu: return map_F_t<Activation::relu>(u);
  }
  return u;
}

// Scale and amplitude of one prepared row (see the header comment), from the squared norm
// sq = |x 2^-e|^2 of the row scaled by a power of two (e: the exponent of its largest entry,
// so 1/4 <= sq <= M whatever the input's magnitude) and norm = 1 / (lambda0 M). Then
// z = (x 2^-e) scale, s = amp, and c = sq norm 2^(2e) is never formed: for erf,
// sqrt(2 norm / (1 + 2c)) 2^e = sqrt(2 norm / (2^(-2e) + 2 norm sq)), which tends to the
// unit-vector limit sqrt(1 / sq) as c grows instead of overflowing to 0. Every step scales
// exactly by powers of two, so for inputs whose |x|^2 is a normal double the result is bit
// for bit that of the unscaled formulas. (Linear and relu results grow like c: whether they
// are representable is checked before the call, in Python.)
struct PreparedFactors {
  double scale, amp;
};
inline PreparedFactors prepared_factors(Activation act, double sq, int e, double norm) {
  switch (act) {
    case Activation::linear: return {std::ldexp(std::sqrt(norm), e), 1.0};
    case Activation::erf:
      return {std::sqrt(2.0 * norm / (std::ldexp(1.0, -2 * e) + 2.0 * norm * sq)), 1.0};
    default: return {sq > 0 ? 1.0 / std::sqrt(sq) : 0.0, std::ldexp(std::sqrt(sq * norm), e)};
  }
}

// Factors of the map from covariances, K_sigma(c_x, c_xy, c_y) = s_x s_y F(c_xy r_x r_y),
// per side from its own variance c: erf r = sqrt(2 / (1 + 2c)), s = 1; relu r = 1 / sqrt(c)
// (0 at c = 0), s = sqrt(c); linear r = s = 1. A zero variance gives K = 0 with no division
// by zero (erf and linear through c_xy = 0, relu through s = 0).
struct MapFactors {
  double r, s;
};
inline MapFactors map_factors(Activation act, double c) {
  switch (act) {
    case Activation::erf: return {std::sqrt(2.0 / (1.0 + 2.0 * c)), 1.0};
    case Activation::relu: return {c > 0 ? 1.0 / std::sqrt(c) : 0.0, c > 0 ? std::sqrt(c) : 0.0};
    default: return {1.0, 1.0};
  }
}

// The full map from covariances, for the FC kernel and for references.
template <class T>
inline T nngp_map(Activation act, T cxx, T cxy, T cyy) {
  switch (act) {
    case Activation::linear: return cxy;
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
