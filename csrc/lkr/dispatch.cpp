#include "dispatch.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace lkr {
namespace {

// The best instruction set the CPU has among those the build can target.
Isa cpu_best() {
#if LKR_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return Isa::v4;
  if (__builtin_cpu_supports("x86-64-v3")) return Isa::v3;
#elif LKR_FAST_TARGET
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::v3;
#endif
  return Isa::base;
}

// ... capped by LKR_ISA ("v3" or "base"), which lets the tests run every code path on one
// machine (in a subprocess, for the tile kernels' register blocking chosen per call).
Isa env_limit() {
  const Isa best = cpu_best();
  const char* cap = std::getenv("LKR_ISA");
  if (cap && std::strcmp(cap, "base") == 0) return Isa::base;
  if (cap && std::strcmp(cap, "v3") == 0) return std::min(best, Isa::v3);
  return best;
}

const Isa g_limit = env_limit();
std::atomic<int> g_active{static_cast<int>(g_limit)};

}  // namespace

Isa active_isa() { return static_cast<Isa>(g_active.load(std::memory_order_relaxed)); }

Isa set_isa_cap(Isa cap) {
  return static_cast<Isa>(g_active.exchange(static_cast<int>(std::min(cap, g_limit))));
}

}  // namespace lkr
