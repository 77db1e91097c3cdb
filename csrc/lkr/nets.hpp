// Patch passes of the one-hidden-layer CNN and LCN (docs/theory.md section 2):
//   h_{ai}(x) = w_a . x_i / sqrt(M)   (LCN: w_{ai} . x_i / sqrt(M)),
//   f(x) = (Nc Np)^{-1/2} sum_{a,i} v_{ai} sigma(h_{ai}).
// Forward, vector-Jacobian (gradient) and Jacobian-vector passes for a batch of parameter
// chains, plus the per-sample features the empirical NTK is built from. Pre-activations
// are recomputed, never stored: memory is O(outputs + threads * params of one chain).
//
// Arrays are C-contiguous. Z: patches (P, Np, M), shared by all chains. A chained
// parameter array has a leading chain axis; its chain stride (in elements) is 0 when one
// set of parameters is broadcast over all chains.
#pragma once
#include <cstdint>

#include "activations.hpp"

namespace lkr {

struct PatchNetShape {
  int64_t P = 0, Np = 0, M = 0, Nc = 0;
  bool local = false;  // LCN: W is (Nc, Np, M); CNN: W is (Nc, M)
  int64_t w_size() const { return local ? Nc * Np * M : Nc * M; }
  int64_t v_size() const { return Nc * Np; }
};

// Chained operand: data and chain stride.
template <class T>
struct Chained {
  const T* data = nullptr;
  int64_t stride = 0;
};

// out (C, P): f for every chain and sample.
template <class T>
void patch_forward(const T* Z, const PatchNetShape& s, Chained<T> W, Chained<T> v, int64_t C,
                   Activation act, int nthreads, T* out);

// dW (C, w_size), dv (C, Nc, Np): gradients of sum_p r[c, p] f_c(x_p).
template <class T>
void patch_vjp(const T* Z, const PatchNetShape& s, Chained<T> W, Chained<T> v, Chained<T> r,
               int64_t C, Activation act, int nthreads, T* dW, T* dv);

// f (C, P) and dW (C, w_size), dv (C, Nc, Np): the outputs and the gradients of the loss
// (1/2) sum_p (y[c, p] - f_c(x_p))^2, in one pass (each activation evaluated once).
template <class T>
void patch_value_and_grad(const T* Z, const PatchNetShape& s, Chained<T> W, Chained<T> v,
                          Chained<T> y, int64_t C, Activation act, int nthreads, T* f, T* dW,
                          T* dv);

// out (C, P): J(x_p) t_c for tangents (tW, tv).
template <class T>
void patch_jvp(const T* Z, const PatchNetShape& s, Chained<T> W, Chained<T> v, Chained<T> tW,
               Chained<T> tv, int64_t C, Activation act, int nthreads, T* out);

// NTK features of channels [a0, a1) (nb = a1 - a0), for one set of parameters:
//   S (P, nb, Np) = sigma(h_{ai}) / sqrt(Nc Np)                       (= df/dv)
//   CNN: G (P, nb, M) = sum_i v_{ai} sigma'(h_{ai}) x_i / sqrt(M Nc Np)  (= df/dw_a)
//   LCN: G (P, nb, Np) = v_{ai} sigma'(h_{ai}) / sqrt(M Nc Np)           (df/dw_{ai} = G_{ai} x_i)
// Row p of S starts at S + p * ldS and of G at G + p * ldG, so that both can share one
// (P, nb (Np + M)) buffer whose Gram is then a single GEMM.
template <class T>
void patch_features(const T* Z, const PatchNetShape& s, const T* W, const T* v, int64_t a0,
                    int64_t a1, Activation act, int nthreads, T* S, int64_t ldS, T* G, int64_t ldG);

// Elementwise s = sigma(h) and, when d is not null, d = sigma'(h) for n values (the
// hidden layers of the FC nets; one pass instead of NumPy's several, threaded).
template <class T>
void activation_pair(const T* h, int64_t n, Activation act, int nthreads, T* s, T* d);

// Use the AVX2/FMA variants with the vectorised erf/exp when the CPU has them (the
// default), or the baseline ones with libm; returns the previous setting. For tests: it is
// set_isa_cap (dispatch.hpp), so it switches the local-kernel tiles to the baseline too.
bool set_fast_math(bool enabled);

}  // namespace lkr
