// CUDA kernels of the deep-CNN local kernel (docs/deep-cnn.md section 4; the same maths as
// csrc/lkr/deep_kernel.cpp):
//
//   C1_pq(mu, nu)      = x_p^mu . x_q^nu / (lambda0 M1),
//   K_l,pq(mu, nu)     = K_sigma(C_l,pp(mu, mu), C_l,pq(mu, nu), C_l,qq(nu, nu)),
//   C_{l+1},pq(mu, nu) = norm_{l+1} sum_t K_l,w_p(t) w_q(t)(mu, nu),
//
// computed only on the position pairs of a plan (lkr.DeepGeometry.pair_plan: the final pairs
// the readout needs and the pairs below that these read), and the final blocks consumed as
// the one-layer kernels consume K_ij. The host side is python/lkr/_cuda/deep.py, the only
// caller (the kernels trust their arguments).
//
// lkr_deep_prepare_*: one block per sample (grid-stride): the scaled layer-1 rows z and
// amplitudes s1 (as lkr_prepare_* of local_kernel.cu), read from the flattened input through
// the layer-1 index (n0: a padded entry, 0), then the sample's own variance recursion, which
// gives the map factors r, s of every layer l >= 2 (see deep_kernel.cpp).
//
// lkr_deep_{full,renormalized,adjoint,diag,pack}_*: blocks walk over the sample pairs
// (grid-stride; the upper triangle when sym). Per pair a block computes, level by level, the
// plan's pairs of that level into its own slice of a global workspace (npairs_l + 1 entries
// per level: the last one is the zero read by a padded window position; the host zeroes the
// workspace and no kernel writes it): level 0 as dot products of the two samples' rows (staged
// in shared memory when they fit), each level above as the sum of the entries its gather
// table names, then the map. The final level is consumed: MODE 0 writes the blocks out,
// MODE 1 contracts them with Q into K_R (one block reduction, no atomics), MODE 2 adds
// W_{mu nu} K_L into the block's own slice of H (one entry per final pair, each owned by one
// thread: no atomics; the host sums the slices in a fixed order), MODE 3 is MODE 1 on the
// pairs (mu, mu) only, MODE 4 writes the stored kernel of the theories (the pairs i <= j
// first, then those i > j added to their mirror's column after a barrier: no two threads
// touch one entry at once).
// Memory: O(output + blocks x plan pairs): the P^2 x positions^2 tensor is never held.
// NVRTC compatibility: no host headers; see lkr_common.cuh. Names are distinct from
// local_kernel.cu's (the test emulator compiles every source in one unit).
#include "lkr_common.cuh"

#define LKR_DEEP_THREADS 256
#define LKR_DEEP_STAGE_DOUBLES 5120  // 40 KB of static shared memory for the staged rows

namespace lkr_deep {

using lkr_cuda::block_count;
using lkr_cuda::block_id;

// Layer table l (layers 2..L) for the variance recursion: tmeta[5 l ..] = n_in, n_out, k,
// offset of its index table in idx, offset of its positions in the per-sample r/s rows.
struct Layer {
  long long n_in, n_out, k, idx_off, pos_off;
};
__device__ __forceinline__ Layer layer_of(const long long* tmeta, int l) {
  Layer L;
  L.n_in = tmeta[5 * l];
  L.n_out = tmeta[5 * l + 1];
  L.k = tmeta[5 * l + 2];
  L.idx_off = tmeta[5 * l + 3];
  L.pos_off = tmeta[5 * l + 4];
  return L;
}

// Plan level l (0 = layer 1): pmeta[6 l ..] = npairs, offset of its pairs (2 ints each) in
// pairs, offset of its gather table (npairs x k) in gathers, k, offset of its positions in
// the r/s rows (levels >= 1), offset of its entries in a block's workspace.
struct Level {
  long long npairs, pair_off, gather_off, k, pos_off, work_off;
};
__device__ __forceinline__ Level level_of(const long long* pmeta, int l) {
  Level v;
  v.npairs = pmeta[6 * l];
  v.pair_off = pmeta[6 * l + 1];
  v.gather_off = pmeta[6 * l + 2];
  v.k = pmeta[6 * l + 3];
  v.pos_off = pmeta[6 * l + 4];
  v.work_off = pmeta[6 * l + 5];
  return v;
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
__device__ void prepare_body(const T* __restrict__ x, const int* __restrict__ index1,
                             T* __restrict__ z, T* __restrict__ s1, T* __restrict__ r,
                             T* __restrict__ s, double* __restrict__ kd,
                             const long long* __restrict__ tmeta, const int* __restrict__ idx,
                             const double* __restrict__ norms, long long P, long long N0,
                             long long N1, long long M, int nl, long long S, long long nmax,
                             double norm1) {
  for (long long mu = block_id(); mu < P; mu += block_count()) {
    double* ka = kd + mu * 2 * nmax;
    double* kb = ka + nmax;
    const T* xr = x + mu * N0;
    for (long long i = threadIdx.x; i < N1; i += blockDim.x) {
      const int* ix = index1 + i * M;
      double sq = 0.0;
      for (long long k = 0; k < M; ++k) {
        const double v = ix[k] < N0 ? double(xr[ix[k]]) : 0.0;
        sq += v * v;
      }
      const double cv = sq * norm1;
      double scale;
      if (ACT == LKR_ACT_LINEAR) scale = sqrt(norm1);
      else if (ACT == LKR_ACT_ERF) scale = sqrt(2.0 * norm1 / (1.0 + 2.0 * cv));
      else scale = sq > 0.0 ? 1.0 / sqrt(sq) : 0.0;
      T* zr = z + (mu * N1 + i) * M;
      for (long long k = 0; k < M; ++k) zr[k] = ix[k] < N0 ? T(double(xr[ix[k]]) * scale) : T(0);
      s1[mu * N1 + i] = T(factor_s<ACT>(cv));
      ka[i] = lkr_cuda::nngp_map<ACT, double>(cv, cv, cv);
    }
    __syncthreads();
    for (int l = 0; l < nl; ++l) {
      const Layer L = layer_of(tmeta, l);
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
                           const long long* __restrict__ pmeta, const int* __restrict__ pairs,
                           const int* __restrict__ gathers, const double* __restrict__ norms,
                           const T* __restrict__ aux, const int* __restrict__ cols, long long ncols,
                           T* __restrict__ out, double* __restrict__ H, T* __restrict__ work,
                           long long Pa, long long Pb, long long N1, long long M, int L,
                           long long S, long long d, long long wsize, long long npairs, int sym,
                           double outnorm) {
  __shared__ double red[LKR_DEEP_THREADS];
  // The two samples' layer-1 rows, staged when they fit (float32 up to n1 M1 = 5120, float64
  // up to 2560): every row is then read from shared memory, not from L1/L2.
  __shared__ __align__(16) double stage_raw[LKR_DEEP_STAGE_DOUBLES];
  const bool staged = 2 * N1 * M * (long long)sizeof(T) <= (long long)sizeof(stage_raw);
  T* stA = reinterpret_cast<T*>(stage_raw);
  T* stB = stA + N1 * M;
  T* wb = work + block_id() * wsize;
  const Level fin = level_of(pmeta, L - 1);
  const int* fpairs = pairs + fin.pair_off;
  double* Hb = H + block_id() * fin.npairs;
  for (long long pr = block_id(); pr < npairs; pr += block_count()) {
    long long mu, nu;
    if (MODE == 3) {
      mu = nu = pr;
    } else {
      lkr_cuda::decode_pair(pr, Pa, Pb, sym, mu, nu);
    }
    if (MODE == 2) {  // the adjoint skips pairs of zero weight (a block-uniform test)
      const double w = double(aux[mu * Pb + nu]);
      if (w == 0.0) continue;
    }
    // level 0: dot products of the plan's position pairs
    const T* rowsA = za + mu * N1 * M;
    const T* rowsB = zb + nu * N1 * M;
    if (staged) {
      for (long long e = threadIdx.x; e < N1 * M; e += blockDim.x) {
        stA[e] = rowsA[e];
        stB[e] = rowsB[e];
      }
      __syncthreads();
      rowsA = stA;
      rowsB = stB;
    }
    {
      const Level v = level_of(pmeta, 0);
      const int* pp = pairs + v.pair_off;
      T* buf = wb + v.work_off;
      for (long long e = threadIdx.x; e < v.npairs; e += blockDim.x) {
        const long long p = pp[2 * e], q = pp[2 * e + 1];
        const T* a = rowsA + p * M;
        const T* b = rowsB + q * M;
        T u = T(0);
        for (long long k = 0; k < M; ++k) u += a[k] * b[k];
        const T f = lkr_cuda::map_F<ACT, T>(u);
        buf[e] = ACT == LKR_ACT_RELU ? (s1a[mu * N1 + p] * s1b[nu * N1 + q]) * f : f;
      }
      __syncthreads();
    }
    // levels >= 1: the sums their gather tables name, then the map
    for (int l = 1; l < L; ++l) {
      const Level below = level_of(pmeta, l - 1);
      const Level v = level_of(pmeta, l);
      const T* prev = wb + below.work_off;
      T* buf = wb + v.work_off;
      const int* pp = pairs + v.pair_off;
      const int* g = gathers + v.gather_off;
      const T norm = T(norms[l - 1]);
      const T* rA = ra + mu * S + v.pos_off;
      const T* rB = rb + nu * S + v.pos_off;
      const T* sA = sa + mu * S + v.pos_off;
      const T* sB = sb + nu * S + v.pos_off;
      for (long long e = threadIdx.x; e < v.npairs; e += blockDim.x) {
        const long long p = pp[2 * e], q = pp[2 * e + 1];
        T c = T(0);
        for (long long t = 0; t < v.k; ++t) c += prev[g[e * v.k + t]];
        const T f = lkr_cuda::map_F<ACT, T>((c * norm) * (rA[p] * rB[q]));
        buf[e] = ACT == LKR_ACT_RELU ? (sA[p] * sB[q]) * f : f;
      }
      __syncthreads();
    }
    // the final pairs
    const T* K = wb + fin.work_off;
    if (MODE == 0) {
      for (long long e = threadIdx.x; e < fin.npairs; e += blockDim.x) {
        const long long i = fpairs[2 * e], j = fpairs[2 * e + 1];
        out[((mu * Pb + nu) * d + i) * d + j] = K[e];
        if (sym && mu != nu) out[((nu * Pb + mu) * d + j) * d + i] = K[e];
      }
    } else if (MODE == 1 || MODE == 3) {
      double acc = 0.0;
      for (long long e = threadIdx.x; e < fin.npairs; e += blockDim.x) {
        const long long i = fpairs[2 * e], j = fpairs[2 * e + 1];
        acc += double(aux[i * d + j]) * double(K[e]);
      }
      const double tot = block_sum(acc, red);
      if (threadIdx.x == 0) {
        const T val = T(tot * outnorm);
        if (MODE == 3) {
          out[mu] = val;
        } else {
          out[mu * Pb + nu] = val;
          if (sym) out[nu * Pb + mu] = val;
        }
      }
    } else if (MODE == 2) {
      const double w = double(aux[mu * Pb + nu]) * ((sym && mu == nu) ? 0.5 : 1.0);
      for (long long e = threadIdx.x; e < fin.npairs; e += blockDim.x) Hb[e] += w * double(K[e]);
    } else {
      T* row = out + (mu * Pa - mu * (mu - 1) / 2 + nu - mu) * ncols;
      for (long long e = threadIdx.x; e < fin.npairs; e += blockDim.x)
        if (fpairs[2 * e] <= fpairs[2 * e + 1]) row[cols[e]] = K[e];
      __syncthreads();
      for (long long e = threadIdx.x; e < fin.npairs; e += blockDim.x)
        if (fpairs[2 * e] > fpairs[2 * e + 1]) row[cols[e]] += K[e];
    }
    __syncthreads();  // the workspace is reused by the next pair
  }
}

}  // namespace lkr_deep

#define LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, MODE, MODENAME)                                       \
  extern "C" __global__ void __launch_bounds__(LKR_DEEP_THREADS)                                   \
      lkr_deep_##MODENAME##_##ACTNAME##_##SUF(                                                     \
          const T* za, const T* s1a, const T* ra, const T* sa, const T* zb, const T* s1b,          \
          const T* rb, const T* sb, const long long* pmeta, const int* pairs, const int* gathers,  \
          const double* norms, const T* aux, const int* cols, long long ncols, T* out, double* H,  \
          T* work, long long Pa, long long Pb, long long N1, long long M, int L, long long S,      \
          long long d, long long wsize, long long npairs, int sym, double outnorm) {               \
    lkr_deep::pairs_body<T, ACT, MODE>(za, s1a, ra, sa, zb, s1b, rb, sb, pmeta, pairs, gathers,    \
                                       norms, aux, cols, ncols, out, H, work, Pa, Pb, N1, M, L, S, \
                                       d, wsize, npairs, sym, outnorm);                            \
  }

#define LKR_DEEP_ACT(T, SUF, ACT, ACTNAME)                                                         \
  extern "C" __global__ void __launch_bounds__(LKR_DEEP_THREADS)                                   \
      lkr_deep_prepare_##ACTNAME##_##SUF(                                                          \
          const T* x, const int* index1, T* z, T* s1, T* r, T* s, double* kd,                      \
          const long long* tmeta, const int* idx, const double* norms, long long P, long long N0,  \
          long long N1, long long M, int nl, long long S, long long nmax, double norm1) {          \
    lkr_deep::prepare_body<T, ACT>(x, index1, z, s1, r, s, kd, tmeta, idx, norms, P, N0, N1, M,    \
                                   nl, S, nmax, norm1);                                            \
  }                                                                                                \
  LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, 0, full)                                                    \
  LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, 1, renormalized)                                            \
  LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, 2, adjoint)                                                 \
  LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, 3, diag)                                                    \
  LKR_DEEP_PAIRS(T, SUF, ACT, ACTNAME, 4, pack)

#define LKR_DEEP_DTYPE(T, SUF)                                                                     \
  LKR_DEEP_ACT(T, SUF, LKR_ACT_LINEAR, linear)                                                     \
  LKR_DEEP_ACT(T, SUF, LKR_ACT_ERF, erf)                                                           \
  LKR_DEEP_ACT(T, SUF, LKR_ACT_RELU, relu)

#ifndef LKR_ONLY_F64
LKR_DEEP_DTYPE(float, f32)
#endif
#ifndef LKR_ONLY_F32
LKR_DEEP_DTYPE(double, f64)
#endif
