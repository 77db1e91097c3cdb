// The Langevin update with its Gaussian noise, in one pass:
//   a[i] <- decay a[i] - lr g[i] + amp xi[i],   xi[i] ~ N(0, 1),
// with xi from a counter-based generator, so that xi[i] is a function of (key, stream, step, i)
// only: the same numbers for any thread count and any split of the work.
//
// Generator: Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy
// as 1, 2, 3", SC 2011; passes TestU01's BigCrush), counter (block, step, stream), key
// from the seed. Normals by the Box-Muller transform on the uniform pair (u, v) of a block:
// r = sqrt(-2 ln u), angle 2 pi v, giving two normals r cos, r sin. float: 24-bit uniforms,
// 4 normals per block; double: 52-bit u and angle, 2 normals per block. ln, sin and
// cos are branch-free polynomials (below 1 ulp in the range used) so that the loops
// vectorise; see noise.cpp.
//
// Element i of a parameter lies in chunk c = i / (slots * 1024) and takes normal number
// j = (i mod chunk) / 1024 of block c * 1024 + (i mod 1024) (contiguous runs per slot).
#pragma once
#include <cstdint>

namespace lkr {

template <class T>
void langevin_update(T* a, const T* g, int64_t n, T decay, T lr, T amp, uint64_t key,
                     uint32_t stream, uint64_t step, int nthreads);

// xi[i] for i in [0, n) (the noise alone, for the tests).
template <class T>
void philox_normals(T* out, int64_t n, uint64_t key, uint32_t stream, uint64_t step);

}  // namespace lkr
