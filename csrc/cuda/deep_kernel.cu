// CUDA kernels of the deep-CNN local kernel (docs/deep-cnn.md section 4; the same maths as
// csrc/lkr/deep_kernel.cpp):
//
//   C1_pq(mu, nu)      = x_p^mu . x_q^nu / (lambda0 M1),
//   K_l,pq(mu, nu)     = K_sigma(C_l,pp(mu, mu), C_l,pq(mu, nu), C_l,qq(nu, nu)),
//   C_{l+1},pq(mu, nu) = norm_{l+1} sum_t K_l,w_p(t) w_q(t)(mu, nu),
//
// and the final blocks K_L (d x d) consumed as the one-layer kernels consume K_ij. The host
// side is python/lkr/_cuda_deep.py, the only caller (the kernels trust their arguments).
//
// lkr_deep_prepare_*: one block per sample (grid-stride): the scaled layer-1 rows z and
// amplitudes s1 (as lkr_prepare_* of local_kernel.cu), then the sample's own variance
// recursion, which gives the map factors r, s of every layer l >= 2 (see deep_kernel.cpp).
//
// lkr_deep_pairs_*: blocks walk over the sample pairs (grid-stride; the upper triangle
// when sym). Per pair a block computes the layer-1 position pairs the layers above read
// (the list pairs1, p n1 + q: after a stride-2 layer only p = q mod 2 per axis; entries off
// the list are never written nor read) and every upper layer's position pairs into its own slice of
// a global workspace, (n_l + 1)^2 per layer (the extra zero row and column are the padding
// sentinel of the next layer's windows; they are never written and the host zeroes the
// workspace), then consumes the final block: MODE 0 writes it out, MODE 1 contracts it with
// Q into K_R (one block reduction, no atomics), MODE 2 adds W_{mu nu} K_L into the block's
// own d x d slice of H (each thread owns fixed entries: no atomics; the host sums the
// slices in a fixed order), MODE 3 is MODE 1 on the pairs (mu, mu) only.
// Memory: O(output + blocks x sum_l n_l^2): the P^2 x positions^2 tensor is never held.
// NVRTC compatibility: no host headers; see lkr_common.cuh. Names are distinct from
// local_kernel.cu's (the test emulator compiles every source in one unit).
#include "lkr_common.cuh"

#define LKR_DEEP_THREADS 256
#define LKR_DEEP_STAGE_DOUBLES 5120  // 40 KB of static shared memory for the staged rows

namespace lkr_deep {

__device__ __forceinline__ long long block_index() {
  return (long long)blockIdx.y * (long long)gridDim.x + (long long)blockIdx.x;
}
__device__ __forceinline__ long long block_count() {
  return (long long)gridDim.x * (long long)gridDim.y;
}

// Pair idx of the n x n upper triangle (row by row) or of the na x nb rectangle.
__device__ __forceinline__ void decode(long long idx, long long na, long long nb, int sym,
                                       long long& a, long long& b) {
  if (!sym) {
    a = idx / nb;
    b = idx - a * nb;
    return;
  }
  const double c = 2.0 * double(na) + 1.0;
  long long g = (long long)((c - sqrt(c * c - 8.0 * double(idx))) * 0.5);
  if (g < 0) g = 0;
  if (g > na - 1) g = na - 1;
  while (g > 0 && g * na - g * (g - 1) / 2 > idx) --g;
  while (g + 1 < na && (g + 1) * na - (g + 1) * g / 2 <= idx) ++g;
  a = g;
  b = g + (idx - (g * na - g * (g - 1) / 2));
}

// Layer table l (layers 2..L): meta[5 l ..] = n_in, n_out, k, offset of its index table in
// idx, offset of its positions in the per-sample r/s rows.
struct Layer {
  long long n_in, n_out, k, idx_off, pos_off;
};
__device__ __forceinline__ Layer layer_of(const long long* meta, int l) {
  Layer L;
  L.n_in = meta[5 * l];
  L.n_out = meta[5 * l + 1];
  L.k = meta[5 * l + 2];
  L.idx_off = meta[5 * l + 3];
  L.pos_off = meta[5 * l + 4];
  return L;
}

template <int ACT>
__device__ __forceinline__ double factor_r(double v) {
  if (ACT == LKR_ACT_ERF) return sqrt(2.0 / (1.0 + 2.0 * v));
  if (ACT == LKR_ACT_RELU) return v > 0.0 ? 1.0 / sqrt(v) : 0.0;
  return 1.0;
}
template <int ACT>
__device__ __forceinline__ double factor_s(double v) {
  return ACT == LKR_ACT_RELU ? sqrt(v > 0.0 ? v : 0.0) : 1.0;
}

template <class T, int ACT>
__device__ void prepare_body(const T* __restrict__ x, T* __restrict__ z, T* __restrict__ s1,
                             T* __restrict__ r, T* __restrict__ s, double* __restrict__ kd,
                             const long long* __restrict__ meta, const int* __restrict__ idx,
                             const double* __restrict__ norms, long long P, long long N1,
                             long long M, int nl, long long S, long long nmax, double norm1) {
  for (long long mu = block_index(); mu < P; mu += block_count()) {
    double* ka = kd + mu * 2 * nmax;
    double* kb = ka + nmax;
    for (long long i = threadIdx.x; i < N1; i += blockDim.x) {
      const T* xr = x + (mu * N1 + i) * M;
      double sq = 0.0;
      for (long long k = 0; k < M; ++k) {
        const double v = double(xr[k]);
        sq += v * v;
      }
      const double cv = sq * norm1;
      double scale;
      if (ACT == LKR_ACT_LINEAR) scale = sqrt(norm1);
      else if (ACT == LKR_ACT_ERF) scale = sqrt(2.0 * norm1 / (1.0 + 2.0 * cv));
      else scale = sq > 0.0 ? 1.0 / sqrt(sq) : 0.0;
      T* zr = z + (mu * N1 + i) * M;
      for (long long k = 0; k < M; ++k) zr[k] = T(double(xr[k]) * scale);
      s1[mu * N1 + i] = T(factor_s<ACT>(cv));
      ka[i] = lkr_cuda::nngp_map<ACT, double>(cv, cv, cv);
    }
    __syncthreads();
    for (int l = 0; l < nl; ++l) {
      const Layer L = layer_of(meta, l);
      const int* ix = idx + L.idx_off;
      for (long long q = threadIdx.x; q < L.n_out; q += blockDim.x) {
        double v = 0.0;
        for (long long t = 0; t < L.k; ++t) {
          const int j = ix[q * L.k + t];
          if (j < L.n_in) v += ka[j];
        }
        v *= norms[l];
        r[mu * S + L.pos_off + q] = T(factor_r<ACT>(v));
        s[mu * S + L.pos_off + q] = T(factor_s<ACT>(v));
        kb[q] = lkr_cuda::nngp_map<ACT, double>(v, v, v);
      }
      __syncthreads();
      double* tmp = ka;
      ka = kb;
      kb = tmp;
    }
  }
}

template <class T>
__device__ __forceinline__ double block_sum(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int h = LKR_DEEP_THREADS / 2; h > 0; h /= 2) {
    if ((int)threadIdx.x < h) red[threadIdx.x] += red[threadIdx.x + h];
    __syncthreads();
  }
  const double out = red[0];
  __syncthreads();
  return out;
}

template <class T, int ACT, int MODE>
__device__ void pairs_body(const T* __restrict__ za, const T* __restrict__ s1a,
                           const T* __restrict__ ra, const T* __restrict__ sa,
                           const T* __restrict__ zb, const T* __restrict__ s1b,
                           const T* __restrict__ rb, const T* __restrict__ sb,
                           const long long* __restrict__ meta, const int* __restrict__ idx,
                           const double* __restrict__ norms, const int* __restrict__ pairs1,
                           long long n1pairs, const T* __restrict__ aux,
                           T* __restrict__ out, double* __restrict__ H, T* __restrict__ work,
                           long long Pa, long long Pb, long long N1, long long M, int nl,
                           long long S, long long wsize, long long npairs, int sym,
                           double outnorm) {
  __shared__ double red[LKR_DEEP_THREADS];
  // The two samples' layer-1 rows, staged when they fit (float32 up to n1 M1 = 5120, float64
  // up to 2560): every row is then read n1 times from shared memory, not from L1/L2.
  __shared__ __align__(16) double stage_raw[LKR_DEEP_STAGE_DOUBLES];
  const bool staged = 2 * N1 * M * (long long)sizeof(T) <= (long long)sizeof(stage_raw);
  T* sA = reinterpret_cast<T*>(stage_raw);
  T* sB = sA + N1 * M;
  T* buf1 = work + block_index() * wsize;
  const long long d = nl ? layer_of(meta, nl - 1).n_out : N1;
  double* Hb = H + block_index() * d * d;
  for (long long pr = block_index(); pr < npairs; pr += block_count()) {
    long long mu, nu;
    if (MODE == 3) {
      mu = nu = pr;
    } else {
      decode(pr, Pa, Pb, sym, mu, nu);
    }
    if (MODE == 2) {  // the adjoint skips pairs of zero weight (a block-uniform test)
      const double w = double(aux[mu * Pb + nu]);
      if (w == 0.0) continue;
    }
    // layer 1: all position pairs
    const T* rowsA = za + mu * N1 * M;
    const T* rowsB = zb + nu * N1 * M;
    if (staged) {
      for (long long e = threadIdx.x; e < N1 * M; e += blockDim.x) {
        sA[e] = rowsA[e];
        sB[e] = rowsB[e];
      }
      __syncthreads();
      rowsA = sA;
      rowsB = sB;
    }
    const long long ld1 = N1 + 1;
    for (long long e = threadIdx.x; e < n1pairs; e += blockDim.x) {
      const long long pq = pairs1[e];
      const long long p = pq / N1, q = pq - (pq / N1) * N1;
      const T* a = rowsA + p * M;
      const T* b = rowsB + q * M;
      T u = T(0);
      for (long long k = 0; k < M; ++k) u += a[k] * b[k];
      const T f = lkr_cuda::map_F<ACT, T>(u);
      buf1[p * ld1 + q] = ACT == LKR_ACT_RELU ? (s1a[mu * N1 + p] * s1b[nu * N1 + q]) * f : f;
    }
    __syncthreads();
    // layers 2..L: gather along the windows' common offsets, then map
    T* prev = buf1;
    long long ldp = ld1, off = (N1 + 1) * ld1;
    for (int l = 0; l < nl; ++l) {
      const Layer L = layer_of(meta, l);
      const int* ix = idx + L.idx_off;
      const long long ldn = L.n_out + 1;
      T* next = work + block_index() * wsize + off;
      const T norm = T(norms[l]);
      const T* rA = ra + mu * S + L.pos_off;
      const T* rB = rb + nu * S + L.pos_off;
      const T* sA = sa + mu * S + L.pos_off;
      const T* sB = sb + nu * S + L.pos_off;
      for (long long e = threadIdx.x; e < L.n_out * L.n_out; e += blockDim.x) {
        const long long p = e / L.n_out, q = e - (e / L.n_out) * L.n_out;
        T c = T(0);
        for (long long t = 0; t < L.k; ++t)
          c += prev[(long long)ix[p * L.k + t] * ldp + ix[q * L.k + t]];
        const T f = lkr_cuda::map_F<ACT, T>((c * norm) * (rA[p] * rB[q]));
        next[p * ldn + q] = ACT == LKR_ACT_RELU ? (sA[p] * sB[q]) * f : f;
      }
      __syncthreads();
      prev = next;
      ldp = ldn;
      off += (L.n_out + 1) * ldn;
    }
    // the final block
    if (MODE == 0) {
      for (long long e = threadIdx.x; e < d * d; e += blockDim.x) {
        const long long i = e / d, j = e - (e / d) * d;
        const T v = prev[i * ldp + j];
        out[(mu * Pb + nu) * d * d + e] = v;
        if (sym && mu != nu) out[(nu * Pb + mu) * d * d + j * d + i] = v;
      }
    } else if (MODE == 1 || MODE == 3) {
      double acc = 0.0;
      for (long long e = threadIdx.x; e < d * d; e += blockDim.x) {
        const long long i = e / d, j = e - (e / d) * d;
        acc += double(aux[e]) * double(prev[i * ldp + j]);
      }
      const double tot = block_sum<T>(acc, red);
      if (threadIdx.x == 0) {
        const T v = T(tot * outnorm);
        if (MODE == 3) {
          out[mu] = v;
        } else {
          out[mu * Pb + nu] = v;
          if (sym) out[nu * Pb + mu] = v;
        }
      }
    } else {
      const double w = double(aux[mu * Pb + nu]) * ((sym && mu == nu) ? 0.5 : 1.0);
      for (long long e = threadIdx.x; e < d * d; e += blockDim.x) {
        const long long i = e / d, j = e - (e / d) * d;
        Hb[e] += w * double(prev[i * ldp + j]);
      }
    }
    __syncthreads();  // the workspace is reused by the next pair
  }
}

}  // namespace lkr_deep

#define LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, MODE, MODENAME)                                    \
  extern "C" __global__ void __launch_bounds__(LKR_DEEP_THREADS)                                \
      lkr_deep_##MODENAME##_##ACTNAME##_##SUF(                                                  \
          const T* za, const T* s1a, const T* ra, const T* sa, const T* zb, const T* s1b,      \
          const T* rb, const T* sb, const long long* meta, const int* idx, const double* norms, \
          const int* pairs1, long long n1pairs, const T* aux, T* out, double* H, T* work,      \
          long long Pa, long long Pb, long long N1,                                            \
          long long M, int nl, long long S, long long wsize, long long npairs, int sym,        \
          double outnorm) {                                                                     \
    lkr_deep::pairs_body<T, ACT, MODE>(za, s1a, ra, sa, zb, s1b, rb, sb, meta, idx, norms,     \
                                       pairs1, n1pairs, aux,                                    \
                                       out, H, work, Pa, Pb, N1, M, nl, S, wsize, npairs, sym,  \
                                       outnorm);                                                \
  }

#define LKR_DEEP_ACT(T, SUF, ACT, ACTNAME)                                                      \
  extern "C" __global__ void __launch_bounds__(LKR_DEEP_THREADS)                                \
      lkr_deep_prepare_##ACTNAME##_##SUF(const T* x, T* z, T* s1, T* r, T* s, double* kd,      \
                                         const long long* meta, const int* idx,                \
                                         const double* norms, long long P, long long N1,       \
                                         long long M, int nl, long long S, long long nmax,     \
                                         double norm1) {                                        \
    lkr_deep::prepare_body<T, ACT>(x, z, s1, r, s, kd, meta, idx, norms, P, N1, M, nl, S,      \
                                   nmax, norm1);                                                \
  }                                                                                             \
  LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, 0, full)                                                 \
  LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, 1, renormalized)                                         \
  LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, 2, adjoint)                                              \
  LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, 3, diag)

#define LKR_DEEP_DTYPE(T, SUF)                 \
  LKR_DEEP_ACT(T, SUF, LKR_ACT_LINEAR, linear) \
  LKR_DEEP_ACT(T, SUF, LKR_ACT_ERF, erf)       \
  LKR_DEEP_ACT(T, SUF, LKR_ACT_RELU, relu)

#ifndef LKR_ONLY_F64
LKR_DEEP_DTYPE(float, f32)
#endif
#ifndef LKR_ONLY_F32
LKR_DEEP_DTYPE(double, f64)
#endif
