// CudaDevice (budgets, copies, virtual cards on one GPU) and NcclCommunicator (one rank; all local GPUs when
// there are several) with exactly predictable payloads, nccl-tests style.
#include <gtest/gtest.h>

#include <numeric>
#include <thread>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/error.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/cuda_graph.h"
#include "runtime/cuda/nccl_communicator.h"

namespace moerig::runtime::cuda {
namespace {

#define MOERIG_REQUIRE_GPUS(n)                                                                       \
    do {                                                                                             \
        if (::moerig::cuda::device_count() < (n)) GTEST_SKIP() << "needs " << (n) << " CUDA GPU(s)"; \
    } while (0)

constexpr size_t kMiB = size_t{1} << 20;

std::vector<uint8_t> pattern(size_t n, int seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 131 + seed * 17 + 7) & 0xFF);
    return v;
}

TEST(CudaDevice, CopiesRoundTripAndAllocationsAreChargedToTheBudget) {
    MOERIG_REQUIRE_GPUS(1);
    CudaDevice dev(0, 64 * kMiB, "test card");
    const auto host = pattern(3 * kMiB + 5, 1);
    Buffer a = dev.alloc(host.size(), MemoryKind::kWeights);
    Buffer b = dev.alloc(host.size(), MemoryKind::kActivations);
    EXPECT_EQ(dev.memory_info().used_bytes, 2 * host.size());
    dev.copy_to_device(a.data(), host.data(), host.size());
    dev.copy_on_device(b.data(), a.data(), host.size());
    std::vector<uint8_t> back(host.size());
    dev.copy_to_host(back.data(), b.data(), back.size());
    EXPECT_EQ(back, host);
    b.reset();
    EXPECT_EQ(dev.memory_info().used_bytes, host.size());
    EXPECT_THROW(dev.alloc(62 * kMiB, MemoryKind::kKv), OutOfMemoryError);
    EXPECT_NE(dev.native_stream(), nullptr);
}

TEST(CudaDevice, BudgetLargerThanFreeMemoryIsRefused) {
    MOERIG_REQUIRE_GPUS(1);
    const GpuMemory m = gpu_memory(0);
    EXPECT_THROW(CudaDevice(0, m.total_bytes + kMiB), OutOfMemoryError);
}

TEST(CudaDevice, VirtualCardsOnOneGpuKeepSeparateBudgetsAndStreams) {
    MOERIG_REQUIRE_GPUS(1);
    auto cards = make_virtual_cards(0, 4, 16 * kMiB);
    ASSERT_EQ(cards.size(), 4u);
    std::vector<Buffer> held;
    for (auto& c : cards) held.push_back(c->alloc(12 * kMiB, MemoryKind::kWeights));
    EXPECT_THROW(cards[2]->alloc(8 * kMiB, MemoryKind::kKv), OutOfMemoryError);
    EXPECT_EQ(cards[3]->memory_info().used_bytes, 12 * kMiB);
    EXPECT_NE(cards[0]->stream(), cards[1]->stream());
    EXPECT_NE(cards[1]->name(), cards[2]->name());
}

TEST(CudaGraphStep, ReplaysTheCapturedKernelsEachLaunch) {
    MOERIG_REQUIRE_GPUS(1);
    CudaDevice dev(0, 16 * kMiB);
    constexpr int64_t kN = 1000;
    std::vector<float> y0(kN), b(kN);
    for (int64_t i = 0; i < kN; ++i) {
        y0[i] = static_cast<float>(i);
        b[i] = static_cast<float>(i % 7);
    }
    Buffer d_y = dev.alloc(kN * sizeof(float), MemoryKind::kActivations);
    Buffer d_b = dev.alloc(kN * sizeof(float), MemoryKind::kActivations);
    dev.copy_to_device(d_y.data(), y0.data(), kN * sizeof(float));
    dev.copy_to_device(d_b.data(), b.data(), kN * sizeof(float));
    CudaGraphStep step;
    step.capture(dev.stream(), [&] {  // y += b, twice
        kernels::cuda::add(d_y.as<float>(), d_b.as<float>(), d_y.as<float>(), kN, dev.stream());
        kernels::cuda::add(d_y.as<float>(), d_b.as<float>(), d_y.as<float>(), kN, dev.stream());
    });
    ASSERT_TRUE(step.captured());
    std::vector<float> got(kN);
    dev.copy_to_host(got.data(), d_y.data(), kN * sizeof(float));
    EXPECT_EQ(got, y0);  // capturing runs nothing
    for (int i = 0; i < 3; ++i) step.launch(dev.stream());
    dev.copy_to_host(got.data(), d_y.data(), kN * sizeof(float));
    for (int64_t i = 0; i < kN; ++i) ASSERT_EQ(got[i], y0[i] + 6 * b[i]) << i;
}

TEST(NcclCommunicator, OneRankSelfExchangeAllToAllAndBarrier) {
    MOERIG_REQUIRE_GPUS(1);
    CudaDevice dev(0, 64 * kMiB);
    CudaDevice* devs[] = {&dev};
    auto comms = NcclCommunicator::create_local(devs);
    ASSERT_EQ(comms.size(), 1u);
    NcclCommunicator& comm = *comms[0];
    EXPECT_EQ(comm.size(), 1);
    const auto host = pattern(1 * kMiB + 3, 2);
    Buffer src = dev.alloc(host.size(), MemoryKind::kComm);
    Buffer dst = dev.alloc(host.size(), MemoryKind::kComm);
    dev.copy_to_device(src.data(), host.data(), host.size());
    comm.group_start();
    comm.recv(dst.data(), host.size(), 0);
    comm.send(src.data(), host.size(), 0);
    comm.group_end();
    comm.synchronize();
    std::vector<uint8_t> back(host.size());
    dev.copy_to_host(back.data(), dst.data(), back.size());
    EXPECT_EQ(back, host);

    const size_t counts[] = {host.size()};
    Buffer dst2 = dev.alloc(host.size(), MemoryKind::kComm);
    comm.all_to_all_v(src.data(), counts, dst2.data(), counts);
    comm.synchronize();
    dev.copy_to_host(back.data(), dst2.data(), back.size());
    EXPECT_EQ(back, host);
    comm.barrier();
    EXPECT_EQ(comm.stats().bytes_sent, 0u);  // self traffic is not counted
}

TEST(NcclCommunicator, AllToAllVAcrossAllLocalGpusDeliversEveryBlock) {
    MOERIG_REQUIRE_GPUS(2);
    const int n = ::moerig::cuda::device_count();
    std::vector<std::unique_ptr<CudaDevice>> devs;
    std::vector<CudaDevice*> ptrs;
    for (int g = 0; g < n; ++g) {
        devs.push_back(std::make_unique<CudaDevice>(g, 64 * kMiB));
        ptrs.push_back(devs.back().get());
    }
    auto comms = NcclCommunicator::create_local(ptrs);
    // Rank p sends (p + q + 1) KiB to rank q, filled with a pattern seeded by (p, q).
    auto bytes = [](int p, int q) { return static_cast<size_t>(p + q + 1) * 1024; };
    std::vector<int> failures(n, 0);
    std::vector<std::thread> threads;
    for (int p = 0; p < n; ++p) {
        threads.emplace_back([&, p] {
            CudaDevice& dev = *devs[p];
            std::vector<size_t> send_bytes(n), recv_bytes(n);
            std::vector<uint8_t> send_host;
            for (int q = 0; q < n; ++q) {
                send_bytes[q] = bytes(p, q);
                recv_bytes[q] = bytes(q, p);
                const auto part = pattern(send_bytes[q], p * 100 + q);
                send_host.insert(send_host.end(), part.begin(), part.end());
            }
            const size_t recv_total = std::accumulate(recv_bytes.begin(), recv_bytes.end(), size_t{0});
            Buffer send = dev.alloc(send_host.size(), MemoryKind::kComm);
            Buffer recv = dev.alloc(recv_total, MemoryKind::kComm);
            dev.copy_to_device(send.data(), send_host.data(), send_host.size());
            comms[p]->all_to_all_v(send.data(), send_bytes, recv.data(), recv_bytes);
            comms[p]->synchronize();
            std::vector<uint8_t> got(recv_total);
            dev.copy_to_host(got.data(), recv.data(), recv_total);
            size_t off = 0;
            for (int q = 0; q < n; ++q) {
                const auto want = pattern(recv_bytes[q], q * 100 + p);
                if (!std::equal(want.begin(), want.end(), got.begin() + static_cast<std::ptrdiff_t>(off)))
                    ++failures[p];
                off += recv_bytes[q];
            }
            comms[p]->barrier();
        });
    }
    for (auto& t : threads) t.join();
    for (int p = 0; p < n; ++p) EXPECT_EQ(failures[p], 0) << "rank " << p;
}

}  // namespace
}  // namespace moerig::runtime::cuda
