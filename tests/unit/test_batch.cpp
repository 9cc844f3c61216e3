// Batching across sequences on one card: sequences of different lengths, prefill and decode mixed in one step,
// must give each sequence the logits (NMSE 1e-6) and greedy tokens it gets when run alone through Session.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/error.h"
#include "kernels/ops.h"
#include "runtime/batch.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tests/common/greedy_run.h"

using namespace moerig::runtime;
using moerig::test::nmse;

namespace {

constexpr int64_t kContext = 64;
constexpr int kNumGenerated = 5;

std::string model_path(const std::string& name) {
    return std::string(MOERIG_TEST_DATA) + "/models/" + name + ".gguf";
}

/// A sequence of the batch: its prompt, fed in chunks from step start_step on, then greedy decoding.
struct SeqScript {
    std::vector<int32_t> prompt;
    std::vector<size_t> chunks;  // prompt chunk sizes, one per step; they sum to prompt.size()
    int start_step = 0;
};

const std::vector<SeqScript> kScripts = {
    {{1, 17, 230, 45, 9, 301, 77, 12}, {8}, 0},
    {{5, 6, 7}, {3}, 0},
    {{400, 3, 99, 250, 8, 8, 61, 2, 140, 33, 71}, {4, 7}, 1},  // chunked prefill next to others' decode
    {{42}, {1}, 2},
    {{11, 12, 13, 14, 15, 16}, {2, 2, 2}, 0},
};

struct SeqResult {
    std::vector<int32_t> tokens;             // greedy
    std::vector<std::vector<float>> logits;  // [generated token] the logits it was chosen from
};

int32_t argmax(const std::vector<float>& logits) {
    return static_cast<int32_t>(moerig::kernels::argmax(logits.data(), static_cast<int64_t>(logits.size())));
}

SeqResult run_alone(const Model& model, const SeqScript& script) {
    Session session(model, kContext);
    SeqResult r;
    std::vector<float> logits = session.eval(script.prompt);
    for (int i = 0; i < kNumGenerated; ++i) {
        r.logits.push_back(logits);
        r.tokens.push_back(argmax(logits));
        logits = session.eval(std::span<const int32_t>(&r.tokens.back(), 1));
    }
    return r;
}

/// Runs every script in slots of one BatchSession (or anything with the same eval), step by step.
template <class Eval>
std::vector<SeqResult> run_batched(const std::vector<SeqScript>& scripts, Eval&& eval) {
    std::vector<SeqResult> results(scripts.size());
    std::vector<size_t> fed(scripts.size(), 0), chunk_idx(scripts.size(), 0);
    for (int step = 0;; ++step) {
        std::vector<SeqTokens> entries;
        std::vector<size_t> who;
        for (size_t s = 0; s < scripts.size(); ++s) {
            const SeqScript& sc = scripts[s];
            if (step < sc.start_step || results[s].tokens.size() == kNumGenerated) continue;
            std::span<const int32_t> tokens;
            if (chunk_idx[s] < sc.chunks.size()) {
                tokens = std::span<const int32_t>(sc.prompt).subspan(fed[s], sc.chunks[chunk_idx[s]]);
                fed[s] += sc.chunks[chunk_idx[s]++];
            } else {
                tokens = std::span<const int32_t>(&results[s].tokens.back(), 1);
            }
            entries.push_back(SeqTokens{.slot_idx = static_cast<int>(s), .tokens = tokens});
            who.push_back(s);
        }
        if (entries.empty()) break;
        const std::vector<std::vector<float>> logits = eval(std::span<const SeqTokens>(entries));
        for (size_t i = 0; i < who.size(); ++i) {
            const size_t s = who[i];
            if (chunk_idx[s] < scripts[s].chunks.size()) continue;  // mid-prompt: no token yet
            results[s].logits.push_back(logits[i]);
            results[s].tokens.push_back(argmax(logits[i]));
        }
    }
    return results;
}

class BatchEquivalence : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(BatchEquivalence, MixedPrefillAndDecodeOfManySequencesMatchesEachRunAlone) {
    auto model = Model::load(model_path(GetParam()), ModelOptions{.num_threads = 1, .context = kContext});
    BatchSession batch(*model, static_cast<int>(kScripts.size()), kContext);
    const std::vector<SeqResult> got =
        run_batched(kScripts, [&](std::span<const SeqTokens> e) { return batch.eval(e); });
    for (size_t s = 0; s < kScripts.size(); ++s) {
        SCOPED_TRACE("sequence " + std::to_string(s));
        const SeqResult ref = run_alone(*model, kScripts[s]);
        EXPECT_EQ(got[s].tokens, ref.tokens);
        ASSERT_EQ(got[s].logits.size(), ref.logits.size());
        for (size_t i = 0; i < ref.logits.size(); ++i) EXPECT_LE(nmse(got[s].logits[i], ref.logits[i]), 1e-6) << i;
        EXPECT_EQ(batch.n_past(static_cast<int>(s)),
                  static_cast<int64_t>(kScripts[s].prompt.size()) + kNumGenerated - 1);
    }
}

INSTANTIATE_TEST_SUITE_P(FixtureModels, BatchEquivalence,
                         ::testing::Values("qwen3moe-f32", "mixtral-f32", "olmoe-f32", "qwen2moe-f32",
                                           "deepseek2-lite-f32", "deepseek2-v3-f32", "gpt-oss-mxfp4"));

TEST(Batch, AllLogitsEntryGivesEveryTokensLogitsNextToALastTokenEntry) {
    auto model = Model::load(model_path("qwen3moe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    const int64_t n_vocab = model->hparams().n_vocab;
    const std::vector<int32_t> a = {1, 17, 230, 45}, b = {9, 301, 77};
    Session alone(*model, kContext);
    const std::vector<float> ref = alone.eval(a, /*all_logits=*/true);
    BatchSession batch(*model, 2, kContext);
    const SeqTokens entries[] = {{.slot_idx = 1, .tokens = b}, {.slot_idx = 0, .tokens = a, .all_logits = true}};
    const auto out = batch.eval(entries);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].size(), static_cast<size_t>(n_vocab));
    ASSERT_EQ(out[1].size(), ref.size());
    EXPECT_LE(nmse(out[1], ref), 1e-6);
}

TEST(Batch, ResetSlotStartsANewSequenceWithoutTouchingTheOthers) {
    auto model = Model::load(model_path("olmoe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    const std::vector<int32_t> a = {1, 17, 230, 45}, b = {9, 301, 77}, c = {5, 6};
    BatchSession batch(*model, 2, kContext);
    const SeqTokens first[] = {{.slot_idx = 0, .tokens = a}, {.slot_idx = 1, .tokens = b}};
    batch.eval(first);
    batch.reset(0);
    const SeqTokens second[] = {{.slot_idx = 0, .tokens = c}, {.slot_idx = 1, .tokens = c}};
    const auto out = batch.eval(second);
    Session s0(*model, kContext), s1(*model, kContext);
    s1.eval(b);
    EXPECT_LE(nmse(out[0], s0.eval(c)), 1e-6);
    EXPECT_LE(nmse(out[1], s1.eval(c)), 1e-6);
    EXPECT_EQ(batch.n_past(0), 2);
    EXPECT_EQ(batch.n_past(1), 5);
}

TEST(Batch, BadStepsAreRefusedWithoutAdvancingAnySlot) {
    auto model = Model::load(model_path("qwen3moe-f32"), ModelOptions{.num_threads = 1, .context = 8});
    BatchSession batch(*model, 2, 8);
    const std::vector<int32_t> t = {1, 2, 3}, nine(9, 4);
    const SeqTokens twice[] = {{.slot_idx = 0, .tokens = t}, {.slot_idx = 0, .tokens = t}};
    EXPECT_THROW(batch.eval(twice), moerig::ConfigError);
    const SeqTokens out_of_range[] = {{.slot_idx = 2, .tokens = t}};
    EXPECT_THROW(batch.eval(out_of_range), moerig::ConfigError);
    const SeqTokens too_long[] = {{.slot_idx = 0, .tokens = t}, {.slot_idx = 1, .tokens = nine}};
    EXPECT_THROW(batch.eval(too_long), moerig::ConfigError);
    const SeqTokens empty[] = {{.slot_idx = 1, .tokens = {}}};
    EXPECT_THROW(batch.eval(empty), moerig::ConfigError);
    EXPECT_THROW(batch.eval({}), moerig::ConfigError);
    EXPECT_EQ(batch.n_past(0), 0);
    EXPECT_EQ(batch.n_past(1), 0);
}
