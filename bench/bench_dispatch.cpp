// Benchmark of the MoE exchange on virtual cards. Part 1: all_to_all_v of dispatch-sized payloads in
// memory, achieved bytes/s per card vs a one-thread memcpy measured in the same run (the peer). Part 2:
// the same exchange with emulated PCIe links and wall-clock sleeping, achieved bytes/s vs the link's
// physical rate (target >= 80% for large batches); staged links once with the default chunked forwarding
// and once store-and-forward (whole messages), whose 1/n loss the chunking removes. sched: the modelled
// exchange time's efficiency alone (independent of how busy this machine is); of_link: wall clock, which
// includes the real copies and thread wake-ups. Part 3: a full dispatch + experts + combine round.
// Usage: bench_dispatch [num_cards=4] [hidden=2048]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "runtime/cpu_device.h"
#include "runtime/dispatcher.h"
#include "runtime/local_communicator.h"

using namespace moerig::runtime;

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

/// Every card sends bytes_per_peer to each other card (and to itself); returns seconds per exchange
/// (the median of reps), after checking one exchange's contents.
double time_all_to_all(std::vector<std::unique_ptr<LocalCommunicator>>& comms, size_t bytes_per_peer, int reps) {
    const int n = static_cast<int>(comms.size());
    std::vector<std::vector<uint8_t>> send(n), recv(n);
    for (int r = 0; r < n; ++r) {
        send[r].resize(bytes_per_peer * n);
        recv[r].assign(bytes_per_peer * n, 0);
        for (int p = 0; p < n; ++p) std::memset(send[r].data() + p * bytes_per_peer, 16 * r + p, bytes_per_peer);
    }
    std::vector<double> times;
    run_on_ranks(comms, [&](int r) {
        const std::vector<size_t> counts(n, bytes_per_peer);
        for (int i = 0; i < reps + 1; ++i) {
            comms[r]->barrier();
            const auto t0 = Clock::now();
            comms[r]->all_to_all_v(send[r].data(), counts, recv[r].data(), counts);
            comms[r]->barrier();
            if (r == 0 && i > 0) times.push_back(seconds(t0, Clock::now()));
        }
    });
    for (int r = 0; r < n; ++r) {
        for (int p = 0; p < n; ++p) {
            const uint8_t want = static_cast<uint8_t>(16 * p + r);
            const uint8_t* at = recv[r].data() + p * bytes_per_peer;
            if (!std::all_of(at, at + bytes_per_peer, [&](uint8_t b) { return b == want; })) {
                fmt::print(stderr, "validation failed: card {} got wrong bytes from card {}\n", r, p);
                std::exit(1);
            }
        }
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

double memcpy_bytes_per_s(size_t bytes) {
    std::vector<uint8_t> a(bytes, 1), b(bytes);
    std::memcpy(b.data(), a.data(), bytes);
    const int reps = std::max(3, static_cast<int>((size_t{1} << 28) / std::max<size_t>(bytes, 1)));
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) {
        a[i % bytes] = static_cast<uint8_t>(i);
        std::memcpy(b.data(), a.data(), bytes);
    }
    return double(bytes) * reps / seconds(t0, Clock::now());
}

class ScaleExperts final : public CardExperts {
  public:
    explicit ScaleExperts(int64_t dim) : dim_(dim) {}
    void run_expert(int expert_idx, const float* x, int64_t num_rows, float* y) override {
        for (int64_t i = 0; i < num_rows * dim_; ++i) y[i] = x[i] * float(expert_idx + 1);
    }

  private:
    int64_t dim_;
};

}  // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 4;
    const int64_t hidden = argc > 2 ? std::atoll(argv[2]) : 2048;
    const int top_k = 8, num_experts = 64;
    const size_t row_bytes = hidden * sizeof(float) + top_k * 8;
    fmt::print("all_to_all_v on {} virtual cards, dispatch rows of {} B (hidden {} f32 + top-{} ids/weights)\n", n,
               row_bytes, hidden, top_k);

    fmt::print("\n1) in memory: per-card algbw (bytes leaving one card / time) vs one-thread memcpy\n");
    fmt::print("{:>8} {:>12} {:>12} {:>12} {:>12} {:>7}\n", "tokens", "bytes/peer", "time_us", "algbw_GB/s",
               "busbw_GB/s", "vs_memcpy");
    {
        auto comms = make_local_communicators(n);
        for (int tokens : {1, 16, 128, 1024, 4096}) {
            // Each card's tokens spread evenly over the cards: tokens * row_bytes / n to each peer.
            const size_t per_peer = std::max<size_t>(1, tokens * row_bytes / n);
            const double t = time_all_to_all(comms, per_peer, tokens >= 1024 ? 10 : 50);
            const double algbw = double(per_peer) * n / t;
            const double peer = memcpy_bytes_per_s(per_peer * n);
            fmt::print("{:>8} {:>12} {:>12.1f} {:>12.2f} {:>12.2f} {:>6.0f}%\n", tokens, per_peer, t * 1e6, algbw / 1e9,
                       algbw * (n - 1) / n / 1e9, 100 * algbw / peer);
        }
    }

    fmt::print("\n2) emulated links, sleeping to modelled time: achieved bytes/s per card vs the link rate\n");
    fmt::print("{:>30} {:>8} {:>12} {:>12} {:>12} {:>12} {:>7} {:>7}\n", "link", "tokens", "bytes/peer", "modelled_ms",
               "wall_ms", "GB/s", "sched", "of_link");
    const size_t kChunked = LinkEmulation::kDefaultStageChunkBytes, kWhole = 0;
    for (auto [link, chunk] :
         {std::pair{LinkSpec{.pcie_gen = 3, .lanes = 4, .p2p = false, .latency_s = 10e-6}, kChunked},
          std::pair{LinkSpec{.pcie_gen = 3, .lanes = 4, .p2p = false, .latency_s = 10e-6}, kWhole},
          std::pair{LinkSpec{.pcie_gen = 3, .lanes = 4, .p2p = true, .latency_s = 10e-6}, kChunked},
          std::pair{LinkSpec{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 10e-6}, kChunked},
          std::pair{LinkSpec{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 10e-6}, kWhole}}) {
        const std::string name = link.describe() + (!link.p2p && chunk == kWhole ? ", whole" : "");
        for (int tokens : {16, 256, 2048}) {
            auto links = std::make_shared<LinkEmulation>(std::vector<LinkSpec>(n, link), /*sleep=*/true, chunk);
            auto comms = make_local_communicators(n, links);
            const size_t per_peer = tokens * row_bytes / n;
            const int reps = 3;
            const double wall = time_all_to_all(comms, per_peer, reps);
            const double modelled = links->clock_s(0) / (reps + 1);  // clocks include every rep
            const double remote = double(per_peer) * (n - 1);        // bytes leaving one card
            const double achieved = remote / wall;
            fmt::print("{:>30} {:>8} {:>12} {:>12.3f} {:>12.3f} {:>12.3f} {:>6.0f}% {:>6.0f}%\n", name, tokens,
                       per_peer, modelled * 1e3, wall * 1e3, achieved / 1e9,
                       100 * remote / modelled / link.bytes_per_s(), 100 * achieved / link.bytes_per_s());
        }
    }

    fmt::print("\n3) dispatch + experts + combine round trip, every card holding tokens, experts round robin\n");
    fmt::print("{:>8} {:>12} {:>14}\n", "tokens", "round_us", "rows/s/card");
    {
        auto comms = make_local_communicators(n);
        std::vector<std::unique_ptr<CpuDevice>> cards;
        for (int r = 0; r < n; ++r)
            cards.push_back(std::make_unique<CpuDevice>(fmt::format("card{}", r), size_t{8} << 30, r));
        const auto placement = ExpertPlacement::round_robin(num_experts, n);
        for (int tokens : {1, 16, 256}) {
            std::vector<double> times;
            run_on_ranks(comms, [&](int r) {
                Dispatcher d(*comms[r], *cards[r], DispatchConfig{.hidden_dim = hidden, .top_k = top_k});
                ScaleExperts experts(hidden);
                DispatchHandle h;
                std::vector<float> x(tokens * hidden, 1.f), out(x.size());
                std::vector<int32_t> ids(tokens * top_k);
                std::vector<float> w(ids.size(), 1.f / top_k);
                for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7 + r) % num_experts);
                for (int i = 0; i < 21; ++i) {
                    comms[r]->barrier();
                    const auto t0 = Clock::now();
                    d.forward(h, placement, experts, x.data(), tokens, ids.data(), w.data(), out.data());
                    comms[r]->barrier();
                    if (r == 0 && i > 0) times.push_back(seconds(t0, Clock::now()));
                }
            });
            std::sort(times.begin(), times.end());
            const double t = times[times.size() / 2];
            fmt::print("{:>8} {:>12.1f} {:>14.0f}\n", tokens, t * 1e6, tokens / t);
        }
    }
    return 0;
}
