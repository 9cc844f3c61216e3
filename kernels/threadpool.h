// Persistent worker pool for the CPU kernels. Decode calls parallel_for hundreds of times per token, so a
// call wakes parked workers (brief spin, then a condition variable) instead of creating threads; the caller
// takes part as thread 0.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace moerig::kernels {

/// A fixed set of worker threads that split index ranges between themselves and the calling thread.
/// Calling parallel_for from inside a task runs the nested loop serially on that thread (same thread_idx).
/// Tasks must not throw on worker threads (the kernels do not).
class ThreadPool {
  public:
    /// num_threads counts the caller: 1 means no workers (everything runs inline); 0 means one per core.
    explicit ThreadPool(int num_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int num_threads() const { return num_threads_; }

    /// Calls fn(begin, end, thread_idx) over disjoint ranges covering [0, n), one contiguous range per
    /// thread (thread_idx < num_threads(); the caller is thread 0), and returns when all are done.
    /// Ranges are split on multiples of `grain` (except the last) so block-quantised rows stay whole.
    template <class Fn>
    void parallel_for(int64_t n, Fn&& fn, int64_t grain = 1) {
        using F = std::remove_reference_t<Fn>;
        run(
            n, grain, [](void* ctx, int64_t b, int64_t e, int t) { (*static_cast<F*>(ctx))(b, e, t); },
            const_cast<void*>(static_cast<const void*>(&fn)));
    }

    /// Calls fn(task_idx, thread_idx) for every task in [0, num_tasks), handing tasks out dynamically
    /// (an atomic counter): for uneven work such as attention heads of different lengths or experts.
    template <class Fn>
    void parallel_tasks(int64_t num_tasks, Fn&& fn) {
        std::atomic<int64_t> next{0};
        parallel_for(num_threads_, [&](int64_t, int64_t, int thread_idx) {
            for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < num_tasks;
                 i = next.fetch_add(1, std::memory_order_relaxed)) {
                fn(i, thread_idx);
            }
        });
    }

    /// A process-wide pool with one thread per core, created on first use.
    static ThreadPool& global();

  private:
    using Trampoline = void (*)(void*, int64_t, int64_t, int);
    void run(int64_t n, int64_t grain, Trampoline fn, void* ctx);
    void worker_loop(int thread_idx);
    void run_share(int thread_idx);

    int num_threads_ = 1;
    std::vector<std::thread> workers_;
    // The job being run; written by the caller before generation_ is bumped (release), read after (acquire).
    Trampoline job_fn_ = nullptr;
    void* job_ctx_ = nullptr;
    int64_t job_n_ = 0;
    int64_t job_grain_ = 1;
    std::atomic<uint32_t> generation_{0};  // bumped once per job
    std::atomic<int> pending_{0};          // workers still running the current job
    std::atomic<bool> stop_{false};
    // Sleeping: a thread announces itself in sleepers_ (seq_cst) before re-checking its condition under
    // sleep_mutex_; a waker changes the condition (seq_cst) before reading sleepers_, so no wakeup is lost.
    std::atomic<int> sleepers_{0};
    std::mutex sleep_mutex_;
    std::condition_variable wake_cv_;  // workers wait for a new generation
    std::condition_variable done_cv_;  // the caller waits for pending_ == 0
    std::mutex call_mutex_;            // outside threads sharing one pool take turns
};

}  // namespace moerig::kernels
