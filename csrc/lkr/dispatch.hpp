// Run-time dispatch shared by the compiled kernels: the instruction set the hot loops run
// with, the compiler attributes that build them per instruction set, and the activation as
// a compile-time constant.
//
// Hot loops are compiled for AVX-512 (x86-64-v4), AVX2+FMA (x86-64-v3) and the baseline,
// and picked at run time, so the default build stays portable without -march=native.
#pragma once
#include <cstdint>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "activations.hpp"

// LKR_DISPATCH: GCC on x86-64, which has target_clones and arch= targets (the local-kernel
// tiles). LKR_FAST_TARGET: any GCC-compatible x86 compiler, which can build a function for
// AVX2+FMA (the network passes). LKR_NO_CLONES turns both off.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LKR_NO_CLONES)
#define LKR_DISPATCH 1
#define LKR_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define LKR_TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define LKR_TARGET_V3 __attribute__((target("arch=x86-64-v3")))
#else
#define LKR_DISPATCH 0
#define LKR_HOT
#endif
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) &&     \
    !defined(LKR_NO_CLONES)
#define LKR_FAST_TARGET 1
#define LKR_TARGET_FAST __attribute__((target("avx2,fma")))
#else
#define LKR_FAST_TARGET 0
#define LKR_TARGET_FAST
#endif
// Helpers of the hot loops must inline into each per-ISA variant to get its instruction set.
#if defined(__GNUC__) || defined(__clang__)
#define LKR_INLINE inline __attribute__((always_inline))
#else
#define LKR_INLINE inline
#endif

namespace lkr {

// v3 = AVX2 + FMA (x86-64-v3), v4 = AVX-512 (x86-64-v4); ordered, so isa >= Isa::v3 asks
// for at least AVX2.
enum class Isa { base = 0, v3 = 1, v4 = 2 };

// The instruction set the kernels run with: the best the CPU has, capped by the environment
// variable LKR_ISA ("v3" or "base", read once) and by set_isa_cap. Cheap (a relaxed atomic
// load): the network passes ask once per sample.
Isa active_isa();

// The one test switch: cap the instruction set (never above what the CPU has, nor above
// LKR_ISA); returns the previous setting. set_fast_math (nets.hpp) is this with v4 or base.
Isa set_isa_cap(Isa cap);

template <Activation A>
using ActTag = std::integral_constant<Activation, A>;

// Call f with the activation as a compile-time constant (ActTag<A>), so that the inner loops
// of linear and relu vectorise and none of them branches on the activation per element.
template <class F>
void with_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::linear: f(ActTag<Activation::linear>{}); break;
    case Activation::erf: f(ActTag<Activation::erf>{}); break;
    case Activation::relu: f(ActTag<Activation::relu>{}); break;
  }
}

// OpenMP threads for a call: n > 0 as given, else all (1 without OpenMP).
inline int omp_threads(int n) {
#ifdef _OPENMP
  return n > 0 ? n : omp_get_max_threads();
#else
  (void)n;
  return 1;
#endif
}

// Threads for a pass of `work` elements or multiply-adds: one below ~64k, where waking the
// pool costs more than the pass (much more on an oversubscribed machine).
inline int omp_threads_for(int n, int64_t work) {
  return work < (int64_t(1) << 16) ? 1 : omp_threads(n);
}

}  // namespace lkr
