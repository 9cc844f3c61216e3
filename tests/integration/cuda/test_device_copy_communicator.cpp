// DeviceCopyCommunicator on 4 virtual cards of one GPU: all_to_all_v byte-exact with payloads produced by a
// kernel on the sender's stream just before the exchange (stream ordering), grouped send/recv with self-sends,
// mismatched sizes refused, and the unchanged MoE Dispatcher running over it (host_sync, managed-memory cards)
// with the same results as over LocalCommunicator. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/error.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/device_copy_communicator.h"
#include "runtime/dispatcher.h"
#include "runtime/local_communicator.h"

namespace moerig::runtime::cuda {
namespace {

#define MOERIG_REQUIRE_GPU()                                                                   \
    do {                                                                                       \
        if (::moerig::cuda::device_count() < 1) GTEST_SKIP() << "no CUDA GPU on this machine"; \
    } while (0)

constexpr size_t kMiB = size_t{1} << 20;
constexpr int kCards = 4;

/// Runs fn(rank) on one thread per rank; a rank that throws aborts the others and its error is rethrown.
template <typename Comms>
void run_ranks(const Comms& comms, const std::function<void(int)>& fn) {
    const int n = static_cast<int>(comms.size());
    std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
    std::vector<bool> aborted(static_cast<size_t>(n), false);
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r) {
        threads.emplace_back([&, r] {
            try {
                fn(r);
            } catch (const CommunicatorAborted&) {
                errors[static_cast<size_t>(r)] = std::current_exception();
                aborted[static_cast<size_t>(r)] = true;
            } catch (const std::exception& e) {
                errors[static_cast<size_t>(r)] = std::current_exception();
                comms[static_cast<size_t>(r)]->abort(e.what());
            }
        });
    }
    for (auto& t : threads) t.join();
    rethrow_rank_error(errors, aborted);
}

/// Value of byte i of the message from rank src to rank dst.
float payload(int src, int dst, size_t i) {
    return static_cast<float>(src * 1000 + dst * 100) + static_cast<float>(i % 97);
}

/// Floats rank src sends rank dst: uneven, some zero.
size_t count(int src, int dst) {
    return (src + dst) % 3 == 0 ? 0 : static_cast<size_t>(1000 * (src + 1) + 37 * dst + 5);
}

std::vector<CudaDevice*> raw(const std::vector<std::unique_ptr<CudaDevice>>& cards) {
    std::vector<CudaDevice*> out;
    for (const auto& c : cards) out.push_back(c.get());
    return out;
}

TEST(DeviceCopyCommunicator, AllToAllVOnFourVirtualCardsIsByteExactAndStreamOrdered) {
    MOERIG_REQUIRE_GPU();
    auto cards = make_virtual_cards(0, kCards, 64 * kMiB);
    const auto devs = raw(cards);
    auto comms = make_device_copy_communicators(devs);
    for (int round = 0; round < 3; ++round) {
        run_ranks(comms, [&](int r) {
            CudaDevice& dev = *cards[static_cast<size_t>(r)];
            std::vector<size_t> send_bytes(kCards), recv_bytes(kCards);
            std::vector<float> host_send;
            size_t recv_total = 0;
            for (int p = 0; p < kCards; ++p) {
                send_bytes[static_cast<size_t>(p)] = count(r, p) * sizeof(float);
                recv_bytes[static_cast<size_t>(p)] = count(p, r) * sizeof(float);
                recv_total += count(p, r);
                for (size_t i = 0; i < count(r, p); ++i) host_send.push_back(payload(r, p, i) - 1.0f - round);
            }
            std::vector<float> ones(host_send.size(), 1.0f + static_cast<float>(round));
            Buffer send = dev.alloc(host_send.size() * sizeof(float) + 16, MemoryKind::kComm);
            Buffer add = dev.alloc(host_send.size() * sizeof(float) + 16, MemoryKind::kComm);
            Buffer recv = dev.alloc(recv_total * sizeof(float) + 16, MemoryKind::kComm);
            dev.copy_to_device(send.data(), host_send.data(), host_send.size() * sizeof(float));
            dev.copy_to_device(add.data(), ones.data(), ones.size() * sizeof(float));
            // The payload is completed by a kernel queued on this card's stream right before the exchange: only
            // a stream-ordered communicator sends the finished values.
            kernels::cuda::add(send.as<float>(), add.as<float>(), send.as<float>(),
                               static_cast<int64_t>(host_send.size()), dev.stream());
            comms[static_cast<size_t>(r)]->all_to_all_v(send.data(), send_bytes, recv.data(), recv_bytes);
            // Overwriting the send buffer right after must not change what the peers receive.
            MOERIG_CUDA_CHECK(cudaMemsetAsync(send.data(), 0xFF, host_send.size() * sizeof(float), dev.stream()));
            comms[static_cast<size_t>(r)]->synchronize();
            comms[static_cast<size_t>(r)]->barrier();
            std::vector<float> got(recv_total);
            dev.copy_to_host(got.data(), recv.data(), recv_total * sizeof(float));
            size_t off = 0;
            for (int p = 0; p < kCards; ++p) {
                for (size_t i = 0; i < count(p, r); ++i, ++off) {
                    ASSERT_EQ(got[off], payload(p, r, i))
                        << "round " << round << " rank " << r << " from " << p << " float " << i;
                }
            }
        });
    }
    const CommStats s = comms[1]->stats();
    size_t want_sent = 0;
    for (int p = 0; p < kCards; ++p) want_sent += p == 1 ? 0 : count(1, p) * sizeof(float) * 3;
    EXPECT_EQ(s.bytes_sent, want_sent);
}

TEST(DeviceCopyCommunicator, GroupedSendRecvIncludingSelfMatchInIssueOrder) {
    MOERIG_REQUIRE_GPU();
    auto cards = make_virtual_cards(0, 2, 16 * kMiB);
    const auto devs = raw(cards);
    auto comms = make_device_copy_communicators(devs);
    run_ranks(comms, [&](int r) {
        CudaDevice& dev = *cards[static_cast<size_t>(r)];
        const int peer = 1 - r;
        std::vector<int32_t> a(100), b(300);
        for (size_t i = 0; i < a.size(); ++i) a[i] = r * 10000 + static_cast<int32_t>(i);
        for (size_t i = 0; i < b.size(); ++i) b[i] = r * 10000 + 5000 + static_cast<int32_t>(i);
        Buffer da = dev.alloc(a.size() * 4, MemoryKind::kComm), db = dev.alloc(b.size() * 4, MemoryKind::kComm);
        Buffer ra = dev.alloc(a.size() * 4, MemoryKind::kComm), rb = dev.alloc(b.size() * 4, MemoryKind::kComm);
        Buffer self = dev.alloc(a.size() * 4, MemoryKind::kComm);
        dev.copy_to_device(da.data(), a.data(), a.size() * 4);
        dev.copy_to_device(db.data(), b.data(), b.size() * 4);
        auto& c = *comms[static_cast<size_t>(r)];
        c.group_start();
        c.recv(ra.data(), a.size() * 4, peer);  // receives may come before the sends inside a group
        c.send(da.data(), a.size() * 4, peer);
        c.send(db.data(), b.size() * 4, peer);
        c.send(da.data(), a.size() * 4, r);
        c.recv(self.data(), a.size() * 4, r);
        c.recv(rb.data(), b.size() * 4, peer);  // the peer's second message: matched in issue order
        c.group_end();
        c.synchronize();
        std::vector<int32_t> got_a(a.size()), got_b(b.size()), got_self(a.size());
        dev.copy_to_host(got_a.data(), ra.data(), a.size() * 4);
        dev.copy_to_host(got_b.data(), rb.data(), b.size() * 4);
        dev.copy_to_host(got_self.data(), self.data(), a.size() * 4);
        EXPECT_EQ(got_self, a);
        for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(got_a[i], peer * 10000 + static_cast<int32_t>(i));
        for (size_t i = 0; i < b.size(); ++i) ASSERT_EQ(got_b[i], peer * 10000 + 5000 + static_cast<int32_t>(i));
        EXPECT_EQ(c.stats().bytes_sent, (a.size() + b.size()) * 4);
    });
}

TEST(DeviceCopyCommunicator, MismatchedSizesAreRefusedOnEveryRank) {
    MOERIG_REQUIRE_GPU();
    auto cards = make_virtual_cards(0, 2, 16 * kMiB);
    const auto devs = raw(cards);
    auto comms = make_device_copy_communicators(devs);
    EXPECT_THROW(run_ranks(comms,
                           [&](int r) {
                               Buffer b = cards[static_cast<size_t>(r)]->alloc(256, MemoryKind::kComm);
                               if (r == 0) {
                                   comms[0]->send(b.data(), 64, 1);
                               } else {
                                   comms[1]->recv(b.data(), 128, 0);
                               }
                           }),
                 ConfigError);
}

/// A virtual card whose memory is CUDA managed memory: host-accessible, so the (host-side) Dispatcher runs on it
/// unchanged while the communicator moves its rows with GPU copies.
class ManagedCard final : public Device {
  public:
    ManagedCard(std::string name, size_t budget, int idx)
        : Device(DeviceProps{.name = std::move(name), .device_idx = idx, .host_accessible = true}, budget) {}
    void copy_to_device(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }
    void copy_to_host(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }
    void copy_on_device(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }

  protected:
    void* raw_alloc(size_t n) override {
        void* p = nullptr;
        if (cudaMallocManaged(&p, n) != cudaSuccess) {
            (void)cudaGetLastError();
            return nullptr;
        }
        return p;
    }
    void raw_free(void* p, size_t) override {
        cudaDeviceSynchronize();
        cudaFree(p);
    }
};

/// Expert e multiplies by (e + 1) and adds e / 8.
class AffineExperts final : public CardExperts {
  public:
    void run_expert(int e, const float* x, int64_t rows, float* y) override {
        for (int64_t i = 0; i < rows * kDim; ++i) y[i] = x[i] * static_cast<float>(e + 1) + static_cast<float>(e) / 8;
    }
    static constexpr int64_t kDim = 64;
};

TEST(DeviceCopyCommunicator, DispatcherRunsUnchangedAndMatchesLocalCommunicator) {
    MOERIG_REQUIRE_GPU();
    constexpr int kExperts = 8, kTopK = 2;
    constexpr int64_t kTokens = 37;
    const auto placement = ExpertPlacement::round_robin(kExperts, kCards);
    auto inputs = [](int r, std::vector<float>& h, std::vector<int32_t>& ids, std::vector<float>& w) {
        h.resize(kTokens * AffineExperts::kDim);
        ids.resize(kTokens * kTopK);
        w.resize(ids.size());
        for (size_t i = 0; i < h.size(); ++i) h[i] = std::sin(static_cast<float>(i * 7 + r * 131));
        for (int64_t t = 0; t < kTokens; ++t) {
            ids[t * kTopK] = static_cast<int32_t>((t * 3 + r) % kExperts);
            ids[t * kTopK + 1] = static_cast<int32_t>((t * 5 + r + 1) % kExperts);
            if (ids[t * kTopK + 1] == ids[t * kTopK]) ids[t * kTopK + 1] = (ids[t * kTopK] + 1) % kExperts;
            w[t * kTopK] = 0.75f;
            w[t * kTopK + 1] = 0.25f;
        }
    };
    const DispatchConfig cfg{.hidden_dim = AffineExperts::kDim, .top_k = kTopK};
    std::vector<std::vector<float>> want(kCards), got(kCards);
    {
        auto comms = make_local_communicators(kCards);
        std::vector<std::unique_ptr<ManagedCard>> cards;
        for (int r = 0; r < kCards; ++r)
            cards.push_back(std::make_unique<ManagedCard>("ref" + std::to_string(r), 64 * kMiB, r));
        run_on_ranks(comms, [&](int r) {
            std::vector<float> h, w;
            std::vector<int32_t> ids;
            inputs(r, h, ids, w);
            Dispatcher d(*comms[static_cast<size_t>(r)], *cards[static_cast<size_t>(r)], cfg);
            AffineExperts ex;
            DispatchHandle handle;
            want[static_cast<size_t>(r)].resize(h.size());
            d.forward(handle, placement, ex, h.data(), kTokens, ids.data(), w.data(),
                      want[static_cast<size_t>(r)].data());
        });
    }
    auto gpus = make_virtual_cards(0, kCards, 16 * kMiB);
    const auto devs = raw(gpus);
    auto comms = make_device_copy_communicators(devs, /*host_sync=*/true);
    std::vector<std::unique_ptr<ManagedCard>> cards;
    for (int r = 0; r < kCards; ++r)
        cards.push_back(std::make_unique<ManagedCard>("card" + std::to_string(r), 64 * kMiB, r));
    run_ranks(comms, [&](int r) {
        std::vector<float> h, w;
        std::vector<int32_t> ids;
        inputs(r, h, ids, w);
        Dispatcher d(*comms[static_cast<size_t>(r)], *cards[static_cast<size_t>(r)], cfg);
        AffineExperts ex;
        DispatchHandle handle;
        got[static_cast<size_t>(r)].resize(h.size());
        d.forward(handle, placement, ex, h.data(), kTokens, ids.data(), w.data(), got[static_cast<size_t>(r)].data());
        EXPECT_GT(d.last_stats().rows_sent_remote, 0u);
    });
    for (int r = 0; r < kCards; ++r)
        EXPECT_EQ(got[static_cast<size_t>(r)], want[static_cast<size_t>(r)]) << "rank " << r;
}

}  // namespace
}  // namespace moerig::runtime::cuda
