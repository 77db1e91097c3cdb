// Internal hook of the local-kernel engine: visit the tensor K_ij^{mu nu} tile by tile.
// The multi-output contractions (local_kernel_multi.cpp) use it to compute each tile once
// and apply it to every output block. Not part of the bindings' surface.
#pragma once
#include <cstdint>
#include <functional>

#include "local_kernel.hpp"

namespace lkr {

struct KernelTile {
  int64_t a0, a1, b0, b1;  // samples [a0, a1) of A against [b0, b1) of B
  int64_t Np;
  bool diagonal_block;  // part of a tile whose two sample blocks coincide (B = A)
  // (a1 - a0, b1 - b0, Np, Np) C-contiguous: k[((mu - a0) nb + nu - b0) Np^2 + i Np + j]
  const void* k;
};

// Calls fn(group, tile) for every row of every tile of sample pairs (one sample of A
// against a block of B: the tile's values, nb Np^2 of them, stay in L2) (only the upper triangle of tiles,
// b0 >= a0, when upper_only; B null means B = A). Tiles are split into `ngroups`
// contiguous groups (0 or more than the tile count: one group per tile); the groups run in
// parallel, the tiles of one group in order on one thread, so per-group accumulators give
// results independent of the thread count. Returns the number of groups used.
template <class T>
int64_t for_each_kernel_tile(const View3<T>& A, const View3<T>* B, const KernelParams& p,
                             bool upper_only, int64_t ngroups,
                             const std::function<void(int64_t, const KernelTile&)>& fn);

}  // namespace lkr
