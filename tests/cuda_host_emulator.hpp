// A minimal host emulation of the CUDA features lkr's kernels use, for tests/cuda_emulator.py: it
// compiles csrc/cuda/*.cu against this header with g++ and drives the kernels through
// lkr._cuda.Engine with NumPy arrays. Blocks run one after another; the threads of a block
// are fibers (ucontext) on one OS thread, switched at __syncthreads: each runs from one
// barrier to the next before the next thread starts, so a missing barrier shows as a read
// of data not yet written, deterministically. __shared__ is a function-local static (one
// block at a time).
#pragma once
#include <math.h>
#include <ucontext.h>
#include <cstddef>
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
namespace lkr_emu {
inline dim3 t_idx, b_idx, b_dim, g_dim;
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  bool done = false;
};
inline ucontext_t scheduler;
inline Fiber* current = nullptr;
inline void (*body)(void*) = nullptr;
inline void* body_arg = nullptr;
inline void sync() { swapcontext(&current->ctx, &scheduler); }
inline void fiber_main() {
  body(body_arg);
  current->done = true;  // returning resumes the scheduler (uc_link)
}
}  // namespace lkr_emu
#define threadIdx lkr_emu::t_idx
#define blockIdx lkr_emu::b_idx
#define blockDim lkr_emu::b_dim
#define gridDim lkr_emu::g_dim
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __syncthreads() lkr_emu::sync()
inline double atomicAdd(double* p, double v) {
  const double old = *p;
  *p = old + v;
  return old;
}
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}
namespace lkr_emu {
template <class... A, std::size_t... I>
void invoke(void (*k)(A...), void** args, std::index_sequence<I...>) {
  k(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}
template <class... A>
struct Call {
  void (*k)(A...);
  void** args;
  static void run(void* self) {
    auto* c = static_cast<Call*>(self);
    invoke(c->k, c->args, std::index_sequence_for<A...>{});
  }
};
template <class... A>
void launch(void (*k)(A...), unsigned gx, unsigned gy, unsigned bx, void** args) {
  g_dim = dim3(gx, gy);
  b_dim = dim3(bx);
  Call<A...> call{k, args};
  body = &Call<A...>::run;
  body_arg = &call;
  static std::vector<Fiber> fibers;  // stacks reused across launches
  if (fibers.size() < bx) fibers.resize(bx);
  for (auto& f : fibers)
    if (f.stack.empty()) f.stack.resize(64 * 1024);
  for (unsigned y = 0; y < gy; ++y)
    for (unsigned x = 0; x < gx; ++x) {
      b_idx = dim3(x, y);
      for (unsigned t = 0; t < bx; ++t) {
        Fiber& f = fibers[t];
        f.done = false;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &scheduler;
        makecontext(&f.ctx, fiber_main, 0);
      }
      // Rounds: every live thread runs up to its next barrier (or its end).
      for (bool live = true; live;) {
        live = false;
        for (unsigned t = 0; t < bx; ++t) {
          Fiber& f = fibers[t];
          if (f.done) continue;
          t_idx = dim3(t);
          current = &f;
          swapcontext(&scheduler, &f.ctx);
          live = live || !f.done;
        }
      }
    }
}
}  // namespace lkr_emu
#define LKR_EMU_EXPORT(name)                                                          \
  extern "C" void emu_##name(unsigned gx, unsigned gy, unsigned bx, void** args) {    \
    lkr_emu::launch(name, gx, gy, bx, args);                                          \
  }
