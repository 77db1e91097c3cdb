// The multi-layer local kernel of a deep CNN (docs/deep-cnn.md section 4):
//
//   C1_pq(mu, nu)      = x_p^mu . x_q^nu / (lambda0 M1)               (layer-1 patches p, q)
//   K_l,pq(mu, nu)     = K_sigma(C_l,pp(mu, mu), C_l,pq(mu, nu), C_l,qq(nu, nu))
//   C_{l+1},pq(mu, nu) = norm_{l+1} sum_t K_l,w_p(t) w_q(t)(mu, nu),  norm_{l+1} = 1 / (k_{l+1} lambda_l)
//
// where w_p(t) is the t-th position of window p of layer l+1 in layer l's output grid (the
// same offset t on both sides); a padded position contributes 0. The final blocks K_L,ij are
// consumed as the one-layer kernels consume K_ij: materialised, contracted with Q (K_R), on
// the diagonal, weighted by W (the adjoint G), or packed for the theories' stored kernel.
//
// Only the position pairs of a plan are computed (docs/deep-cnn.md section 4, "the pair
// plan"): the final pairs the readout needs (all d^2 for a dense Q, the d diagonal ones for a
// diagonal Q) and, layer by layer downwards, the pairs (w_p(t), w_q(t)) these read. The plan
// is built once per geometry and Q pattern (python/lkr/deep_geometry.py), ordered in chunks
// of whole connected components: a chunk's pairs read only pairs of the same chunk below.
//
// Streaming: tiles of sample pairs (a few A samples times one register panel of B samples)
// run in parallel (OpenMP); per tile and chunk, every layer's pair blocks are vectors over
// the tile's sample pairs, held in per-thread buffers of O(chunk pairs x tile). Memory is
// O(output + P n_1 M1 + threads x chunk x tile), never the P^2 x positions^2 tensor. Results
// do not depend on the thread count. float32 inputs compute in float32 and sum the
// contractions in float64 (per chunk in float32 first).
#pragma once
#include <cstdint>
#include <vector>

#include "activations.hpp"
#include "views.hpp"

namespace lkr {

// Layer l >= 2: index (n_out, k) of positions in the previous grid (n_in for padding); it
// drives each sample's own variance recursion (the map factors of every layer).
struct DeepLayer {
  int64_t n_in = 0, n_out = 0, k = 0;
  const int32_t* index = nullptr;
  double norm = 1.0;  // 1 / (k lambda_{l-1})
};

// The position pairs computed at one layer (level 0 = layer 1).
struct DeepLevel {
  int64_t npairs = 0;
  const int32_t* pairs = nullptr;   // (npairs, 2): positions (p, q) of the layer's grid
  const int32_t* gather = nullptr;  // levels >= 1: (npairs, k) indices of the pairs below
                                    // read at offsets t; npairs of the level below = padding
};

struct DeepPlan {
  std::vector<DeepLevel> levels;    // one per layer; the last holds the final pairs (i, j)
  const int64_t* chunks = nullptr;  // (nchunks + 1, L): chunk c holds pairs
  int64_t nchunks = 0;              // [chunks[c L + l], chunks[(c + 1) L + l]) of level l
};

struct DeepParams {
  Activation activation = Activation::erf;
  double lambda0 = 1.0;
  // Layer 1 reads the flattened inputs (P, n0) through index1 (n1, m1): entry k of patch p is
  // x[index1[p m1 + k]], n0 for a padded entry (reads 0); so no (P, n1, m1) patch tensor.
  const int32_t* index1 = nullptr;
  int64_t n0 = 0, n1 = 0, m1 = 0;
  std::vector<DeepLayer> layers;  // layers 2..L (empty: the one-layer kernel)
  DeepPlan plan;
  int nthreads = 0;
};

// Throws std::invalid_argument when the layer-1 index or the plan does not fit the layers
// (indices out of range, a gather reaching outside its chunk).
void check_deep_plan(const DeepParams& p);

// A, B: flattened inputs (P, n0), (P2, n0) as strided views.
// out (P, P2, d, d): the final blocks K_L (entries outside the plan are 0). B may be null.
template <class T>
void deep_local_kernel(const View2<T>& A, const View2<T>* B, const DeepParams& p, T* out);

// out (P, P2): K_R(Q) = (1 / (lambdaL d)) sum_ij Q_ij K_L,ij over the plan's final pairs.
// Q (d, d) C-contiguous symmetric.
template <class T>
void deep_renormalized_kernel(const View2<T>& A, const View2<T>* B, const T* Q, double lambdaL,
                              const DeepParams& p, T* out);

// out (P,): K_R(Q)^{mu mu}.
template <class T>
void deep_renormalized_kernel_diag(const View2<T>& A, const T* Q, double lambdaL,
                                   const DeepParams& p, T* out);

// out (d, d): G(W)_ij = sum_{mu nu} W_{mu nu} K_L,ij^{mu nu} on the plan's final pairs (0
// elsewhere). With B null and w_symmetric each unordered pair of samples is visited once.
template <class T>
void deep_local_kernel_adjoint(const View2<T>& A, const View2<T>* B, const View2<T>& W,
                               bool w_symmetric, const DeepParams& p, T* out);

// out (P (P + 1) / 2, ncols): the stored kernel of the theories (as pack_compressed of
// local_kernel_multi.hpp): row mu P - mu (mu - 1) / 2 + nu - mu for mu <= nu, and the final
// pair e = (i, j) adds K_L,ij into column cols[e] (so that a column of i < j holds
// K_ij + K_ji and one of i = j holds K_ii).
template <class T>
void deep_pack_compressed(const View2<T>& A, const int32_t* cols, int64_t ncols,
                          const DeepParams& p, T* out);

}  // namespace lkr
