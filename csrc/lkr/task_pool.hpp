// A small pool of worker threads for the training step (train_step.cpp): one threading
// model for a whole step, made for a machine shared with other processes.
//
// Why not OpenMP regions here: a step is a few short phases (a few ms each), each with a
// BLAS call and an elementwise pass. With OpenMP workers and OpenBLAS's own threads, two
// pools spin for the same cores between the phases; on a loaded machine a spinning thread
// burns the time slice its peer needs, and a static split waits for the slowest
// (descheduled) thread. Here:
//   - tasks are claimed one at a time from a shared counter (a dynamic schedule): when a
//     worker is descheduled, the others take its share instead of waiting for it;
//   - the caller works too, and never waits for a task nobody has claimed;
//   - idle workers sleep on a condition variable after a short spin (passive waiting);
//   - BLAS inside a task runs on the calling thread (the Python layer holds BLAS at one
//     thread during the step, lkr._blas).
// The split of the work into tasks is fixed by the problem's shape (never by the thread
// count), and every sum over tasks is done in task order afterwards, so results are
// bit-identical for any number of threads.
#pragma once
#include <cstdint>
#include <type_traits>

namespace lkr {

// fn(task, slot) for task in [0, ntasks), on min(nthreads, ntasks, usable CPUs) threads
// including the caller (nthreads <= 0: every usable CPU). slot in [0, threads) names the
// thread (0 = the caller), for per-thread scratch. Returns when every task has finished.
// A call made while the pool is busy (another thread's job) runs inline on the caller.
template <class F>
void run_tasks(int nthreads, int64_t ntasks, F&& fn);

// Threads run_tasks would use for `ntasks` tasks (for sizing per-slot scratch).
int task_threads(int nthreads, int64_t ntasks);

// -- implementation ---------------------------------------------------------------------
namespace detail {
// Type-erased job: fn(ctx, task, slot).
using TaskFn = void (*)(void* ctx, int64_t task, int slot);
void run_erased(int threads, int64_t ntasks, TaskFn fn, void* ctx);
}  // namespace detail

template <class F>
void run_tasks(int nthreads, int64_t ntasks, F&& fn) {
  if (ntasks <= 0) return;
  const int threads = task_threads(nthreads, ntasks);
  if (threads <= 1) {
    for (int64_t t = 0; t < ntasks; ++t) fn(t, 0);
    return;
  }
  using Fn = typename std::remove_reference<F>::type;
  detail::run_erased(
      threads, ntasks,
      [](void* ctx, int64_t task, int slot) {
        (*static_cast<Fn*>(ctx))(task, slot);
      },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace lkr
