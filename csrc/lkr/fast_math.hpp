// Branch-free erf and exp(-x^2) that the compiler vectorises inside `omp simd` loops.
// libm's erf and exp are scalar calls (~20 ns for the pair), which dominate the patch
// passes of the nets (a handful of multiply-adds per activation otherwise). Accuracy: a few
// ulp in double (checked against scipy in tests/nets/test_nets.py), ~1 ulp in float.
//
// erf(x), x >= 0 (odd extension by copysign):
//   x < 1:      Taylor series  erf(x) = (2/sqrt(pi)) sum_n (-1)^n x^(2n+1) / (n! (2n+1))
//               (alternating, terms below 1e-17 after 18 of them);
//   1 <= x < 6: erf(x) = 1 - exp(-x^2) erfcx(x), erfcx(x) = u g(u), u = 1/x, with g a
//               Chebyshev interpolant on [1/6, 1] (coefficients computed in 50-digit
//               arithmetic with mpmath; 26 terms reach 3e-16 relative);
//   x >= 6:     1 (erfc(6) = 2e-17).
// Both branches are computed and blended, and the coefficient loops are fully unrolled:
// that is what keeps a caller's loop vectorisable.
// exp(-y), 0 <= y: Cody-Waite reduction y log2(e) = n + r, |r| <= 1/2, a Taylor polynomial
// of exp(r ln 2) and the scale 2^n put into the exponent bits (the "shifter" trick, so no
// float-to-int conversion, which AVX2 lacks for doubles, is needed).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) || defined(__clang__)
#define LKR_FM_INLINE inline __attribute__((always_inline))
#else
#define LKR_FM_INLINE inline
#endif

namespace lkr::fastmath {

template <class T>
struct Bits;
template <>
struct Bits<double> {
  using U = uint64_t;
  static constexpr int mantissa = 52;
  static constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double max_y = 708.0;                 // exp(-708) is still normal
  static constexpr int exp_terms = 14;                   // Taylor degree 13 on |r ln2| <= 0.35
  static constexpr int taylor_terms = 18;
  static constexpr int cheb_terms = 26;
};
template <>
struct Bits<float> {
  using U = uint32_t;
  static constexpr int mantissa = 23;
  static constexpr float shifter = 12582912.0f;  // 1.5 * 2^23
  static constexpr float max_y = 87.0f;
  static constexpr int exp_terms = 8;
  static constexpr int taylor_terms = 10;
  static constexpr int cheb_terms = 12;
};

template <class To, class From>
LKR_FM_INLINE To bit_cast(From x) {
  static_assert(sizeof(To) == sizeof(From));
  To y;
  std::memcpy(&y, &x, sizeof(To));
  return y;
}

// cond ? a : b as bit operations. A plain ?: on floats is a branch to GCC when the operands
// may trap (-ftrapping-math, the default): it then sinks the computation of the unused value
// into the branch and gives up vectorising the loop. Masks keep everything unconditional.
template <class T>
LKR_FM_INLINE T select(bool cond, T a, T b) {
  using U = typename Bits<T>::U;
  const U m = U(0) - U(cond);
  return bit_cast<T>(U((bit_cast<U>(a) & m) | (bit_cast<U>(b) & ~m)));
}

// 1/k! for the exp polynomial
inline constexpr double kInvFact[14] = {1.0,
                                        1.0,
                                        0.5,
                                        0.16666666666666666,
                                        0.041666666666666664,
                                        0.008333333333333333,
                                        0.001388888888888889,
                                        0.0001984126984126984,
                                        2.48015873015873e-05,
                                        2.7557319223985893e-06,
                                        2.755731922398589e-07,
                                        2.505210838544172e-08,
                                        2.08767569878681e-09,
                                        1.6059043836821613e-10};

// (2/sqrt(pi)) (-1)^n / (n! (2n + 1))
inline constexpr double kErfTaylor[18] = {
    1.1283791670955126,      -0.37612638903183754,    0.11283791670955126,
    -0.026866170645131252,   0.005223977625442188,    -0.0008548327023450852,
    0.00012055332981789664,  -1.4925650358406251e-05, 1.6462114365889246e-06,
    -1.6365844691234924e-07, 1.4807192815879218e-08,  -1.2290555301717926e-09,
    9.422759064650411e-11,   -6.7113668551641105e-12, 4.463224263286477e-13,
    -2.7835162072109215e-14, 1.6342614095367152e-15,  -9.063970842808672e-17};

// Chebyshev coefficients of g(u) = x erfcx(x), u = 1/x on [1/6, 1]
inline constexpr double kErfcxCheb[26] = {
    0.49471361578208073,     -0.06627963187965226,    -0.0022764645742360114,
    0.001717245128146866,    -0.00032014496358247316, 2.6743225983670515e-05,
    3.968695744344053e-06,   -2.2059099609177132e-06, 5.18822760986672e-07,
    -6.999918836906682e-08,  -9.071270087834272e-10,  3.81951552192842e-09,
    -1.3416438565181666e-09, 2.9478922180326543e-10,  -3.7867607999754376e-11,
    -2.1671472561499943e-12, 3.1122292821689e-12,     -1.1363842125611559e-12,
    2.7739855298110054e-13,  -4.459066811133214e-14,  1.0733136925837078e-15,
    2.4789567338013236e-15,  -1.1596965513120979e-15, 3.4582128885123845e-16,
    -7.531220886739288e-17,  1.0784690260262358e-17};

// exp(-y) for y >= 0 (0 beyond the normal range).
template <class T>
LKR_FM_INLINE T exp_neg(T y) {
  using B = Bits<T>;
  using U = typename B::U;
  // No clamping of the input (a select there lets the compiler branch around the whole
  // body, which stops vectorisation); lanes out of range are replaced at the end.
  const T yc = y;
  const T t = -yc * T(1.4426950408889634074) + B::shifter;  // n + shifter, rounded
  const T n = t - B::shifter;
  // r = -y - n ln2, in two parts so that n ln2 is exact to working precision
  const T r = (-yc - n * T(0.693145751953125)) - n * T(1.42860682030941723212e-6);
  T p = T(kInvFact[B::exp_terms - 1]);
#pragma GCC unroll 32
  for (int k = B::exp_terms - 2; k >= 0; --k) p = p * r + T(kInvFact[k]);
  // 2^n: the low bits of t hold n (two's complement); shift them into the exponent field
  const U scale = bit_cast<U>(t) << B::mantissa;
  const T out = bit_cast<T>(U(bit_cast<U>(p) + scale));
  return select(y > T(B::max_y), T(0), out);
}

template <class T>
LKR_FM_INLINE T erf(T x) {
  using B = Bits<T>;
  const T ax = std::fabs(x);
  // small |x|: Taylor in x^2
  const T z = ax * ax;
  T ps = T(kErfTaylor[B::taylor_terms - 1]);
#pragma GCC unroll 32
  for (int k = B::taylor_terms - 2; k >= 0; --k) ps = ps * z + T(kErfTaylor[k]);
  const T small = ax * ps;
  // 1 <= |x| < 6: 1 - exp(-x^2) u g(u), g by Clenshaw on t in [-1, 1]
  // (evaluated for every lane, meaningless outside [1, 6) and discarded there)
  const T xb = ax;
  const T u = T(1) / xb;
  const T t = (T(12) * u - T(7)) * T(0.2);
  T b1 = T(0), b2 = T(0);
#pragma GCC unroll 32
  for (int k = B::cheb_terms - 1; k >= 1; --k) {
    const T b0 = T(2) * t * b1 - b2 + T(kErfcxCheb[k]);
    b2 = b1;
    b1 = b0;
  }
  const T g = t * b1 - b2 + T(kErfcxCheb[0]);
  const T large = T(1) - exp_neg(xb * xb) * u * g;
  const T r = select(ax < T(1), small, select(ax >= T(6), T(1), large));
  return std::copysign(r, x);
}

}  // namespace lkr::fastmath
