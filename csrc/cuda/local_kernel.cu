// CUDA kernels for the patch-wise local kernel and its contractions (docs/theory.md section 2):
//
//   C_ij^{mu nu} = x_i^mu . x_j^nu / (lambda0 M),
//   K_ij^{mu nu} = K_sigma(C_ii^{mu mu}, C_ij^{mu nu}, C_jj^{nu nu}) = s_i^mu s_j^nu F(z_i^mu . z_j^nu),
//   K_R(Q)^{mu nu} = (1 / (lambda1 Np)) sum_ij Q_ij K_ij^{mu nu},
//   G(W)_ij = sum_{mu nu} W_{mu nu} K_ij^{mu nu},
//
// the same maths as csrc/lkr/local_kernel.cpp. The host side is python/lkr/_cuda/kernels.py, which
// prepares the patches (lkr_prepare_*), pads and launches; it is the only caller, so the
// kernels trust their arguments. Kernel names start with lkr_ (the test emulator finds them
// by that prefix).
//
// Layout. Prepared rows z (P, PNp, M) and amplitudes s (P, PNp), where the patch count is
// padded to PNp, a multiple of LKR_TM, with zero rows (s = 0, and Q padded with zeros), so
// that the LKR_TM consecutive rows (or columns) of a thread's micro-tile always belong to
// one sample. The flattened row space (mu, i) is cut into panels of LKR_TILE x LKR_TILE:
//   CW = min(PNp, LKR_TILE) patches per panel side ("chunk"), nchunks = ceil(PNp / CW),
//   S  = LKR_TILE / CW samples stacked per panel side ("group"; 1 when PNp >= LKR_TILE).
// Panel row r < S*CW is (sample ga*S + r / CW, patch ci*CW + r % CW); columns likewise with
// (gb, cj). A block of LKR_THREADS = 16 x 16 threads computes a panel as a small GEMM over M
// (k-chunks staged k-major in shared memory), each thread a 4 x 4 micro-tile, rows
// ty*4 .. ty*4+3 and columns tx*4 .. tx*4+3, read from shared memory as 16-byte vectors (two
// vector loads per k for 16 FMAs, so the dot products are not bound by shared-memory
// bandwidth). Both sides of a micro-tile lie in one sample each, so every thread serves one
// (mu, nu) pair per panel. The NNGP map and the weights are applied in registers; the
// 4-index tensor is never stored (except by lkr_full_*).
//
// Precision: dot products in T (as the C++ path); sums over many terms in double. In float32
// the 16 entries of a micro-tile are summed in float first, because a float -> double
// conversion runs at 1/8 of the FMA rate on recent GPUs and one per entry would cost more
// than the dot product.
// NVRTC compatibility: no host headers; see lkr_common.cuh.
#include "lkr_common.cuh"

#define LKR_TM 4
#define LKR_TX 16
#define LKR_TILE 64      // LKR_TM * LKR_TX
#define LKR_THREADS 256  // LKR_TX * LKR_TX
#define LKR_LD                                                                                     \
  (LKR_TILE + 4)  // leading dimension of the staged chunks: rows stay 16-byte
                  // aligned, and the k-major stores spread over the banks
// K_R is the hot path of the solvers: in float32, capping it at 128 registers (2 blocks of
// 256 threads per SM) keeps it free of spills on sm_90 (nvcc -Xptxas -v); in float64 the
// cap would spill.
#define LKR_RK_MIN_BLOCKS(T) (sizeof(T) == 4 ? 2 : 1)

namespace lkr_cuda {

// k-chunk: 64 bytes of a row per stage (16 floats or 8 doubles), so the staging buffers of
// G plus its 32 KB accumulator fit the 48 KB of static shared memory in both precisions.
template <class T>
struct Kc {
  static constexpr int value = 64 / (int)sizeof(T);
};

// Four consecutive T as one aligned object: the compiler emits 16-byte shared loads.
template <class T>
struct __align__(16) Quad {
  T v[4];
};

template <class T>
__device__ __forceinline__ void load4(const T* p, T (&out)[LKR_TM]) {
  const Quad<T> q = *reinterpret_cast<const Quad<T>*>(p);
#pragma unroll
  for (int t = 0; t < LKR_TM; ++t) out[t] = q.v[t];
}

struct Panels {
  long long PNp, M, CW, S, nchunks;
};

// Where panel row (or column) r lands: group-local sample a and chunk-local patch io. The
// mapping depends on neither the chunk nor the group, only validity does, so each thread
// computes its slots once (integer division by a run-time CW is not cheap on a GPU).
struct Slot {
  int a, io;
  __device__ __forceinline__ Slot() : a(0), io(0) {}
  __device__ __forceinline__ Slot(int r, int CW) : a(r / CW), io(r - (r / CW) * CW) {}
};

// The LKR_TILE x KC elements a block stages per k-chunk, STAGE per thread: element
// e = tid + LKR_THREADS q is (row e / KC, column e % KC), so consecutive threads read
// consecutive k of one row and the global reads are coalesced.
template <class T>
struct StageMap {
  static constexpr int KC = Kc<T>::value;
  static constexpr int STAGE = LKR_TILE * KC / LKR_THREADS;
  Slot slot[STAGE];
  int r[STAGE], k[STAGE];
  __device__ __forceinline__ explicit StageMap(int CW) {
#pragma unroll
    for (int q = 0; q < STAGE; ++q) {
      const int e = (int)threadIdx.x + LKR_THREADS * q;
      r[q] = e / KC;
      k[q] = e - r[q] * KC;
      slot[q] = Slot(r[q], CW);
    }
  }
};

// Stage columns [k0, k0 + kc) of the panel's LKR_TILE rows (group g, chunk c) into
// sX[k][r] (k-major; zeros outside the valid rows and columns).
template <class T>
__device__ __forceinline__ void stage_chunk(const T* __restrict__ z, long long P, long long g,
                                            long long c, const Panels& p, const StageMap<T>& sm,
                                            long long k0, int kc, T* __restrict__ sX) {
#pragma unroll
  for (int q = 0; q < StageMap<T>::STAGE; ++q) {
    const long long mu = g * p.S + sm.slot[q].a, i = c * p.CW + sm.slot[q].io;
    T v = T(0);
    if (sm.k[q] < kc && sm.slot[q].a < p.S && mu < P && i < p.PNp)
      v = z[(mu * p.PNp + i) * p.M + k0 + sm.k[q]];
    sX[sm.k[q] * LKR_LD + sm.r[q]] = v;
  }
}

// u[ii][jj] = z_row . z_col for the thread's micro-tile of panel (ga, ci) x (gb, cj).
// Leaves the staging buffers free (ends on a barrier).
template <class T>
__device__ __forceinline__ void panel_dots(const T* __restrict__ za, long long Pa,
                                           const T* __restrict__ zb, long long Pb, long long ga,
                                           long long gb, long long ci, long long cj,
                                           const Panels& p, const StageMap<T>& sm, T* sA, T* sB,
                                           T (&u)[LKR_TM][LKR_TM]) {
  constexpr int KC = Kc<T>::value;
  const int tx = threadIdx.x % LKR_TX, ty = threadIdx.x / LKR_TX;
#pragma unroll
  for (int ii = 0; ii < LKR_TM; ++ii)
#pragma unroll
    for (int jj = 0; jj < LKR_TM; ++jj) u[ii][jj] = T(0);
  for (long long k0 = 0; k0 < p.M; k0 += KC) {
    const int kc = (int)(p.M - k0 < KC ? p.M - k0 : KC);
    stage_chunk<T>(za, Pa, ga, ci, p, sm, k0, kc, sA);
    stage_chunk<T>(zb, Pb, gb, cj, p, sm, k0, kc, sB);
    __syncthreads();
    for (int k = 0; k < kc; ++k) {
      T a[LKR_TM], b[LKR_TM];
      load4<T>(sA + k * LKR_LD + ty * LKR_TM, a);
      load4<T>(sB + k * LKR_LD + tx * LKR_TM, b);
#pragma unroll
      for (int ii = 0; ii < LKR_TM; ++ii)
#pragma unroll
        for (int jj = 0; jj < LKR_TM; ++jj) u[ii][jj] += a[ii] * b[jj];
    }
    __syncthreads();
  }
}

// ---- K_R ---------------------------------------------------------------------------------
// One block per pair of groups (upper triangle when sym); it loops over all chunk pairs and
// writes the S x S block of K_R it owns: no atomics, every element written by one block, in
// a fixed order (deterministic).
template <class T, int ACT>
__device__ void renormalized_body(const T* __restrict__ za, const T* __restrict__ sa,
                                  const T* __restrict__ zb, const T* __restrict__ sb,
                                  const T* __restrict__ Q, T* __restrict__ out, long long Pa,
                                  long long Pb, Panels p, long long npairs, int sym, double norm) {
  // Staging (2 x KC x LKR_LD of T = 8.5 KB), then the reduction (2 x 256 doubles).
  __shared__ __align__(16) double raw[2 * Kc<double>::value * LKR_LD];
  static_assert(sizeof(raw) >= 2 * Kc<T>::value * LKR_LD * sizeof(T), "staging");
  static_assert(sizeof(raw) >= 2 * LKR_TX * LKR_TX * sizeof(double), "reduction");
  const long long bid = block_id();
  if (bid >= npairs) return;  // the whole block: the grid is rounded up
  const long long na = (Pa + p.S - 1) / p.S, nb = (Pb + p.S - 1) / p.S;
  long long ga, gb;
  decode_pair(bid, na, nb, sym, ga, gb);
  T* sA = reinterpret_cast<T*>(raw);
  T* sB = sA + Kc<T>::value * LKR_LD;
  const int tx = threadIdx.x % LKR_TX, ty = threadIdx.x / LKR_TX;
  const StageMap<T> sm((int)p.CW);
  const Slot rs(ty * LKR_TM, (int)p.CW), cs(tx * LKR_TM, (int)p.CW);
  const long long mu = ga * p.S + rs.a, nu = gb * p.S + cs.a;
  const bool pair_ok = rs.a < p.S && mu < Pa && cs.a < p.S && nu < Pb;

  // This thread's share of K_R[mu][nu] (its micro-tiles all lie in that one pair).
  double racc = 0.0;
  T u[LKR_TM][LKR_TM];
  for (long long ci = 0; ci < p.nchunks; ++ci) {
    for (long long cj = 0; cj < p.nchunks; ++cj) {
      panel_dots<T>(za, Pa, zb, Pb, ga, gb, ci, cj, p, sm, sA, sB, u);
      const long long i0 = ci * p.CW + rs.io, j0 = cj * p.CW + cs.io;
      // (i0 < PNp implies i0 + LKR_TM - 1 < PNp: both are multiples of LKR_TM.)
      if (!pair_ok || i0 >= p.PNp || j0 >= p.PNp) continue;
      T s_row[LKR_TM], s_col[LKR_TM];
#pragma unroll
      for (int t = 0; t < LKR_TM; ++t) {
        s_row[t] = ACT == LKR_ACT_RELU ? sa[mu * p.PNp + i0 + t] : T(1);
        s_col[t] = ACT == LKR_ACT_RELU ? sb[nu * p.PNp + j0 + t] : T(1);
      }
      T acc = T(0);
#pragma unroll
      for (int ii = 0; ii < LKR_TM; ++ii) {
        T q[LKR_TM];
        load4<T>(Q + (i0 + ii) * p.PNp + j0, q);  // 16-byte aligned: PNp, j0 multiples of 4
        T row = T(0);
#pragma unroll
        for (int jj = 0; jj < LKR_TM; ++jj) row += q[jj] * s_col[jj] * map_F<ACT, T>(u[ii][jj]);
        acc += s_row[ii] * row;
      }
      racc += double(acc);
    }
  }

  // Reduce over the threads of each pair (a, b): thread rows ty in [a CW/4, (a+1) CW/4) and
  // columns tx in [b CW/4, (b+1) CW/4). red1[ty][tx] -> red2[a][tx] -> K_R. The staging
  // buffers are free (panel_dots ends on a barrier).
  double* red1 = raw;                    // [LKR_TX][LKR_TX]
  double* red2 = raw + LKR_TX * LKR_TX;  // [S <= LKR_TX][LKR_TX]
  red1[ty * LKR_TX + tx] = racc;
  __syncthreads();
  const int per = (int)(p.CW / LKR_TM) < LKR_TX ? (int)(p.CW / LKR_TM) : LKR_TX;  // per sample
  for (int e = threadIdx.x; e < (int)p.S * LKR_TX; e += LKR_THREADS) {
    const int a = e / LKR_TX, c = e - (e / LKR_TX) * LKR_TX;
    double s = 0.0;
    for (int t = a * per; t < (a + 1) * per; ++t) s += red1[t * LKR_TX + c];
    red2[a * LKR_TX + c] = s;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < (int)(p.S * p.S); e += LKR_THREADS) {
    const int a = e / (int)p.S, b = e - (e / (int)p.S) * (int)p.S;
    const long long m = ga * p.S + a, n = gb * p.S + b;
    if (m >= Pa || n >= Pb) continue;
    double s = 0.0;
    for (int c = b * per; c < (b + 1) * per; ++c) s += red2[a * LKR_TX + c];
    const T v = T(s * norm);
    if (!sym) {
      out[m * Pb + n] = v;
    } else if (ga != gb || n >= m) {  // each unordered pair once, mirrored: exactly symmetric
      out[m * Pb + n] = v;
      out[n * Pb + m] = v;
    }
  }
}

// ---- G(W) --------------------------------------------------------------------------------
// Blocks own a chunk pair (ci, cj) and a strided share of the pairs of groups; the (i, j)
// entries of a thread's micro-tile do not change over them, so each thread accumulates its
// 16 entries in a slice of a shared double array that only it touches (no atomics): in
// float32 through float partial sums flushed every LKR_FLUSH group pairs. At the end the
// block sums over the samples stacked in a panel and adds its CW x CW partial G to H, one
// atomicAdd per element. With sym (Y is X, W symmetric) only the upper triangle of group
// pairs is visited, diagonal ones at half weight, and the caller forms G = H + H^T.
template <class T>
struct Flush {
  static constexpr int every = sizeof(T) == 4 ? 16 : 1;
};

template <class T, int ACT>
__device__ void adjoint_body(const T* __restrict__ za, const T* __restrict__ sa,
                             const T* __restrict__ zb, const T* __restrict__ sb,
                             const T* __restrict__ W, double* __restrict__ H, long long Pa,
                             long long Pb, Panels p, long long npairs, long long nsplit, int sym) {
  __shared__ __align__(16) double stage[2 * Kc<double>::value * LKR_LD];
  __shared__ double gacc[LKR_TILE * LKR_TILE];  // [panel row][panel column]
  static_assert(sizeof(stage) >= 2 * Kc<T>::value * LKR_LD * sizeof(T), "staging");
  const long long bid = block_id();
  const long long nc2 = p.nchunks * p.nchunks;
  if (bid >= nc2 * nsplit) return;
  const long long cpair = bid % nc2, split = bid / nc2;
  const long long ci = cpair / p.nchunks, cj = cpair - (cpair / p.nchunks) * p.nchunks;
  const long long na = (Pa + p.S - 1) / p.S, nb = (Pb + p.S - 1) / p.S;
  T* sA = reinterpret_cast<T*>(stage);
  T* sB = sA + Kc<T>::value * LKR_LD;
  const int tx = threadIdx.x % LKR_TX, ty = threadIdx.x / LKR_TX;
  const StageMap<T> sm((int)p.CW);
  const Slot rs(ty * LKR_TM, (int)p.CW), cs(tx * LKR_TM, (int)p.CW);
  const long long i0 = ci * p.CW + rs.io, j0 = cj * p.CW + cs.io;
  const bool tile_ok = rs.a < p.S && i0 < p.PNp && cs.a < p.S && j0 < p.PNp;
  double* mine = gacc + (ty * LKR_TM) * LKR_TILE + tx * LKR_TM;  // + ii * LKR_TILE + jj
#pragma unroll
  for (int ii = 0; ii < LKR_TM; ++ii)
#pragma unroll
    for (int jj = 0; jj < LKR_TM; ++jj) mine[ii * LKR_TILE + jj] = 0.0;

  T part[LKR_TM][LKR_TM];
#pragma unroll
  for (int ii = 0; ii < LKR_TM; ++ii)
#pragma unroll
    for (int jj = 0; jj < LKR_TM; ++jj) part[ii][jj] = T(0);
  int pending = 0;
  T u[LKR_TM][LKR_TM];
  for (long long gp = split; gp < npairs; gp += nsplit) {
    long long ga, gb;
    decode_pair(gp, na, nb, sym, ga, gb);
    panel_dots<T>(za, Pa, zb, Pb, ga, gb, ci, cj, p, sm, sA, sB, u);
    const long long mu = ga * p.S + rs.a, nu = gb * p.S + cs.a;
    if (tile_ok && mu < Pa && nu < Pb) {
      const T w = T((sym && ga == gb) ? 0.5 : 1.0) * W[mu * Pb + nu];
      T s_row[LKR_TM], s_col[LKR_TM];
#pragma unroll
      for (int t = 0; t < LKR_TM; ++t) {
        s_row[t] = ACT == LKR_ACT_RELU ? w * sa[mu * p.PNp + i0 + t] : w;
        s_col[t] = ACT == LKR_ACT_RELU ? sb[nu * p.PNp + j0 + t] : T(1);
      }
#pragma unroll
      for (int ii = 0; ii < LKR_TM; ++ii)
#pragma unroll
        for (int jj = 0; jj < LKR_TM; ++jj)
          part[ii][jj] += s_row[ii] * s_col[jj] * map_F<ACT, T>(u[ii][jj]);
      ++pending;
    }
    if (pending == Flush<T>::every) {
#pragma unroll
      for (int ii = 0; ii < LKR_TM; ++ii)
#pragma unroll
        for (int jj = 0; jj < LKR_TM; ++jj) {
          mine[ii * LKR_TILE + jj] += double(part[ii][jj]);
          part[ii][jj] = T(0);
        }
      pending = 0;
    }
  }
#pragma unroll
  for (int ii = 0; ii < LKR_TM; ++ii)
#pragma unroll
    for (int jj = 0; jj < LKR_TM; ++jj) mine[ii * LKR_TILE + jj] += double(part[ii][jj]);
  __syncthreads();

  // Sum over the S stacked samples of the rows (into row io < CW, in place: row io is read
  // and written only by the thread that owns (io, c)), then of the columns, and add to H.
  for (int e = threadIdx.x; e < (int)p.CW * LKR_TILE; e += LKR_THREADS) {
    const int io = e / LKR_TILE, c = e - (e / LKR_TILE) * LKR_TILE;
    double s = 0.0;
    for (int a = 0; a < (int)p.S; ++a) s += gacc[(a * (int)p.CW + io) * LKR_TILE + c];
    gacc[io * LKR_TILE + c] = s;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < (int)(p.CW * p.CW); e += LKR_THREADS) {
    const int io = e / (int)p.CW, jo = e - (e / (int)p.CW) * (int)p.CW;
    const long long i = ci * p.CW + io, j = cj * p.CW + jo;
    if (i >= p.PNp || j >= p.PNp) continue;
    double s = 0.0;
    for (int b = 0; b < (int)p.S; ++b) s += gacc[io * LKR_TILE + b * (int)p.CW + jo];
    atomicAdd(H + i * p.PNp + j, s);
  }
}

// ---- the materialised tensor -------------------------------------------------------------
// out (Pa, Pb, Np, Np) with the unpadded Np; one block per pair of groups, all chunk pairs.
template <class T, int ACT>
__device__ void full_body(const T* __restrict__ za, const T* __restrict__ sa,
                          const T* __restrict__ zb, const T* __restrict__ sb, T* __restrict__ out,
                          long long Pa, long long Pb, long long Np, Panels p, long long npairs) {
  __shared__ __align__(16) double raw[2 * Kc<double>::value * LKR_LD];
  static_assert(sizeof(raw) >= 2 * Kc<T>::value * LKR_LD * sizeof(T), "staging");
  const long long bid = block_id();
  if (bid >= npairs) return;
  long long ga, gb;
  decode_pair(bid, 0, (Pb + p.S - 1) / p.S, 0, ga, gb);
  T* sA = reinterpret_cast<T*>(raw);
  T* sB = sA + Kc<T>::value * LKR_LD;
  const int tx = threadIdx.x % LKR_TX, ty = threadIdx.x / LKR_TX;
  const StageMap<T> sm((int)p.CW);
  const Slot rs(ty * LKR_TM, (int)p.CW), cs(tx * LKR_TM, (int)p.CW);
  const long long mu = ga * p.S + rs.a, nu = gb * p.S + cs.a;
  const bool pair_ok = rs.a < p.S && mu < Pa && cs.a < p.S && nu < Pb;
  T u[LKR_TM][LKR_TM];
  for (long long ci = 0; ci < p.nchunks; ++ci) {
    for (long long cj = 0; cj < p.nchunks; ++cj) {
      panel_dots<T>(za, Pa, zb, Pb, ga, gb, ci, cj, p, sm, sA, sB, u);
      const long long i0 = ci * p.CW + rs.io, j0 = cj * p.CW + cs.io;
      if (!pair_ok) continue;
      T* o = out + (mu * Pb + nu) * Np * Np;
#pragma unroll
      for (int ii = 0; ii < LKR_TM; ++ii) {
        const long long i = i0 + ii;
        if (i >= Np) continue;  // padded rows and columns are not stored
        const T s_row = ACT == LKR_ACT_RELU ? sa[mu * p.PNp + i] : T(1);
#pragma unroll
        for (int jj = 0; jj < LKR_TM; ++jj) {
          const long long j = j0 + jj;
          if (j >= Np) continue;
          const T s_col = ACT == LKR_ACT_RELU ? sb[nu * p.PNp + j] : T(1);
          o[i * Np + j] = s_row * s_col * map_F<ACT, T>(u[ii][jj]);
        }
      }
    }
  }
}

// ---- K_R(x, x) ---------------------------------------------------------------------------
// One block per sample: O(Np^2 M) per sample, rows read straight from global memory (they
// are a few KB and stay in L1). Q padded, stride PNp.
template <class T, int ACT>
__device__ void diag_body(const T* __restrict__ z, const T* __restrict__ s, const T* __restrict__ Q,
                          T* __restrict__ out, long long P, long long Np, long long PNp,
                          long long M, double norm) {
  __shared__ double red[LKR_THREADS];
  const long long mu = block_id();
  if (mu >= P) return;
  const T* zm = z + mu * PNp * M;
  double acc = 0.0;
  for (long long e = threadIdx.x; e < Np * Np; e += LKR_THREADS) {
    const long long i = e / Np, j = e - (e / Np) * Np;
    const T* zi = zm + i * M;
    const T* zj = zm + j * M;
    T u = T(0);
    for (long long k = 0; k < M; ++k) u += zi[k] * zj[k];
    const T sij = ACT == LKR_ACT_RELU ? s[mu * PNp + i] * s[mu * PNp + j] : T(1);
    acc += double(Q[i * PNp + j]) * double(sij * map_F<ACT, T>(u));
  }
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int h = LKR_THREADS / 2; h > 0; h /= 2) {
    if ((int)threadIdx.x < h) red[threadIdx.x] += red[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[mu] = T(red[0] * norm);
}

// ---- preparation and the FC map ----------------------------------------------------------
// One thread per padded row (mu, i): z = x * scale (computed in double, as the C++ path),
// s the relu amplitude (1 otherwise); padded rows get z = 0 and s = 0.
template <class T, int ACT>
__device__ void prepare_body(const T* __restrict__ x, T* __restrict__ z, T* __restrict__ s,
                             long long P, long long Np, long long PNp, long long M, double norm) {
  const long long nrows = P * PNp;
  const long long stride = (long long)gridDim.x * (long long)gridDim.y * blockDim.x;
  for (long long row = block_id() * blockDim.x + threadIdx.x; row < nrows; row += stride) {
    const long long mu = row / PNp, i = row - (row / PNp) * PNp;
    T* zr = z + row * M;
    if (i >= Np) {
      for (long long k = 0; k < M; ++k) zr[k] = T(0);
      s[row] = T(0);
      continue;
    }
    const T* xr = x + (mu * Np + i) * M;
    // Scaled by 2^-e (e: the exponent of the row's largest entry) before squaring, so that
    // |x|^2 cannot overflow; exact in powers of two, as lkr::prepared_factors (activations.hpp).
    double amax = 0.0;
    for (long long k = 0; k < M; ++k) amax = fmax(amax, fabs(double(xr[k])));
    int e = 0;
    if (amax > 0.0) frexp(amax, &e);
    // 2^-e as two normal factors, so that x * h1 * h2 is exact (as the C++ path)
    const double h1 = ldexp(1.0, -(e / 2)), h2 = ldexp(1.0, -(e - e / 2));
    double sq = 0.0;  // |x 2^-e|^2
    for (long long k = 0; k < M; ++k) {
      const double v = double(xr[k]) * h1 * h2;
      sq += v * v;
    }
    double scale, amp = 1.0;
    if (ACT == LKR_ACT_LINEAR) {
      scale = ldexp(sqrt(norm), e);
    } else if (ACT == LKR_ACT_ERF) {
      scale = sqrt(2.0 * norm / (ldexp(1.0, -2 * e) + 2.0 * norm * sq));
    } else {
      scale = sq > 0.0 ? 1.0 / sqrt(sq) : 0.0;
      amp = ldexp(sqrt(sq * norm), e);
    }
    for (long long k = 0; k < M; ++k) zr[k] = T(double(xr[k]) * h1 * h2 * scale);
    s[row] = T(amp);
  }
}

// In place K[m, n] <- K_sigma(dx[m], K[m, n], dy[n]); grid-stride over the P x P2 entries.
template <class T, int ACT>
__device__ void nngp_body(T* __restrict__ K, const T* __restrict__ dx, const T* __restrict__ dy,
                          long long P, long long P2) {
  const long long n = P * P2;
  const long long stride = (long long)gridDim.x * (long long)gridDim.y * blockDim.x;
  for (long long e = block_id() * blockDim.x + threadIdx.x; e < n; e += stride) {
    const long long m = e / P2, c = e - (e / P2) * P2;
    K[e] = nngp_map<ACT, T>(dx[m], K[e], dy[c]);
  }
}

}  // namespace lkr_cuda

// ---- entry points: extern "C" (unmangled names for RawModule), one per dtype and map ------
#define LKR_DEFINE_ACT(T, SUF, ACT, ACTNAME)                                                       \
  extern "C" __global__ void __launch_bounds__(LKR_THREADS)                                        \
      lkr_prepare_##ACTNAME##_##SUF(const T* x, T* z, T* s, long long P, long long Np,             \
                                    long long PNp, long long M, double norm) {                     \
    lkr_cuda::prepare_body<T, ACT>(x, z, s, P, Np, PNp, M, norm);                                  \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(LKR_THREADS, LKR_RK_MIN_BLOCKS(T))                  \
      lkr_renormalized_##ACTNAME##_##SUF(                                                          \
          const T* za, const T* sa, const T* zb, const T* sb, const T* Q, T* out, long long Pa,    \
          long long Pb, long long PNp, long long M, long long CW, long long S, long long nchunks,  \
          long long npairs, int sym, double norm) {                                                \
    lkr_cuda::renormalized_body<T, ACT>(za, sa, zb, sb, Q, out, Pa, Pb,                            \
                                        lkr_cuda::Panels{PNp, M, CW, S, nchunks}, npairs, sym,     \
                                        norm);                                                     \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(LKR_THREADS) lkr_adjoint_##ACTNAME##_##SUF(         \
      const T* za, const T* sa, const T* zb, const T* sb, const T* W, double* H, long long Pa,     \
      long long Pb, long long PNp, long long M, long long CW, long long S, long long nchunks,      \
      long long npairs, long long nsplit, int sym) {                                               \
    lkr_cuda::adjoint_body<T, ACT>(za, sa, zb, sb, W, H, Pa, Pb,                                   \
                                   lkr_cuda::Panels{PNp, M, CW, S, nchunks}, npairs, nsplit, sym); \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(LKR_THREADS) lkr_full_##ACTNAME##_##SUF(            \
      const T* za, const T* sa, const T* zb, const T* sb, T* out, long long Pa, long long Pb,      \
      long long Np, long long PNp, long long M, long long CW, long long S, long long nchunks,      \
      long long npairs) {                                                                          \
    lkr_cuda::full_body<T, ACT>(za, sa, zb, sb, out, Pa, Pb, Np,                                   \
                                lkr_cuda::Panels{PNp, M, CW, S, nchunks}, npairs);                 \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(LKR_THREADS)                                        \
      lkr_diag_##ACTNAME##_##SUF(const T* z, const T* s, const T* Q, T* out, long long P,          \
                                 long long Np, long long PNp, long long M, double norm) {          \
    lkr_cuda::diag_body<T, ACT>(z, s, Q, out, P, Np, PNp, M, norm);                                \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(LKR_THREADS)                                        \
      lkr_nngp_##ACTNAME##_##SUF(T* K, const T* dx, const T* dy, long long P, long long P2) {      \
    lkr_cuda::nngp_body<T, ACT>(K, dx, dy, P, P2);                                                 \
  }

#define LKR_DEFINE_DTYPE(T, SUF)                                                                   \
  LKR_DEFINE_ACT(T, SUF, LKR_ACT_LINEAR, linear)                                                   \
  LKR_DEFINE_ACT(T, SUF, LKR_ACT_ERF, erf)                                                         \
  LKR_DEFINE_ACT(T, SUF, LKR_ACT_RELU, relu)

// lkr._cuda compiles one module per dtype (-DLKR_ONLY_F32 / -DLKR_ONLY_F64); a plain
// compile (the nvcc check in CI) builds both.
#ifndef LKR_ONLY_F64
LKR_DEFINE_DTYPE(float, f32)
#endif
#ifndef LKR_ONLY_F32
LKR_DEFINE_DTYPE(double, f64)
#endif
