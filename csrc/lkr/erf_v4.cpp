#include "erf_v4.hpp"

#include "dispatch.hpp"

#if LKR_DISPATCH
#include <immintrin.h>
#endif

namespace lkr {

#if LKR_DISPATCH
namespace {
namespace dbl {
alignas(64) constexpr double kCenter[16] = {0.0,    5.625e-1, 9.375e-1, 1.3125, 1.6875, 2.0625,
                                            2.4375, 2.8125,   3.1875,   3.5625, 3.9375, 4.3125,
                                            4.6875, 5.0625,   5.4375,   5.8125};
alignas(64) constexpr double kCoef[13][16] = {
    {1.128379167095512574, 5.73674456615591954e-1, 8.151024010343998042e-1, 9.365685747113887137e-1,
     9.829897166019780298e-1, 9.96463750874790211e-1, 9.994334567454198351e-1,
     9.999303492456073562e-1, 9.999934498492239695e-1, 9.999995299121609667e-1,
     9.999999743008093871e-1, 9.999999989312963912e-1, 9.999999999662319915e-1,
     9.999999999991900226e-1, 9.999999999999852619e-1, 9.999999999999997967e-1},
    {-3.761263890318374954e-1, 8.223213592243083164e-1, 4.685445868953981424e-1,
     2.015185157246223729e-1, 6.542348334839122097e-2, 1.60327141086774945e-2,
     2.965753900136712532e-3, 4.141120318701568517e-4, 4.364708704085684228e-5,
     3.472540801953401381e-6, 2.085422846140828436e-7, 9.453564106922026396e-9,
     3.234831750634689855e-10, 8.355308650331946186e-12, 1.629025846357717926e-13,
     2.397442108021868104e-15},
    {1.128379167095457144e-1, -4.625557645636730551e-1, -4.392605502144358986e-1,
     -2.644930518885672108e-1, -1.104021281504100184e-1, -3.306747284914720528e-2,
     -7.229025131583302736e-3, -1.164690089634843208e-3, -1.39125089942721005e-4,
     -1.237092660695467532e-5, -8.211352456682354776e-7, -4.076849521145420142e-8,
     -1.516327383183480993e-9, -4.229875005026839495e-11, -8.857828044875272281e-13,
     -1.393513227609064273e-14},
    {-2.686617064472626363e-2, -1.006487080305172215e-1, 1.183563149188691488e-1,
     1.64258581827861803e-1, 1.023945663863572232e-1, 4.012353713129213871e-2,
     1.07585812054637755e-2, 2.045756574117740764e-3, 2.810917871122339705e-4,
     2.822343708978896042e-5, 2.085965925050449716e-6, 1.140582357659732318e-7,
     4.630695361025750229e-9, 1.399731799230399301e-10, 3.156661891629580412e-12,
     5.319949378390284445e-14},
    {5.22397761061280911e-3, 1.824927039879726873e-1, 9.094066078671320989e-2,
     -1.963034369489334447e-2, -4.959470600510374574e-2, -3.035490671696926607e-2,
     -1.070234580026951693e-2, -2.48861515246606735e-3, -4.016150057334503069e-4,
     -4.614935511538901496e-5, -3.833033666244902789e-6, -2.323485723334864326e-7,
     -1.0347749764671981e-8, -3.402075254941561871e-10, -8.286913396415649759e-12,
     -1.499659766231665411e-13},
    {-8.548323971104936036e-4, -1.086624588385760266e-2, -6.96096422659849376e-2,
     -3.897164416304386095e-2, 2.758056650488887413e-3, 1.300573691563533626e-2,
     7.207212789118622836e-3, 2.185965072211460017e-3, 4.277315967288469914e-4,
     5.729580015766538312e-5, 5.411238237136608249e-6, 3.665838009168705035e-7,
     1.801281910484289019e-8, 6.469279693420492779e-10, 1.707701827291312141e-11,
     3.327102309825115011e-13},
    {1.205496349754285788e-4, -4.662729993179892833e-2, -2.497829696625137512e-3,
     2.228485262491353246e-2, 1.167384808445068323e-2, -8.468023338551424267e-4,
     -3.001901515708034596e-3, -1.385711548886359357e-3, -3.473674859923022159e-4,
     -5.573226778920232299e-5, -6.080107901186160169e-6, -4.650046135829747895e-7,
     -2.538563356765054463e-8, -1.000969320812568615e-9, -2.874227661502358174e-11,
     -6.046361985675449463e-13},
    {-1.489952405955703891e-5, 1.008086443858573648e-2, 1.724278541634159037e-2,
     9.221484754170162401e-4, -6.285143886161650566e-3, -2.597596828070709738e-3,
     3.746073782092835648e-4, 5.930505372199046749e-4, 2.145116216841951583e-4,
     4.308560576354259267e-5, 5.551732274444459053e-6, 4.856717799175260145e-7,
     2.971015191748457588e-8, 1.293830971697927737e-9, 4.0589155225529376e-11,
     9.249909664919499203e-13},
    {1.54602563759311635e-6, 8.57394041325584456e-3, -3.506025817788859244e-3,
     -5.077904643769813518e-3, 1.500048529145406985e-4, 1.520843299702683519e-3,
     4.149886007507613623e-4, -1.200504186339238825e-4, -9.650310968089667446e-5,
     -2.643050129180995292e-5, -4.162103974423057446e-6, -4.239697312032377826e-7,
     -2.937656713845471502e-8, -1.422987374856916752e-9, -4.901530074779244952e-11,
     -1.214498370951616044e-12},
    {0.0, -3.031428869886007385e-3, -2.622320011962287772e-3, 1.301497023202520182e-3,
     1.165919279866788592e-3, -1.919023960690129644e-4, -2.976466214492872959e-4,
     -4.029347746408049041e-5, 2.664832736431977442e-5, 1.254752393383152798e-5,
     2.562292907692434326e-6, 3.117958937989197975e-7, 2.480929700364630418e-8,
     1.347821001702604331e-9, 5.124282559069307121e-11, 1.385085401650048993e-12},
    {0.0, -1.183125042550385791e-3, 1.114845074892705269e-3, 5.610700990355222983e-4,
     -4.201064077276889591e-4, -1.912089950489898179e-4, 7.131238689248462016e-5,
     4.400629453573367994e-5, 1.698105887497281985e-7, -4.240965513471659904e-6,
     -1.277972402008599033e-6, -1.935981302902610024e-7, -1.804417193296546931e-8,
     -1.112463033193941988e-9, -4.70600951424371882e-11, -1.396200861525024563e-12},
    {0.0, 6.060935307347882657e-4, 2.385804094467252804e-4, -3.411341647394137268e-4,
     -6.325029486173729048e-5, 1.016832162987638216e-4, 1.757471995912105942e-5,
     -1.569111722252307371e-5, -4.517078151181584547e-6, 6.679566954341432408e-7,
     4.966403722244531638e-7, 1.024215004417078814e-7, 1.164477071963226372e-8,
     8.366896510657908887e-10, 4.022701516587760627e-11, 1.335008197706489642e-12},
    {0.0, 1.204777873585456749e-4, -2.031437260905031009e-4, -1.005704472557341423e-5,
     8.017867413409195541e-5, -5.962450372413898973e-6, -1.765116893212698527e-5,
     6.917795605401760548e-7, 2.334386024898046449e-6, 2.401674143959696691e-7,
     -1.3023012046635681e-7, -4.345890807845554559e-8, -6.233283707039607328e-9,
     -5.254841895441031889e-10, -2.862481077180680193e-11, -1.053989684001873141e-12},
};
}  // namespace dbl
namespace flt {
alignas(64) constexpr float kCenter[16] = {0.0f,   3.75e-1f, 6.25e-1f, 8.75e-1f, 1.125f, 1.375f,
                                           1.625f, 1.875f,   2.125f,   2.375f,   2.625f, 2.875f,
                                           3.125f, 3.375f,   3.625f,   3.875f};
alignas(64) constexpr float kCoef[7][16] = {
    {1.128379167f, 4.041169094e-1f, 6.232408822e-1f, 7.840750611e-1f, 8.883882317e-1f,
     9.481700728e-1f, 9.784437332e-1f, 9.919900577e-1f, 9.973459706e-1f, 9.992170618e-1f,
     9.997946243e-1f, 9.999521452e-1f, 9.999901033e-1f, 9.999981847e-1f, 9.999997049e-1f,
     9.999999575e-1f},
    {-3.76126389e-1f, 9.803528073e-1f, 7.634995415e-1f, 5.24745053e-1f, 3.182739625e-1f,
     1.703597731e-1f, 8.047225646e-2f, 3.354582637e-2f, 1.234081983e-2f, 4.006477909e-3f,
     1.147875408e-3f, 2.902285032e-4f, 6.475879471e-5f, 1.275178368e-5f, 2.215933548e-6f,
     3.398257732e-7f},
    {1.12837916e-1f, -3.676322989e-1f, -4.771872071e-1f, -4.591519154e-1f, -3.580582058e-1f,
     -2.342446906e-1f, -1.307674212e-1f, -6.28984277e-2f, -2.622424323e-2f, -9.515384673e-3f,
     -3.01317219e-3f, -8.344063694e-4f, -2.023709315e-4f, -4.303714814e-5f, -8.032719456e-6f,
     -1.316814189e-6f},
    {-2.686612023e-2f, -2.348750285e-1f, -5.567479301e-2f, 9.291964692e-2f, 1.624502827e-1f,
     1.579380015e-1f, 1.148419331e-1f, 6.744214341e-2f, 3.303780606e-2f, 1.3730509e-2f,
     4.890281697e-3f, 1.50242318e-3f, 3.99962719e-4f, 9.256100683e-5f, 1.866695813e-5f,
     3.286754534e-6f},
    {5.222418465e-3f, 1.665809954e-1f, 1.764584293e-1f, 1.12396952e-1f, 2.797457931e-2f,
     -3.049970203e-2f, -4.971873808e-2f, -4.226018499e-2f, -2.636112326e-2f, -1.313334077e-2f,
     -5.414301608e-3f, -1.881731283e-3f, -5.575502019e-4f, -1.418762809e-4f, -3.116428062e-5f,
     -5.931252711e-6f},
    {-8.325535211e-4f, 4.532615073e-2f, -2.703499348e-2f, -6.670913626e-2f, -6.106118907e-2f,
     -3.064393917e-2f, -2.303273508e-3f, 1.132801673e-2f, 1.24442162e-2f, 8.360583519e-3f,
     4.236416497e-3f, 1.727707612e-3f, 5.842616263e-4f, 1.66579449e-4f, 4.045942702e-5f,
     8.430362981e-6f},
    {0.0f, -4.980013827e-2f, -4.116240063e-2f, -1.041778842e-2f, 1.537253277e-2f, 2.204489571e-2f,
     1.439882746e-2f, 4.144094378e-3f, -1.783652441e-3f, -3.097804787e-3f, -2.245847093e-3f,
     -1.143764806e-3f, -4.553554491e-4f, -1.479110331e-4f, -4.008041181e-5f, -9.1819073e-6f},
};
}  // namespace flt

// 1/k!, k = 0..13: the Taylor polynomial of exp on |r| <= ln2/2 (error 5e-18 relative)
constexpr double kInvFact[14] = {1.0,
                                 1.0,
                                 0.5,
                                 1.6666666666666666e-1,
                                 4.1666666666666664e-2,
                                 8.3333333333333332e-3,
                                 1.3888888888888889e-3,
                                 1.9841269841269841e-4,
                                 2.4801587301587302e-5,
                                 2.7557319223985893e-6,
                                 2.7557319223985888e-7,
                                 2.5052108385441720e-8,
                                 2.0876756987868100e-9,
                                 1.6059043836821613e-10};

#define LKR_V4 __attribute__((target("arch=x86-64-v4"))) inline

// exp(-(y + ylo)) for y >= 0 (|ylo| <= ulp(y)): n = round(-y log2 e), r = -y - n ln 2 - ylo,
// exp(r) by Taylor, times 2^n (scalef: exact, 0 on underflow).
LKR_V4 __m512d exp_neg(__m512d y, __m512d ylo) {
  // min(c, y) keeps r finite (exp(-1000) = 0) and a NaN y (minpd returns y then)
  y = _mm512_min_pd(_mm512_set1_pd(1000.0), y);
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(y, _mm512_set1_pd(-1.4426950408889634)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r =
      _mm512_fnmadd_pd(n, _mm512_set1_pd(0.693145751953125), _mm512_sub_pd(_mm512_setzero_pd(), y));
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.42860682030941723212e-6), r);
  r = _mm512_sub_pd(r, ylo);
  __m512d p = _mm512_set1_pd(kInvFact[13]);
  for (int k = 12; k >= 0; --k) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(kInvFact[k]));
  return _mm512_scalef_pd(p, n);
}

LKR_V4 __m512 exp_neg(__m512 y, __m512 ylo) {
  y = _mm512_min_ps(_mm512_set1_ps(200.0f), y);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(-1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r =
      _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), _mm512_sub_ps(_mm512_setzero_ps(), y));
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  r = _mm512_sub_ps(r, ylo);
  __m512 p = _mm512_set1_ps(float(kInvFact[7]));
  for (int k = 6; k >= 0; --k) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(float(kInvFact[k])));
  return _mm512_scalef_ps(p, n);
}

// (erf(x), (2/sqrt(pi)) exp(-x^2)) for 8 doubles.
LKR_V4 void erf_and_prime(__m512d x, __m512d& e, __m512d& d) {
  const __m512d ax = _mm512_abs_pd(x);
  // x^2 = y + ylo exactly; |x| capped at 40 (exp(-1600) = 0) so that ylo stays finite for
  // |x| = inf, NaN kept (minpd returns its second operand then)
  const __m512d xc = _mm512_min_pd(_mm512_set1_pd(40.0), ax);
  const __m512d y = _mm512_mul_pd(xc, xc);
  const __m512d ylo = _mm512_fmsub_pd(xc, xc, y);
  d = _mm512_mul_pd(_mm512_set1_pd(1.1283791670955125739), exp_neg(y, ylo));
  __m512i idx = _mm512_cvttpd_epi64(_mm512_mul_pd(ax, _mm512_set1_pd(8.0 / 3.0)));
  idx = _mm512_min_epi64(idx, _mm512_set1_epi64(15));
  const __mmask8 first = _mm512_cmpeq_epi64_mask(idx, _mm512_setzero_si512());
  const __m512d c =
      _mm512_permutex2var_pd(_mm512_load_pd(dbl::kCenter), idx, _mm512_load_pd(dbl::kCenter + 8));
  const __m512d t = _mm512_mask_blend_pd(first, _mm512_sub_pd(ax, c), y);
  __m512d p = _mm512_permutex2var_pd(_mm512_load_pd(dbl::kCoef[12]), idx,
                                     _mm512_load_pd(dbl::kCoef[12] + 8));
  for (int k = 11; k >= 0; --k)
    p = _mm512_fmadd_pd(p, t,
                        _mm512_permutex2var_pd(_mm512_load_pd(dbl::kCoef[k]), idx,
                                               _mm512_load_pd(dbl::kCoef[k] + 8)));
  __m512d r = _mm512_mask_mul_pd(p, first, p, ax);
  r = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(ax, _mm512_set1_pd(6.0), _CMP_GE_OQ), r,
                           _mm512_set1_pd(1.0));
  e = _mm512_or_pd(r, _mm512_and_pd(x, _mm512_set1_pd(-0.0)));
}

LKR_V4 void erf_and_prime(__m512 x, __m512& e, __m512& d) {
  const __m512 ax = _mm512_abs_ps(x);
  const __m512 xc = _mm512_min_ps(_mm512_set1_ps(16.0f), ax);
  const __m512 y = _mm512_mul_ps(xc, xc);
  const __m512 ylo = _mm512_fmsub_ps(xc, xc, y);
  d = _mm512_mul_ps(_mm512_set1_ps(1.12837917f), exp_neg(y, ylo));
  __m512i idx = _mm512_cvttps_epi32(_mm512_mul_ps(ax, _mm512_set1_ps(4.0f)));
  idx = _mm512_min_epi32(idx, _mm512_set1_epi32(15));
  const __mmask16 first = _mm512_cmpeq_epi32_mask(idx, _mm512_setzero_si512());
  const __m512 c = _mm512_permutexvar_ps(idx, _mm512_load_ps(flt::kCenter));
  const __m512 t = _mm512_mask_blend_ps(first, _mm512_sub_ps(ax, c), y);
  __m512 p = _mm512_permutexvar_ps(idx, _mm512_load_ps(flt::kCoef[6]));
  for (int k = 5; k >= 0; --k)
    p = _mm512_fmadd_ps(p, t, _mm512_permutexvar_ps(idx, _mm512_load_ps(flt::kCoef[k])));
  __m512 r = _mm512_mask_mul_ps(p, first, p, ax);
  r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(4.0f), _CMP_GE_OQ), r,
                           _mm512_set1_ps(1.0f));
  e = _mm512_or_ps(r, _mm512_and_ps(x, _mm512_set1_ps(-0.0f)));
}

// Lane helpers, so that one template serves both precisions.
template <class T>
struct V;
template <>
struct V<double> {
  using R = __m512d;
  using M = __mmask8;
  static constexpr int n = 8;
  LKR_V4 static R load(M m, const double* p) { return _mm512_maskz_loadu_pd(m, p); }
  LKR_V4 static void store(M m, double* p, R v) { _mm512_mask_storeu_pd(p, m, v); }
  LKR_V4 static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  LKR_V4 static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  LKR_V4 static R zero() { return _mm512_setzero_pd(); }
  LKR_V4 static double sum(R a) { return _mm512_reduce_add_pd(a); }
};
template <>
struct V<float> {
  using R = __m512;
  using M = __mmask16;
  static constexpr int n = 16;
  LKR_V4 static R load(M m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  LKR_V4 static void store(M m, float* p, R v) { _mm512_mask_storeu_ps(p, m, v); }
  LKR_V4 static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  LKR_V4 static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  LKR_V4 static R zero() { return _mm512_setzero_ps(); }
  LKR_V4 static float sum(R a) { return _mm512_reduce_add_ps(a); }
};

template <class T>
LKR_V4 typename V<T>::M lanes(int64_t left) {
  using M = typename V<T>::M;
  return left >= V<T>::n ? M(~M(0)) : M((M(1) << left) - 1);
}

template <class T>
__attribute__((target("arch=x86-64-v4"))) T segment(T* h, const T* u, int64_t len, T* s) {
  using W = V<T>;
  typename W::R acc = W::zero();
  for (int64_t k = 0; k < len; k += W::n) {
    const auto m = lanes<T>(len - k);
    typename W::R e, d;
    erf_and_prime(W::load(m, h + k), e, d);
    const auto uk = W::load(m, u + k);
    W::store(m, s + k, e);
    W::store(m, h + k, W::mul(d, uk));
    acc = W::fma(uk, e, acc);
  }
  return W::sum(acc);
}

template <class T>
__attribute__((target("arch=x86-64-v4"))) void pair(const T* h, int64_t n, T* s, T* d) {
  using W = V<T>;
  for (int64_t k = 0; k < n; k += W::n) {
    const auto m = lanes<T>(n - k);
    typename W::R e, dd;
    erf_and_prime(W::load(m, h + k), e, dd);
    W::store(m, s + k, e);
    if (d) W::store(m, d + k, dd);
  }
}
#undef LKR_V4

}  // namespace

bool erf_v4_ready() { return active_isa() >= Isa::v4; }
double erf_segment_v4(double* h, const double* u, int64_t len, double* s) {
  return segment<double>(h, u, len, s);
}
float erf_segment_v4(float* h, const float* u, int64_t len, float* s) {
  return segment<float>(h, u, len, s);
}
void erf_pair_v4(const double* h, int64_t n, double* s, double* d) { pair<double>(h, n, s, d); }
void erf_pair_v4(const float* h, int64_t n, float* s, float* d) { pair<float>(h, n, s, d); }

#else  // no AVX-512 build: never called (erf_v4_ready() is false)

bool erf_v4_ready() { return false; }
double erf_segment_v4(double*, const double*, int64_t, double*) { return 0.0; }
float erf_segment_v4(float*, const float*, int64_t, float*) { return 0.0f; }
void erf_pair_v4(const double*, int64_t, double*, double*) {}
void erf_pair_v4(const float*, int64_t, float*, float*) {}

#endif

}  // namespace lkr
