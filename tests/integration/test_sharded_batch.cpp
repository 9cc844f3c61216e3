// Batching across sequences on virtual cards: 8 sequences with different prompts, prefill and decode mixed,
// evaluated together on 4 cards (pipeline, expert-parallel, hybrid) give every sequence the greedy tokens of a
// one-card run of it alone; a step needs as many dispatcher exchanges as a one-sequence step; each slot's KV
// cache is charged to the stage cards, and slots x context that do not fit are refused.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/error.h"
#include "kernels/ops.h"
#include "runtime/batch.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/sharded_executor.h"
#include "tests/common/greedy_run.h"

using namespace moerig::runtime;

namespace {

constexpr size_t kBudget = size_t{256} << 20;
constexpr int64_t kContext = 48;
constexpr int kNumGenerated = 5;
constexpr int kNumSeqs = 8;

std::string model_path(const std::string& name) {
    return std::string(MOERIG_TEST_DATA) + "/models/" + name + ".gguf";
}

/// Prompt of sequence s: different lengths (2..16) and tokens; sequences start over the first three steps.
std::vector<int32_t> prompt_of(int s) {
    std::vector<int32_t> p;
    for (int i = 0; i < 2 + 2 * s; ++i) p.push_back(static_cast<int32_t>((37 * s + 11 * i + 5) % 997 + 1));
    return p;
}
int start_step_of(int s) {
    return s % 3;
}

int32_t argmax(const std::vector<float>& logits) {
    return static_cast<int32_t>(moerig::kernels::argmax(logits.data(), static_cast<int64_t>(logits.size())));
}

std::vector<int32_t> greedy_alone(const Model& model, const std::vector<int32_t>& prompt) {
    Session session(model, kContext);
    std::vector<int32_t> out;
    std::vector<float> logits = session.eval(prompt);
    for (int i = 0; i < kNumGenerated; ++i) {
        out.push_back(argmax(logits));
        logits = session.eval(std::span<const int32_t>(&out.back(), 1));
    }
    return out;
}

std::vector<std::vector<int32_t>> greedy_batched(ShardedModel& sharded) {
    std::vector<std::vector<int32_t>> prompts, out(kNumSeqs);
    for (int s = 0; s < kNumSeqs; ++s) prompts.push_back(prompt_of(s));
    for (int step = 0;; ++step) {
        std::vector<SeqTokens> entries;
        for (int s = 0; s < kNumSeqs; ++s) {
            if (step < start_step_of(s) || out[s].size() == kNumGenerated) continue;
            const bool prefill = step == start_step_of(s);
            entries.push_back(SeqTokens{.slot_idx = s,
                                        .tokens = prefill ? std::span<const int32_t>(prompts[s])
                                                          : std::span<const int32_t>(&out[s].back(), 1)});
        }
        if (entries.empty()) break;
        const auto logits = sharded.eval(std::span<const SeqTokens>(entries));
        for (size_t i = 0; i < entries.size(); ++i) out[entries[i].slot_idx].push_back(argmax(logits[i]));
    }
    return out;
}

class ShardedBatchEquivalence : public ::testing::TestWithParam<std::string> {};

/// Communication groups (hand-offs and dispatcher exchanges) completed so far, over all cards.
size_t num_groups(const ShardedModel& sharded) {
    size_t n = 0;
    for (const CardStats& c : sharded.card_stats()) n += c.num_groups;
    return n;
}

}  // namespace

TEST_P(ShardedBatchEquivalence, EightSequencesTogetherGiveEachItsOneCardGreedyTokens) {
    auto model = Model::load(model_path(GetParam()), ModelOptions{.num_threads = 1, .context = kContext});
    std::vector<std::vector<int32_t>> ref;
    for (int s = 0; s < kNumSeqs; ++s) ref.push_back(greedy_alone(*model, prompt_of(s)));
    for (const moerig::test::LayoutCase& lc : moerig::test::four_card_layouts()) {
        SCOPED_TRACE(lc.name);
        ShardedModel sharded(*model, lc.make(model->hparams(), kBudget),
                             ShardedOptions{.context = kContext, .num_slots = kNumSeqs});
        const auto got = greedy_batched(sharded);
        for (int s = 0; s < kNumSeqs; ++s) EXPECT_EQ(got[s], ref[s]) << "sequence " << s;
        for (const CardStats& c : sharded.card_stats()) EXPECT_LE(c.peak_bytes, c.budget_bytes) << c.name;
    }
}

INSTANTIATE_TEST_SUITE_P(FixtureModels, ShardedBatchEquivalence,
                         ::testing::Values("qwen3moe-f32", "mixtral-f32", "deepseek2-v3-f32", "qwen3moe-q4_k_m"));

TEST(ShardedBatch, ABatchedStepNeedsNoMoreExchangesThanOneSequence) {
    auto model = Model::load(model_path("qwen3moe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    ShardedModel sharded(*model, ShardLayout::expert_parallel(model->hparams(), 4, kBudget),
                         ShardedOptions{.context = kContext, .num_slots = kNumSeqs});
    const std::vector<int32_t> tok = {7};
    const SeqTokens one[] = {{.slot_idx = 0, .tokens = tok}};
    std::vector<SeqTokens> all;
    for (int s = 0; s < kNumSeqs; ++s) all.push_back(SeqTokens{.slot_idx = s, .tokens = tok});
    const size_t before = num_groups(sharded);
    sharded.eval(one);
    const size_t one_step = num_groups(sharded) - before;
    sharded.eval(all);
    const size_t batch_step = num_groups(sharded) - before - one_step;
    EXPECT_GT(one_step, 0u);
    EXPECT_EQ(batch_step, one_step);
}

TEST(ShardedBatch, EverySlotsKvCacheIsChargedAndTooManySlotsAreRefused) {
    auto model = Model::load(model_path("qwen2moe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    ShardLayout layout = ShardLayout::pipeline(model->hparams(), 2, kBudget);
    const auto shares = card_share_bytes(model->gguf(), model->hparams(), layout, kContext);
    ASSERT_GT(shares[1].kv_cache, 0u);
    {
        ShardedModel sharded(*model, layout, ShardedOptions{.context = kContext, .num_slots = 3});
        const auto stats = sharded.card_stats();
        for (size_t c = 0; c < stats.size(); ++c) EXPECT_EQ(stats[c].kv_bytes, 3 * shares[c].kv_cache) << c;
    }
    // Card 1 gets exactly room for its weights and two slots' KV: two slots fit, three are refused.
    layout.cards[1].name = "tight-card";
    layout.cards[1].budget_bytes = shares[1].dense_weights + shares[1].expert_weights + 2 * shares[1].kv_cache;
    EXPECT_NO_THROW(ShardedModel(*model, layout, ShardedOptions{.context = kContext, .num_slots = 2}));
    try {
        ShardedModel sharded(*model, layout, ShardedOptions{.context = kContext, .num_slots = 3});
        FAIL() << "expected OutOfMemoryError";
    } catch (const moerig::OutOfMemoryError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("tight-card"), std::string::npos) << msg;
        EXPECT_NE(msg.find("3 sequence(s)"), std::string::npos) << msg;
    }
}
