// Device-side building blocks shared by lkr's CUDA kernels.
//
// These sources are compiled at run time by NVRTC (through cupy.RawModule), by nvcc as a
// CI check, and by the host test emulator (tests/cuda_emulator.py). NVRTC has no host headers,
// so nothing here includes <cmath> or <cstdint>: the math functions are CUDA built-ins,
// integer types are the fundamental ones (long long for anything that can pass 2^31).
//
// The NNGP maps use the factorised form of csrc/lkr/activations.hpp:
//   K = s_x s_y F(u), u = z_x . z_y for prepared (scaled) patch rows z;
//   linear: z = x / sqrt(lambda0 M),                    s = 1,       F(u) = u
//   erf:    z = x sqrt(2 / (lambda0 M)) / sqrt(1 + 2c), s = 1,       F(u) = (2/pi) asin(u)
//   relu:   z = x / |x|,                                s = sqrt(c),
//           F(u) = (u (pi/2 + asin u) + sqrt((1 - u)(1 + u))) / (2 pi)
// with c = |x|^2 / (lambda0 M) and u clipped to [-1, 1] where the map needs it.
#pragma once

#define LKR_ACT_LINEAR 0
#define LKR_ACT_ERF 1
#define LKR_ACT_RELU 2

namespace lkr_cuda {

// Overloads by precision: the device's own asin/sqrt (accurate to a few ulp, which is what
// the 1e-12 float64 agreement with the C++ series needs).
__device__ __forceinline__ float dev_asin(float x) { return asinf(x); }
__device__ __forceinline__ double dev_asin(double x) { return asin(x); }
__device__ __forceinline__ float dev_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double dev_sqrt(double x) { return sqrt(x); }

// Comparisons rather than fmin/fmax: a NaN must propagate (fmin(NaN, 1) is 1).
template <class T>
__device__ __forceinline__ T clip_unit(T u) {
  return u > T(1) ? T(1) : (u < T(-1) ? T(-1) : u);
}

template <int ACT, class T>
__device__ __forceinline__ T map_F(T u) {
  if (ACT == LKR_ACT_ERF) {
    return T(0.63661977236758134307553505349005745) * dev_asin(clip_unit(u));
  } else if (ACT == LKR_ACT_RELU) {
    // sqrt((1 - v)(1 + v)), not sqrt(1 - v^2): near |v| = 1, where the two terms' square
    // root singularities cancel, 1 - v is exact and the product keeps full relative accuracy
    // (as the C++ path).
    const T v = clip_unit(u);
    return (v * (T(1.5707963267948966192313216916397514) + dev_asin(v)) +
            dev_sqrt((T(1) - v) * (T(1) + v))) *
           T(0.15915494309189533576888376337251436);
  } else {
    return u;
  }
}

// The flat index of a block in a 2-D grid (grids are 2-D where one dimension would exceed
// 2^31 - 1 blocks), and the grid's size.
__device__ __forceinline__ long long block_id() {
  return (long long)blockIdx.y * (long long)gridDim.x + (long long)blockIdx.x;
}
__device__ __forceinline__ long long block_count() {
  return (long long)gridDim.x * (long long)gridDim.y;
}

// The pair (ga, gb) of a flat index: of the full n_a x n_b rectangle, or of its upper
// triangle ga <= gb (row by row) when sym. The triangle row comes from the quadratic formula
// in double, then is corrected by exact integer steps.
__device__ __forceinline__ void decode_pair(long long idx, long long na, long long nb, int sym,
                                            long long& ga, long long& gb) {
  if (!sym) {
    ga = idx / nb;
    gb = idx - ga * nb;
    return;
  }
  const double b = 2.0 * double(na) + 1.0;
  long long g = (long long)((b - sqrt(b * b - 8.0 * double(idx))) * 0.5);
  if (g < 0) g = 0;
  if (g > na - 1) g = na - 1;
  // start(g) = g n - g (g - 1) / 2 is the flat index of (g, g).
  while (g > 0 && g * na - g * (g - 1) / 2 > idx) --g;
  while (g + 1 < na && (g + 1) * na - (g + 1) * g / 2 <= idx) ++g;
  ga = g;
  gb = g + (idx - (g * na - g * (g - 1) / 2));
}

// The full map from covariances, as lkr::nngp_map (the FC kernel after one GEMM).
template <int ACT, class T>
__device__ __forceinline__ T nngp_map(T cxx, T cxy, T cyy) {
  if (ACT == LKR_ACT_ERF) {
    return map_F<ACT, T>(T(2) * cxy / dev_sqrt((T(1) + T(2) * cxx) * (T(1) + T(2) * cyy)));
  } else if (ACT == LKR_ACT_RELU) {
    const T n2 = cxx * cyy;
    if (!(n2 > T(0))) return T(0);
    const T n = dev_sqrt(n2);
    return n * map_F<ACT, T>(cxy / n);
  } else {
    return cxy;
  }
}

}  // namespace lkr_cuda
