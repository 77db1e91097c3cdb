// CUDA patch passes of the one-hidden-layer CNN and LCN (docs/theory.md section 2), the GPU
// counterparts of lkr._core.patch_forward / patch_vjp / patch_jvp (csrc/lkr/nets.hpp):
//
//   h_{ai}(x) = w_a . x_i / sqrt(M)        (LCN: w_{ai} . x_i / sqrt(M)),
//   f(x) = (Nc Np)^{-1/2} sum_{a,i} v_{ai} sigma(h_{ai}),
//   vjp:  dv_{ai} = (Nc Np)^{-1/2} sum_p r_p sigma(h_{ai}(x_p)),
//         dw_a    = (M Nc Np)^{-1/2} sum_{p,i} r_p v_{ai} sigma'(h_{ai}(x_p)) x_{p,i}
//                   (LCN: dw_{ai}, without the sum over i),
//   jvp:  J t = (Nc Np)^{-1/2} sum_{a,i} [v_{ai} sigma'(h_{ai}) (t_w . x_i) / sqrt(M)
//                                         + t_v,ai sigma(h_{ai})],
// for C parameter chains at once. A chained operand has a leading chain axis; the host
// (python/lkr/_cuda/nets.py) passes its chain stride in elements, 0 to broadcast one set.
// Pre-activations are recomputed, never stored. Sums over samples and patches in double.
// NVRTC compatibility: no host headers; see lkr_common.cuh. Kernel names start with lkr_.
#include "lkr_common.cuh"

#define LKR_NET_THREADS 256
// Shared memory for the per-tile (sample, patch) terms of the vjp: 24 KB.
#define LKR_NET_TILE_DOUBLES 3072

namespace lkr_cuda {

__device__ __forceinline__ float dev_erf(float x) { return erff(x); }
__device__ __forceinline__ double dev_erf(double x) { return erf(x); }
__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }

template <int ACT, class T>
__device__ __forceinline__ T sig(T h) {
  if (ACT == LKR_ACT_ERF) return dev_erf(h);
  if (ACT == LKR_ACT_RELU) return h > T(0) ? h : T(0);
  return h;
}

template <int ACT, class T>
__device__ __forceinline__ T dsig(T h) {
  if (ACT == LKR_ACT_ERF) return T(1.1283791670955125738961589031215452) * dev_exp(-h * h);
  if (ACT == LKR_ACT_RELU) return h > T(0) ? T(1) : T(0);
  return T(1);
}

__device__ __forceinline__ long long net_block_id() {
  return (long long)blockIdx.y * (long long)gridDim.x + (long long)blockIdx.x;
}

// Sum of one double per thread over the block; the result is valid in thread 0.
__device__ __forceinline__ double block_sum(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int h = LKR_NET_THREADS / 2; h > 0; h /= 2) {
    if ((int)threadIdx.x < h) red[threadIdx.x] += red[threadIdx.x + h];
    __syncthreads();
  }
  return red[0];
}

// f (C, P) or, with jvp, J t (C, P): one block per (chain, sample), threads over (a, i).
template <class T, int ACT>
__device__ void net_forward_body(const T* __restrict__ Z, const T* __restrict__ W, long long w_cs,
                                 const T* __restrict__ v, long long v_cs, const T* __restrict__ tW,
                                 long long tw_cs, const T* __restrict__ tv, long long tv_cs,
                                 T* __restrict__ out, long long C, long long P, long long Np,
                                 long long M, long long Nc, int local, int jvp, double hscale,
                                 double oscale) {
  __shared__ double red[LKR_NET_THREADS];
  const long long bid = net_block_id();
  if (bid >= C * P) return;
  const long long c = bid / P, p = bid - (bid / P) * P;
  const T* Wc = W + c * w_cs;
  const T* vc = v + c * v_cs;
  const T* Zp = Z + p * Np * M;
  const T hs = T(hscale);
  double acc = 0.0;
  for (long long e = threadIdx.x; e < Nc * Np; e += LKR_NET_THREADS) {
    const long long a = e / Np, i = e - (e / Np) * Np;
    const long long woff = local ? (a * Np + i) * M : a * M;
    const T* w = Wc + woff;
    const T* z = Zp + i * M;
    T h = T(0);
    for (long long k = 0; k < M; ++k) h += w[k] * z[k];
    h *= hs;
    if (!jvp) {
      acc += double(vc[e] * sig<ACT, T>(h));
    } else {
      const T* tw = tW + c * tw_cs + woff;
      T dh = T(0);
      for (long long k = 0; k < M; ++k) dh += tw[k] * z[k];
      dh *= hs;
      acc += double(vc[e] * dsig<ACT, T>(h) * dh + tv[c * tv_cs + e] * sig<ACT, T>(h));
    }
  }
  const double s = block_sum(acc, red);
  if (threadIdx.x == 0) out[c * P + p] = T(s * oscale);
}

// Gradients of sum_p r[c, p] f_c(x_p): one block per (chain, channel a), looping over tiles
// of PT samples. Per tile the block first computes, for every (sample, patch), the terms
// r sigma(h) and r v sigma'(h) into shared memory; then each output element (dv_{ai}, and
// dw_a[k] or dw_{ai}[k]) is summed by one thread (CNN dw: by slices of threads, then
// combined in a fixed order), straight into the block's own slice of dW and dv (double,
// scaled at the end): no atomics, deterministic.
template <class T, int ACT>
__device__ void net_vjp_body(const T* __restrict__ Z, const T* __restrict__ W, long long w_cs,
                             const T* __restrict__ v, long long v_cs, const T* __restrict__ r,
                             long long r_cs, double* __restrict__ dW, double* __restrict__ dv,
                             long long C, long long P, long long Np, long long M, long long Nc,
                             int local, long long PT, double hscale, double oscale) {
  __shared__ double buf[LKR_NET_TILE_DOUBLES];
  __shared__ double part[LKR_NET_THREADS];
  const long long bid = net_block_id();
  if (bid >= C * Nc) return;
  const long long c = bid / Nc, a = bid - (bid / Nc) * Nc;
  const int tid = threadIdx.x;
  T* s1 = reinterpret_cast<T*>(buf);  // [PT][Np]: r sigma(h)
  T* g = s1 + PT * Np;                // [PT][Np]: r v sigma'(h)
  const T* Wa = W + c * w_cs + (local ? a * Np * M : a * M);
  const T* va = v + c * v_cs + a * Np;
  const T* rc = r + c * r_cs;
  const long long nw = local ? Np * M : M;
  double* dWa = dW + (c * Nc + a) * nw;
  double* dva = dv + (c * Nc + a) * Np;
  for (long long e = tid; e < nw; e += LKR_NET_THREADS) dWa[e] = 0.0;
  for (long long e = tid; e < Np; e += LKR_NET_THREADS) dva[e] = 0.0;
  const T hs = T(hscale);
  // CNN dw: thread (slice sl, column k) sums the (sample, patch) terms j = sl, sl + nsl, ...
  const int nsl = M >= LKR_NET_THREADS ? 1 : (int)(LKR_NET_THREADS / M);
  for (long long p0 = 0; p0 < P; p0 += PT) {
    const long long pt = P - p0 < PT ? P - p0 : PT;
    for (long long e = tid; e < pt * Np; e += LKR_NET_THREADS) {
      const long long pp = e / Np, i = e - (e / Np) * Np;
      const T* w = Wa + (local ? i * M : 0);
      const T* z = Z + ((p0 + pp) * Np + i) * M;
      T h = T(0);
      for (long long k = 0; k < M; ++k) h += w[k] * z[k];
      h *= hs;
      const T rp = rc[p0 + pp];
      s1[e] = rp * sig<ACT, T>(h);
      g[e] = rp * va[i] * dsig<ACT, T>(h);
    }
    __syncthreads();
    for (long long i = tid; i < Np; i += LKR_NET_THREADS) {
      double s = 0.0;
      for (long long pp = 0; pp < pt; ++pp) s += double(s1[pp * Np + i]);
      dva[i] += s;
    }
    if (local) {
      for (long long e = tid; e < Np * M; e += LKR_NET_THREADS) {
        const long long i = e / M, k = e - (e / M) * M;
        double s = 0.0;
        for (long long pp = 0; pp < pt; ++pp)
          s += double(g[pp * Np + i]) * double(Z[((p0 + pp) * Np + i) * M + k]);
        dWa[e] += s;
      }
    } else if (nsl == 1) {
      for (long long k = tid; k < M; k += LKR_NET_THREADS) {
        double s = 0.0;
        for (long long j = 0; j < pt * Np; ++j)
          s += double(g[j]) * double(Z[(p0 * Np + j) * M + k]);
        dWa[k] += s;
      }
    } else {
      const long long k = tid % M, sl = tid / M;
      double s = 0.0;
      if (sl < nsl)
        for (long long j = sl; j < pt * Np; j += nsl)
          s += double(g[j]) * double(Z[(p0 * Np + j) * M + k]);
      part[tid] = s;
      __syncthreads();
      if (tid < M) {
        double t = 0.0;
        for (int q = 0; q < nsl; ++q) t += part[q * M + tid];
        dWa[tid] += t;
      }
    }
    __syncthreads();  // s1, g and part are rewritten by the next tile
  }
  for (long long e = tid; e < nw; e += LKR_NET_THREADS) dWa[e] *= hscale * oscale;
  for (long long e = tid; e < Np; e += LKR_NET_THREADS) dva[e] *= oscale;
}

}  // namespace lkr_cuda

#define LKR_NET_DEFINE_ACT(T, SUF, ACT, ACTNAME)                                                   \
  extern "C" __global__ void __launch_bounds__(LKR_NET_THREADS) lkr_net_forward_##ACTNAME##_##SUF( \
      const T* Z, const T* W, long long w_cs, const T* v, long long v_cs, const T* tW,             \
      long long tw_cs, const T* tv, long long tv_cs, T* out, long long C, long long P,             \
      long long Np, long long M, long long Nc, int local, int jvp, double hscale, double oscale) { \
    lkr_cuda::net_forward_body<T, ACT>(Z, W, w_cs, v, v_cs, tW, tw_cs, tv, tv_cs, out, C, P, Np,   \
                                       M, Nc, local, jvp, hscale, oscale);                         \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(LKR_NET_THREADS) lkr_net_vjp_##ACTNAME##_##SUF(     \
      const T* Z, const T* W, long long w_cs, const T* v, long long v_cs, const T* r,              \
      long long r_cs, double* dW, double* dv, long long C, long long P, long long Np, long long M, \
      long long Nc, int local, long long PT, double hscale, double oscale) {                       \
    lkr_cuda::net_vjp_body<T, ACT>(Z, W, w_cs, v, v_cs, r, r_cs, dW, dv, C, P, Np, M, Nc, local,   \
                                   PT, hscale, oscale);                                            \
  }

#define LKR_NET_DEFINE_DTYPE(T, SUF)                                                               \
  LKR_NET_DEFINE_ACT(T, SUF, LKR_ACT_LINEAR, linear)                                               \
  LKR_NET_DEFINE_ACT(T, SUF, LKR_ACT_ERF, erf)                                                     \
  LKR_NET_DEFINE_ACT(T, SUF, LKR_ACT_RELU, relu)

#ifndef LKR_ONLY_F64
LKR_NET_DEFINE_DTYPE(float, f32)
#endif
#ifndef LKR_ONLY_F32
LKR_NET_DEFINE_DTYPE(double, f64)
#endif
