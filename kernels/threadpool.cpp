// ThreadPool: workers park on a generation counter (brief spin, then a condition variable); a call publishes
// the job, bumps the generation, runs the caller's share, and waits for the others the same way.
#include "kernels/threadpool.h"

#include <algorithm>
#include <exception>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MOERIG_CPU_RELAX() _mm_pause()
#else
#define MOERIG_CPU_RELAX() ((void)0)
#endif

namespace moerig::kernels {
namespace {

// Spinning keeps back-to-back decode calls cheap; the bound keeps idle pools from burning shared cores.
constexpr int kSpinIterations = 4000;

thread_local const ThreadPool* tls_pool = nullptr;
thread_local int tls_thread_idx = 0;

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
    if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    num_threads_ = num_threads;
    workers_.reserve(num_threads_ - 1);
    for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(sleep_mutex_);
        stop_.store(true);
        generation_.fetch_add(1);
    }
    wake_cv_.notify_all();
    for (auto& w : workers_) w.join();
}

ThreadPool& ThreadPool::global() {
    static ThreadPool pool(0);
    return pool;
}

void ThreadPool::run_share(int thread_idx) {
    const int64_t num_units = (job_n_ + job_grain_ - 1) / job_grain_;
    const int64_t u0 = num_units * thread_idx / num_threads_;
    const int64_t u1 = num_units * (thread_idx + 1) / num_threads_;
    if (u0 >= u1) return;
    const int64_t begin = u0 * job_grain_;
    const int64_t end = std::min(job_n_, u1 * job_grain_);
    job_fn_(job_ctx_, begin, end, thread_idx);
}

void ThreadPool::worker_loop(int thread_idx) {
    tls_pool = this;
    tls_thread_idx = thread_idx;
    uint32_t seen = 0;
    for (;;) {
        uint32_t gen = generation_.load(std::memory_order_acquire);
        for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
            MOERIG_CPU_RELAX();
            gen = generation_.load(std::memory_order_acquire);
        }
        if (gen == seen) {
            std::unique_lock<std::mutex> lock(sleep_mutex_);
            sleepers_.fetch_add(1);
            wake_cv_.wait(lock, [&] { return generation_.load() != seen; });
            sleepers_.fetch_sub(1);
            gen = generation_.load();
        }
        seen = gen;
        if (stop_.load(std::memory_order_acquire)) return;
        run_share(thread_idx);
        if (pending_.fetch_sub(1) == 1 && sleepers_.load() > 0) {
            // The caller may be asleep on done_cv_ (or a worker on wake_cv_: harmless, it re-checks).
            std::lock_guard<std::mutex> lock(sleep_mutex_);
            done_cv_.notify_all();
        }
    }
}

void ThreadPool::run(int64_t n, int64_t grain, Trampoline fn, void* ctx) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    // Nested calls (from inside a task) and single-thread pools run inline on the calling thread.
    if (num_threads_ == 1 || tls_pool == this || n <= grain) {
        fn(ctx, 0, n, tls_pool == this ? tls_thread_idx : 0);
        return;
    }
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    job_fn_ = fn;
    job_ctx_ = ctx;
    job_n_ = n;
    job_grain_ = grain;
    pending_.store(num_threads_ - 1);
    generation_.fetch_add(1);
    if (sleepers_.load() > 0) {
        std::lock_guard<std::mutex> lock(sleep_mutex_);
        wake_cv_.notify_all();
    }

    tls_pool = this;
    tls_thread_idx = 0;
    struct Reset {
        ~Reset() { tls_pool = nullptr; }
    } reset;
    std::exception_ptr error;
    try {
        run_share(0);
    } catch (...) {
        error = std::current_exception();
    }

    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0 && spin < kSpinIterations * 4; ++spin) {
        MOERIG_CPU_RELAX();
    }
    if (pending_.load() != 0) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1);
        done_cv_.wait(lock, [&] { return pending_.load() == 0; });
        sleepers_.fetch_sub(1);
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace moerig::kernels
