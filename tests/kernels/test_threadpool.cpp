// ThreadPool: every index is visited exactly once for any size, grain and thread count; thread indices stay in
// range; nested calls run inline; repeated calls reuse the same workers; dynamic tasks cover every task once.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "kernels/threadpool.h"

using moerig::kernels::ThreadPool;

TEST(ThreadPool, VisitsEveryIndexExactlyOnceForAnySizeAndGrain) {
    for (int threads : {1, 2, 3, 5}) {
        ThreadPool pool(threads);
        for (int64_t n : {0, 1, 2, 7, 64, 1000, 1001}) {
            for (int64_t grain : {1, 3, 16}) {
                std::vector<std::atomic<int>> hits(n);
                std::atomic<bool> bad_range{false};
                pool.parallel_for(
                    n,
                    [&](int64_t b, int64_t e, int t) {
                        if (t < 0 || t >= threads || b >= e || (b % grain) != 0) bad_range = true;
                        for (int64_t i = b; i < e; ++i) hits[i]++;
                    },
                    grain);
                for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << "/" << grain << "/" << threads;
                EXPECT_FALSE(bad_range.load());
            }
        }
    }
}

TEST(ThreadPool, ManyBackToBackCallsAllComplete) {
    ThreadPool pool(3);
    std::atomic<int64_t> total{0};
    for (int call = 0; call < 1000; ++call) {
        pool.parallel_for(8, [&](int64_t b, int64_t e, int) { total += e - b; });
    }
    EXPECT_EQ(total.load(), 1000 * 8);
}

TEST(ThreadPool, UsesDistinctThreadsForDistinctIndices) {
    ThreadPool pool(3);
    std::vector<std::thread::id> ids(3);
    pool.parallel_for(3, [&](int64_t b, int64_t, int t) { ids[t] = std::this_thread::get_id(); });
    EXPECT_EQ(std::set<std::thread::id>(ids.begin(), ids.end()).size(), 3u);
    EXPECT_EQ(ids[0], std::this_thread::get_id()) << "the caller takes part as thread 0";
}

TEST(ThreadPool, NestedCallsRunInlineWithTheOuterThreadIndex) {
    ThreadPool pool(3);
    std::vector<std::atomic<int>> hits(3 * 10);
    std::atomic<bool> mismatch{false};
    pool.parallel_for(3, [&](int64_t b, int64_t e, int outer) {
        for (int64_t i = b; i < e; ++i) {
            pool.parallel_for(10, [&](int64_t b2, int64_t e2, int inner) {
                if (inner != outer) mismatch = true;
                for (int64_t j = b2; j < e2; ++j) hits[i * 10 + j]++;
            });
        }
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    EXPECT_FALSE(mismatch.load());
}

TEST(ThreadPool, DynamicTasksCoverEveryTaskOnce) {
    ThreadPool pool(4);
    std::vector<std::atomic<int>> hits(257);
    pool.parallel_tasks(257, [&](int64_t task, int t) {
        ASSERT_LT(t, 4);
        hits[task]++;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadPool, CallsFromSeveralOutsideThreadsAreSerialisedSafely) {
    ThreadPool pool(3);
    std::atomic<int64_t> total{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 3; ++c) {
        callers.emplace_back([&] {
            for (int i = 0; i < 200; ++i) pool.parallel_for(30, [&](int64_t b, int64_t e, int) { total += e - b; });
        });
    }
    for (auto& c : callers) c.join();
    EXPECT_EQ(total.load(), 3 * 200 * 30);
}
