// The multi-layer local kernel of a deep CNN (docs/deep-cnn.md section 4):
//
//   C1_pq(mu, nu)      = x_p^mu . x_q^nu / (lambda0 M1)               (layer-1 patches p, q)
//   K_l,pq(mu, nu)     = K_sigma(C_l,pp(mu, mu), C_l,pq(mu, nu), C_l,qq(nu, nu))
//   C_{l+1},pq(mu, nu) = norm_{l+1} sum_t K_l,w_p(t) w_q(t)(mu, nu),  norm_{l+1} = 1 / (k_{l+1} lambda_l)
//
// where w_p(t) is the t-th position of window p of layer l+1 in layer l's output grid (the
// same offset t on both sides); a padded position contributes 0. The final blocks K_L,ij
// (d x d per sample pair) are consumed as the one-layer kernels consume K_ij: materialised,
// contracted with Q (K_R), on the diagonal, or weighted by W (the adjoint G).
//
// Streaming: tiles of sample pairs run in parallel (OpenMP); each pair computes all position
// pairs of every layer in per-thread buffers of O(sum_l n_l^2) and hands its d x d block to
// the consumer at once, so memory is O(output + threads x (tile + sum_l n_l^2)), never the
// P^2 x positions^2 tensor. Results do not depend on the thread count. float32 inputs compute
// in float32 and sum the contractions in float64.
#pragma once
#include <cstdint>
#include <vector>

#include "activations.hpp"
#include "views.hpp"

namespace lkr {

// Layer l >= 2: index (n_out, k) of positions in the previous grid (n_in for padding).
struct DeepLayer {
  int64_t n_in = 0, n_out = 0, k = 0;
  const int32_t* index = nullptr;
  double norm = 1.0;  // 1 / (k lambda_{l-1})
};

struct DeepParams {
  Activation activation = Activation::erf;
  double lambda0 = 1.0;
  std::vector<DeepLayer> layers;  // layers 2..L (empty: the one-layer kernel)
  int nthreads = 0;
};

// out (P, P2, d, d): the final blocks K_L. B may be null (B = A).
template <class T>
void deep_local_kernel(const View3<T>& A, const View3<T>* B, const DeepParams& p, T* out);

// out (P, P2): K_R(Q) = (1 / (lambdaL d)) sum_ij Q_ij K_L,ij. Q (d, d) C-contiguous symmetric.
template <class T>
void deep_renormalized_kernel(const View3<T>& A, const View3<T>* B, const T* Q, double lambdaL,
                              const DeepParams& p, T* out);

// out (P,): K_R(Q)^{mu mu}.
template <class T>
void deep_renormalized_kernel_diag(const View3<T>& A, const T* Q, double lambdaL,
                                   const DeepParams& p, T* out);

// out (d, d): G(W)_ij = sum_{mu nu} W_{mu nu} K_L,ij^{mu nu}.
template <class T>
void deep_local_kernel_adjoint(const View3<T>& A, const View3<T>* B, const View2<T>& W,
                               bool w_symmetric, const DeepParams& p, T* out);

}  // namespace lkr
