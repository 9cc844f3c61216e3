// Dispatcher: inputs whose results are exactly predictable (integer-valued hidden states, experts that
// scale by an integer, power-of-two weights), so every token's destinations and combined value are
// known in advance and compared exactly: spread experts, all tokens to one card, empty sends, replicas
// chosen by load, several sending cards, one row per (token, card); and the 8-bit option's error bound.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "kernels/error.h"
#include "runtime/cpu_device.h"
#include "runtime/dispatcher.h"
#include "runtime/local_communicator.h"

using namespace moerig::runtime;

namespace {

constexpr int64_t kDim = 24;
constexpr size_t kBudget = size_t{64} << 20;

/// Expert e multiplies by (e + 1); records which experts ran here and on how many rows.
class ScaleExperts final : public CardExperts {
  public:
    void run_expert(int expert_idx, const float* x, int64_t num_rows, float* y) override {
        calls.push_back({expert_idx, num_rows});
        for (int64_t i = 0; i < num_rows * kDim; ++i) y[i] = x[i] * static_cast<float>(expert_idx + 1);
    }
    std::vector<std::pair<int, int64_t>> calls;
};

/// The tokens one card holds: hidden (num_tokens, kDim), top-k ids and weights.
struct Batch {
    int64_t num_tokens = 0;
    std::vector<float> hidden;
    std::vector<int32_t> ids;
    std::vector<float> weights;
};

Batch make_batch(int rank, int64_t num_tokens, int top_k, int num_experts, uint32_t seed) {
    Batch b;
    b.num_tokens = num_tokens;
    std::mt19937 rng(seed + 7919 * rank);
    for (int64_t i = 0; i < num_tokens * kDim; ++i) b.hidden.push_back(static_cast<float>(int(rng() % 33) - 16));
    const float kWeights[] = {0.5f, 1.f, 2.f, 0.25f};
    for (int64_t t = 0; t < num_tokens; ++t) {
        std::set<int> used;
        for (int j = 0; j < top_k; ++j) {
            int e;
            do e = static_cast<int>(rng() % num_experts);
            while (used.count(e));
            used.insert(e);
            b.ids.push_back(e);
            b.weights.push_back(kWeights[rng() % 4]);
        }
    }
    return b;
}

/// Exact expected output: sum_j w_j * (e_j + 1) * x.
std::vector<float> expected_output(const Batch& b, int top_k) {
    std::vector<float> out(b.num_tokens * kDim, 0.f);
    for (int64_t t = 0; t < b.num_tokens; ++t) {
        float scale = 0;
        for (int j = 0; j < top_k; ++j) scale += b.weights[t * top_k + j] * (b.ids[t * top_k + j] + 1);
        for (int64_t d = 0; d < kDim; ++d) out[t * kDim + d] = scale * b.hidden[t * kDim + d];
    }
    return out;
}

struct RunResult {
    std::vector<std::vector<float>> out;    // [rank]
    std::vector<std::vector<size_t>> recv;  // [rank][src] rows received
    std::vector<std::vector<size_t>> sent;  // [rank][dst] rows sent
    std::vector<ScaleExperts> experts;      // [rank]
};

RunResult run_dispatch(int num_ranks, const std::vector<Batch>& batches, const ExpertPlacement& placement, int top_k,
                       bool quantize = false) {
    auto comms = make_local_communicators(num_ranks);
    std::vector<std::unique_ptr<CpuDevice>> cards;
    for (int r = 0; r < num_ranks; ++r)
        cards.push_back(std::make_unique<CpuDevice>("card" + std::to_string(r), kBudget, r));
    RunResult res;
    res.out.resize(num_ranks);
    res.recv.resize(num_ranks);
    res.sent.resize(num_ranks);
    res.experts.resize(num_ranks);
    run_on_ranks(comms, [&](int r) {
        Dispatcher d(*comms[r], *cards[r],
                     DispatchConfig{.hidden_dim = kDim, .top_k = top_k, .quantize_8bit = quantize});
        DispatchHandle h;
        const Batch& b = batches[r];
        res.out[r].assign(b.num_tokens * kDim, -1.f);
        d.forward(h, placement, res.experts[r], b.hidden.data(), b.num_tokens, b.ids.data(), b.weights.data(),
                  res.out[r].data());
        res.recv[r] = h.recv_rows;
        res.sent[r] = h.send_rows;
    });
    for (auto& c : cards) EXPECT_EQ(c->memory_info().used_bytes, 0u) << "dispatcher buffers are released";
    return res;
}

std::vector<Batch> only_rank_has_tokens(int num_ranks, int src, int64_t num_tokens, int top_k, int num_experts) {
    std::vector<Batch> batches(num_ranks);
    batches[src] = make_batch(src, num_tokens, top_k, num_experts, 42);
    return batches;
}

}  // namespace

TEST(Dispatcher, SpreadExpertsGiveExactCombinedValuesAndPredictedRowsPerCard) {
    const int n = 4, top_k = 4, num_experts = 16;
    auto batches = only_rank_has_tokens(n, 0, 37, top_k, num_experts);
    const auto placement = ExpertPlacement::round_robin(num_experts, n);
    auto res = run_dispatch(n, batches, placement, top_k);
    EXPECT_EQ(res.out[0], expected_output(batches[0], top_k));
    // One row per (token, card holding one of its experts).
    std::vector<size_t> rows(n, 0);
    for (int64_t t = 0; t < batches[0].num_tokens; ++t) {
        std::set<int> cards;
        for (int j = 0; j < top_k; ++j) cards.insert(batches[0].ids[t * top_k + j] % n);
        for (int c : cards) ++rows[c];
    }
    EXPECT_EQ(res.sent[0], rows);
    for (int r = 0; r < n; ++r) {
        EXPECT_EQ(res.recv[r][0], rows[r]);
        for (auto [e, num_rows] : res.experts[r].calls) EXPECT_EQ(e % n, r) << "expert ran where it is not placed";
    }
}

TEST(Dispatcher, AllTokensToOneCardLeaveOthersWithEmptyExchanges) {
    const int n = 3, top_k = 2, num_experts = 8;
    auto batches = only_rank_has_tokens(n, 1, 20, top_k, num_experts);
    auto res = run_dispatch(n, batches, ExpertPlacement::all_on(num_experts, 2), top_k);
    EXPECT_EQ(res.out[1], expected_output(batches[1], top_k));
    EXPECT_EQ(res.sent[1], (std::vector<size_t>{0, 0, 20}));  // both experts of a token: one row
    EXPECT_TRUE(res.experts[0].calls.empty());
    EXPECT_TRUE(res.experts[1].calls.empty());
    EXPECT_EQ(res.recv[2], (std::vector<size_t>{0, 20, 0}));
}

TEST(Dispatcher, NoTokensAnywhereExchangesNothingAndRunsNoExpert) {
    const int n = 4, top_k = 2;
    std::vector<Batch> batches(n);
    auto res = run_dispatch(n, batches, ExpertPlacement::round_robin(8, n), top_k);
    for (int r = 0; r < n; ++r) {
        EXPECT_EQ(res.recv[r], std::vector<size_t>(n, 0));
        EXPECT_TRUE(res.experts[r].calls.empty());
        EXPECT_TRUE(res.out[r].empty());
    }
}

TEST(Dispatcher, ReplicasSplitTokensByLoadAndStillCombineExactly) {
    // Expert 0 has copies on cards 1 and 2; every token uses it. Card 0 sends: least-loaded replica,
    // ties to the lower rank, so tokens alternate 1, 2, 1, ...
    const int n = 3, top_k = 1, num_experts = 2;
    Batch b = make_batch(0, 9, top_k, num_experts, 5);
    for (auto& e : b.ids) e = 0;
    std::vector<Batch> batches(n);
    batches[0] = b;
    ExpertPlacement placement;
    placement.replicas = {{1, 2}, {0}};
    auto res = run_dispatch(n, batches, placement, top_k);
    EXPECT_EQ(res.out[0], expected_output(b, top_k));
    EXPECT_EQ(res.sent[0], (std::vector<size_t>{0, 5, 4}));
    ASSERT_EQ(res.experts[1].calls.size(), 1u);
    EXPECT_EQ(res.experts[1].calls[0], std::make_pair(0, int64_t{5}));
}

TEST(Dispatcher, ReplicaOnTheSendingCardWinsTiesSoTrafficStaysLocal) {
    const int n = 2, top_k = 1;
    Batch b = make_batch(1, 4, top_k, 1, 9);
    std::vector<Batch> batches(n);
    batches[1] = b;
    ExpertPlacement placement;
    placement.replicas = {{0, 1}};
    auto res = run_dispatch(n, batches, placement, top_k);
    EXPECT_EQ(res.out[1], expected_output(b, top_k));
    EXPECT_EQ(res.sent[1], (std::vector<size_t>{2, 2}));  // 1 (tie, local), 0, 1, 0
}

TEST(Dispatcher, EveryCardSendingAtOnceGetsItsOwnTokensBack) {
    const int n = 4, top_k = 3, num_experts = 12;
    std::vector<Batch> batches;
    for (int r = 0; r < n; ++r) batches.push_back(make_batch(r, 5 + 4 * r, top_k, num_experts, 77));
    ExpertPlacement placement = ExpertPlacement::round_robin(num_experts, n);
    placement.replicas[3].push_back(0);  // a replica too
    auto res = run_dispatch(n, batches, placement, top_k);
    for (int r = 0; r < n; ++r) EXPECT_EQ(res.out[r], expected_output(batches[r], top_k)) << "rank " << r;
}

TEST(Dispatcher, EightBitTransferStaysWithinHalfAQuantisationStepPerRow) {
    const int n = 2, top_k = 2, num_experts = 4;
    std::vector<Batch> batches(n);
    Batch& b = batches[0] = make_batch(0, 64, top_k, num_experts, 3);
    std::mt19937 rng(11);
    std::normal_distribution<float> gauss(0.f, 3.f);
    for (auto& x : b.hidden) x = gauss(rng);
    auto res = run_dispatch(n, batches, ExpertPlacement::round_robin(num_experts, n), top_k, /*quantize=*/true);
    const auto exact = expected_output(b, top_k);
    double err2 = 0, ref2 = 0;
    for (int64_t t = 0; t < b.num_tokens; ++t) {
        float absmax = 0, gain = 0;
        for (int64_t d = 0; d < kDim; ++d) absmax = std::max(absmax, std::fabs(b.hidden[t * kDim + d]));
        for (int j = 0; j < top_k; ++j) gain += b.weights[t * top_k + j] * (b.ids[t * top_k + j] + 1);
        const float bound = gain * absmax / 127.f * 0.5f * 1.0001f;
        for (int64_t d = 0; d < kDim; ++d) {
            const float e = res.out[0][t * kDim + d] - exact[t * kDim + d];
            EXPECT_LE(std::fabs(e), bound) << "token " << t << " dim " << d;
            err2 += double(e) * e;
            ref2 += double(exact[t * kDim + d]) * exact[t * kDim + d];
        }
    }
    const double nmse = err2 / ref2;
    EXPECT_LT(nmse, 1e-4);
    RecordProperty("nmse_8bit", std::to_string(nmse));
    std::printf("8-bit dispatch NMSE %.3g\n", nmse);
}

TEST(Dispatcher, CommBuffersAreChargedToTheCardAndRefusedOverBudget) {
    auto comms = make_local_communicators(1);
    CpuDevice card("tiny", 1024);
    Dispatcher d(*comms[0], card, DispatchConfig{.hidden_dim = kDim, .top_k = 1});
    Batch b = make_batch(0, 64, 1, 1, 1);  // 64 rows x ~100 bytes do not fit in 1 KiB
    DispatchHandle h;
    std::vector<float> out(b.num_tokens * kDim);
    ScaleExperts experts;
    EXPECT_THROW(d.forward(h, ExpertPlacement::all_on(1, 0), experts, b.hidden.data(), b.num_tokens, b.ids.data(),
                           b.weights.data(), out.data()),
                 moerig::OutOfMemoryError);
}

TEST(Dispatcher, CombineBeforeRunningExpertsIsRefused) {
    auto comms = make_local_communicators(1);
    CpuDevice card("card0", kBudget);
    Dispatcher d(*comms[0], card, DispatchConfig{.hidden_dim = kDim, .top_k = 1});
    Batch b = make_batch(0, 2, 1, 1, 1);
    DispatchHandle h;
    d.dispatch(h, ExpertPlacement::all_on(1, 0), b.hidden.data(), b.num_tokens, b.ids.data(), b.weights.data());
    std::vector<float> out(b.num_tokens * kDim);
    EXPECT_THROW(d.combine(h, out.data()), moerig::ConfigError);
}

TEST(Dispatcher, RoutingToAnExpertOutsideThePlacementNamesTheToken) {
    auto comms = make_local_communicators(1);
    CpuDevice card("card0", kBudget);
    Dispatcher d(*comms[0], card, DispatchConfig{.hidden_dim = kDim, .top_k = 1});
    Batch b = make_batch(0, 3, 1, 1, 1);
    b.ids[2] = 5;
    DispatchHandle h;
    try {
        d.dispatch(h, ExpertPlacement::all_on(2, 0), b.hidden.data(), b.num_tokens, b.ids.data(), b.weights.data());
        FAIL();
    } catch (const moerig::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("token 2 slot 0 routes to expert 5"), std::string::npos) << e.what();
    }
}

TEST(Dispatcher, RanksOutsideALayersParticipantsNeitherCallNorExchangeAnything) {
    const int n = 4, top_k = 2, num_experts = 6;
    auto comms = make_local_communicators(n);
    std::vector<std::unique_ptr<CpuDevice>> cards;
    for (int r = 0; r < n; ++r) cards.push_back(std::make_unique<CpuDevice>("card" + std::to_string(r), kBudget, r));
    Batch b = make_batch(0, 11, top_k, num_experts, 21);
    const auto placement = ExpertPlacement::all_on(num_experts, 2);
    const std::vector<int> participants = {0, 2};
    std::vector<float> out(b.num_tokens * kDim);
    run_on_ranks(comms, [&](int r) {
        if (r != 0 && r != 2) return;
        Dispatcher d(*comms[r], *cards[r], DispatchConfig{.hidden_dim = kDim, .top_k = top_k});
        DispatchHandle h;
        ScaleExperts experts;
        const bool src = r == 0;
        d.forward(h, placement, experts, src ? b.hidden.data() : nullptr, src ? b.num_tokens : 0,
                  src ? b.ids.data() : nullptr, src ? b.weights.data() : nullptr, src ? out.data() : nullptr,
                  participants);
    });
    EXPECT_EQ(out, expected_output(b, top_k));
    EXPECT_EQ(comms[1]->stats().num_groups, 0u);
    EXPECT_EQ(comms[3]->stats().num_groups, 0u);
    EXPECT_EQ(comms[0]->stats().bytes_sent, sizeof(size_t) + 11 * (kDim * 4 + top_k * 8));
}
