#include "task_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LKR_PAUSE() _mm_pause()
#else
#define LKR_PAUSE() ((void)0)
#endif

namespace lkr {
namespace {

// CPUs this process may run on (its affinity mask): more threads than that only queue.
int usable_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

// Spins before sleeping: ~256 pauses are a few microseconds, enough to catch the next
// phase of a step on a quiet machine, too short to steal much from a loaded one.
constexpr int kSpin = 256;

class Pool {
 public:
  void run(int threads, int64_t ntasks, detail::TaskFn fn, void* ctx) {
    std::unique_lock<std::mutex> job(job_mutex_, std::try_to_lock);
    if (!job.owns_lock() || ntasks >= (int64_t(1) << 31)) {  // busy (or huge): inline
      for (int64_t t = 0; t < ntasks; ++t) fn(ctx, t, 0);
      return;
    }
    grow(threads - 1);
    uint32_t g;
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = fn, ctx_ = ctx, ntasks_ = ntasks, threads_ = threads;
      done_.store(0, std::memory_order_relaxed);
      g = gen_.load(std::memory_order_relaxed) + 1;
      claim_.store(uint64_t(g) << 32, std::memory_order_release);
      gen_.store(g, std::memory_order_release);
    }
    cv_work_.notify_all();
    work(g, fn, ctx, ntasks, 0);
    for (int i = 0; i < kSpin && done_.load(std::memory_order_acquire) < ntasks; ++i) LKR_PAUSE();
    if (done_.load(std::memory_order_acquire) < ntasks) {
      std::unique_lock<std::mutex> lk(m_);
      cv_done_.wait(lk, [&] {
        return done_.load(std::memory_order_acquire) >= ntasks;
      });
    }
  }

 private:
  // Claim and run tasks of job g until none is left (or a newer job started).
  void work(uint32_t g, detail::TaskFn fn, void* ctx, int64_t ntasks, int slot) {
    for (;;) {
      uint64_t v = claim_.load(std::memory_order_acquire);
      if (uint32_t(v >> 32) != g) return;
      const int64_t t = int64_t(v & 0xffffffffu);
      if (t >= ntasks) return;
      if (!claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) continue;
      fn(ctx, t, slot);
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == ntasks) {
        std::lock_guard<std::mutex> lk(m_);
        cv_done_.notify_all();
      }
    }
  }

  void grow(int n) {
    while (static_cast<int>(workers_) < n) {
      const int slot = static_cast<int>(++workers_);
      std::thread([this, slot] {
        loop(slot);
      }).detach();
    }
  }

  void loop(int slot) {
    uint32_t seen = gen_.load(std::memory_order_acquire);
    for (;;) {
      for (int i = 0; i < kSpin && gen_.load(std::memory_order_acquire) == seen; ++i) LKR_PAUSE();
      detail::TaskFn fn;
      void* ctx;
      int64_t ntasks;
      int threads;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_work_.wait(lk, [&] {
          return gen_.load(std::memory_order_acquire) != seen;
        });
        seen = gen_.load(std::memory_order_acquire);
        fn = fn_, ctx = ctx_, ntasks = ntasks_, threads = threads_;
      }
      if (slot < threads) work(seen, fn, ctx, ntasks, slot);
    }
  }

  std::mutex job_mutex_;  // one job at a time
  std::mutex m_;
  std::condition_variable cv_work_, cv_done_;
  std::atomic<uint32_t> gen_{0};
  std::atomic<uint64_t> claim_{0};  // (generation << 32) | next task
  std::atomic<int64_t> done_{0};
  std::atomic<unsigned> workers_{0};
  detail::TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t ntasks_ = 0;
  int threads_ = 0;
};

// The pool is never destroyed (its detached workers may outlive static destructors); a
// forked child, which has none of the parent's threads, starts a fresh one.
std::atomic<Pool*> g_pool{nullptr};

#if defined(__linux__)
void forget_pool_in_child() { g_pool.store(nullptr); }
#endif

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  static std::once_flag atfork;
  std::call_once(atfork, [] {
#if defined(__linux__)
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
#endif
  });
  Pool* fresh = new Pool;
  if (!g_pool.compare_exchange_strong(p, fresh)) {
    delete fresh;
    return *p;
  }
  return *fresh;
}

}  // namespace

int task_threads(int nthreads, int64_t ntasks) {
  const int cpus = usable_cpus();
  int n = nthreads > 0 ? std::min(nthreads, cpus) : cpus;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n, ntasks)));
}

namespace detail {
void run_erased(int threads, int64_t ntasks, TaskFn fn, void* ctx) {
  pool().run(threads, ntasks, fn, ctx);
}
}  // namespace detail

}  // namespace lkr
