// Proof that sharding changes nothing: the fixture models run on 1 card and on 2, 3, 4 and 8 virtual
// cards under pipeline, expert-parallel, hybrid and replicated-expert layouts must give the same greedy
// tokens and logits within NMSE 1e-6; every card stays within its budget and holds exactly its share;
// a layout needing more than a card's budget is refused before anything is loaded.
#include <gtest/gtest.h>
#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

#include <cmath>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "kernels/ops.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/sharded_executor.h"
#include "runtime/sharded_run.h"
#include "tests/common/greedy_run.h"

using namespace moerig::runtime;
using moerig::test::GreedyRun;
using moerig::test::nmse;

namespace {

constexpr size_t kBudget = size_t{256} << 20;
constexpr int64_t kContext = 64;
constexpr int kNumGenerated = 6;

std::string model_path(const std::string& name) {
    return std::string(MOERIG_TEST_DATA) + "/models/" + name + ".gguf";
}

const std::vector<int32_t> kPrompt = {1, 17, 230, 45, 9, 301, 77, 12};

struct LayoutCase {
    std::string name;
    ShardLayout (*make)(const ModelHParams&);
};

const LayoutCase kLayouts[] = {
    {"pipeline2", [](const ModelHParams& hp) { return ShardLayout::pipeline(hp, 2, kBudget); }},
    {"expert_parallel3", [](const ModelHParams& hp) { return ShardLayout::expert_parallel(hp, 3, kBudget); }},
    {"hybrid4", [](const ModelHParams& hp) { return ShardLayout::hybrid(hp, 4, 2, kBudget); }},
    {"replicated4", [](const ModelHParams& hp) { return ShardLayout::replicated(hp, 4, 3, kBudget); }},
    {"expert_parallel8", [](const ModelHParams& hp) { return ShardLayout::expert_parallel(hp, 8, kBudget); }},
    {"pipeline8", [](const ModelHParams& hp) { return ShardLayout::pipeline(hp, 8, kBudget); }},
};

class ShardedEquivalence : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(ShardedEquivalence, EveryLayoutGivesTheOneCardTokensAndLogits) {
    std::unique_ptr<Model> model;
    try {
        model = Model::load(model_path(GetParam()), ModelOptions{.num_threads = 1, .context = kContext});
    } catch (const moerig::Error& e) {
        // Without the one-card reference there is nothing to compare (the engine's parity tests own this).
        GTEST_SKIP() << "the engine cannot load this fixture: " << e.what();
    }
    Session session(*model, kContext);
    const GreedyRun ref =
        moerig::test::greedy([&](std::span<const int32_t> t) { return session.eval(t); }, kPrompt, kNumGenerated);
    for (const LayoutCase& lc : kLayouts) {
        SCOPED_TRACE(lc.name);
        ShardedModel sharded(*model, lc.make(model->hparams()), ShardedOptions{.context = kContext});
        const GreedyRun run =
            moerig::test::greedy([&](std::span<const int32_t> t) { return sharded.eval(t); }, kPrompt, kNumGenerated);
        moerig::test::expect_same_run(run, ref);

        const auto shares = card_share_bytes(model->gguf(), model->hparams(), sharded.layout(), kContext);
        size_t total_weights = 0;
        for (size_t c = 0; c < shares.size(); ++c) {
            const CardStats s = sharded.card_stats()[c];
            EXPECT_LE(s.peak_bytes, s.budget_bytes) << s.name;
            EXPECT_EQ(s.weights_bytes, shares[c].dense_weights + shares[c].expert_weights) << s.name;
            EXPECT_EQ(s.kv_bytes, shares[c].kv_cache) << s.name;
            total_weights += s.weights_bytes;
        }
        // Every tensor but the token embedding (host memory) is held exactly once, replicas aside.
        if (lc.name.rfind("replicated", 0) != 0) {
            size_t file_bytes = 0;
            for (const auto& t : model->gguf().tensors())
                if (t.name != "token_embd.weight") file_bytes += t.num_bytes;
            EXPECT_EQ(total_weights, file_bytes);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(FixtureModels, ShardedEquivalence,
                         ::testing::Values("qwen3moe-f32", "mixtral-f32", "olmoe-f32", "qwen2moe-f32",
                                           "deepseek2-lite-f32", "deepseek2-v3-f32", "qwen3moe-q4_k_m", "gpt-oss-mxfp4",
                                           "mixtral-q8_0", "qwen3moe-f16", "olmoe-bf16", "deepseek2-v3-q6_k"));

TEST(Sharded, PipelineLayoutMatchesTheOneCardLogitsBitForBit) {
    // Each layer's experts on its stage card run through the engine's own local path, so a pure layer
    // split changes only where the work runs, not the arithmetic.
    auto model = Model::load(model_path("qwen3moe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    Session session(*model, kContext);
    const GreedyRun ref =
        moerig::test::greedy([&](std::span<const int32_t> t) { return session.eval(t); }, kPrompt, kNumGenerated);
    ShardedModel sharded(*model, ShardLayout::pipeline(model->hparams(), 2, kBudget),
                         ShardedOptions{.context = kContext});
    const GreedyRun run =
        moerig::test::greedy([&](std::span<const int32_t> t) { return sharded.eval(t); }, kPrompt, kNumGenerated);
    EXPECT_EQ(run.logits, ref.logits);
}

TEST(Sharded, LayoutOverACardsBudgetIsRefusedBeforeLoading) {
    auto model = Model::load(model_path("qwen2moe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    ShardLayout layout = ShardLayout::expert_parallel(model->hparams(), 2, kBudget);
    const auto shares = card_share_bytes(model->gguf(), model->hparams(), layout, kContext);
    layout.cards[1].name = "small-card";
    layout.cards[1].budget_bytes = shares[1].total() - 1;
    try {
        ShardedModel sharded(*model, layout, ShardedOptions{.context = kContext});
        FAIL() << "expected OutOfMemoryError";
    } catch (const moerig::OutOfMemoryError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("small-card"), std::string::npos) << msg;
        EXPECT_NE(msg.find("nothing was loaded"), std::string::npos) << msg;
    }
    layout.cards[1].budget_bytes = shares[1].total();  // exactly enough is enough
    EXPECT_NO_THROW(ShardedModel(*model, layout, ShardedOptions{.context = kContext}));
}

TEST(Sharded, EmulatedLinksCountTrafficAndModelTimeWithoutChangingResults) {
    auto model = Model::load(model_path("deepseek2-v3-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    ShardLayout layout = ShardLayout::expert_parallel(model->hparams(), 4, kBudget);
    layout.set_links(LinkSpec{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 20e-6});
    ShardedModel plain(*model, layout, ShardedOptions{.context = kContext});
    ShardedModel emulated(*model, layout, ShardedOptions{.context = kContext, .emulate_links = true});
    const GreedyRun a =
        moerig::test::greedy([&](std::span<const int32_t> t) { return plain.eval(t); }, kPrompt, kNumGenerated);
    const GreedyRun b =
        moerig::test::greedy([&](std::span<const int32_t> t) { return emulated.eval(t); }, kPrompt, kNumGenerated);
    EXPECT_EQ(a.logits, b.logits);
    size_t sent = 0, received = 0;
    for (const CardStats& s : emulated.card_stats()) {
        sent += s.bytes_sent;
        received += s.bytes_received;
    }
    EXPECT_GT(sent, 0u);
    EXPECT_EQ(sent, received);
    // A lower bound the model must respect: all bytes cross at least one x1 gen1 link.
    EXPECT_GE(emulated.modelled_s(), double(sent) / 4 / 0.25e9);
}

TEST(Sharded, ComputeClockPutsEachCardsComputeOnItsOwnClockWithoutChangingResults) {
    auto model = Model::load(model_path("qwen3moe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    const LinkSpec x1{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 20e-6};
    ShardLayout pipeline = ShardLayout::pipeline(model->hparams(), 2, kBudget);
    pipeline.set_links(x1);
    ShardLayout ep = ShardLayout::expert_parallel(model->hparams(), 4, kBudget);
    ep.set_links(x1);
    ShardedModel plain(*model, pipeline, ShardedOptions{.context = kContext});
    const GreedyRun ref =
        moerig::test::greedy([&](std::span<const int32_t> t) { return plain.eval(t); }, kPrompt, kNumGenerated);
#ifdef __linux__
    // The cards compute on one core during a step (rank 0 on the caller's thread); the caller gets its CPUs back.
    cpu_set_t before;
    ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(before), &before), 0);
#endif
    for (const ShardLayout* layout : {&pipeline, &ep}) {
        ShardedModel timed(*model, *layout,
                           ShardedOptions{.context = kContext, .emulate_links = true, .compute_clock = true});
        const GreedyRun got =
            moerig::test::greedy([&](std::span<const int32_t> t) { return timed.eval(t); }, kPrompt, kNumGenerated);
        EXPECT_EQ(got.tokens, ref.tokens);
        double sum = 0, most = 0, links = 0;
        for (const CardStats& c : timed.card_stats()) {
            EXPECT_GT(c.compute_clock_s, 0.0) << c.name;
            sum += c.compute_clock_s;
            most = std::max(most, c.compute_clock_s);
            links = std::max(links, c.modelled_link_s);
        }
        EXPECT_GE(timed.modelled_s(), most);
        EXPECT_GE(timed.modelled_s(), links);
        // A layer split at batch 1 is serial: every step waits for stage 0, then stage 1, so the clock holds at
        // least every card's compute one after another.
        if (layout == &pipeline) {
            EXPECT_GE(timed.modelled_s(), sum);
        }
    }
#ifdef __linux__
    cpu_set_t after;
    ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(after), &after), 0);
    EXPECT_TRUE(CPU_EQUAL(&before, &after));
#endif
    EXPECT_THROW(ShardedModel(*model, ep, ShardedOptions{.context = kContext, .compute_clock = true}),
                 moerig::ConfigError);
    EXPECT_THROW(
        ShardedModel(
            *model, ep,
            ShardedOptions{.context = kContext, .threads_per_card = 2, .emulate_links = true, .compute_clock = true}),
        moerig::ConfigError);
}

TEST(Sharded, EightBitDispatchStaysCloseToTheOneCardLogits) {
    auto model = Model::load(model_path("qwen3moe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    Session session(*model, kContext);
    const GreedyRun ref =
        moerig::test::greedy([&](std::span<const int32_t> t) { return session.eval(t); }, kPrompt, kNumGenerated);
    ShardedModel sharded(*model, ShardLayout::expert_parallel(model->hparams(), 4, kBudget),
                         ShardedOptions{.context = kContext, .quantize_8bit = true});
    const auto logits = sharded.eval(std::span<const int32_t>(kPrompt));
    const double e = nmse(logits, ref.logits[0]);
    std::printf("8-bit dispatch, qwen3moe-f32 on 4 cards: prompt logits NMSE %.3g\n", e);
    EXPECT_LT(e, 1e-3);
}

TEST(Sharded, PlannedLayoutOnARigRunsWithinThePlansMemoryPrediction) {
    const std::pair<const char*, const char*> kCases[] = {{"p106-8x-gen1x1", "auto"},
                                                          {"p106-8x-gen1x1", "expert-parallel"},
                                                          {"rtx3060-6x-gen3x4", "hybrid"},
                                                          {"mixed-cmp40hx-3070-p104", "pipeline"}};
    for (auto [rig, choice] : kCases) {
        SCOPED_TRACE(std::string(rig) + " " + choice);
        auto model = Model::load(model_path("deepseek2-v3-f32"), ModelOptions{.num_threads = 1, .context = kContext});
        std::string strategy;
        ShardLayout layout =
            plan_layout(*model, rig, kContext, static_cast<int64_t>(kPrompt.size()), kNumGenerated, choice, &strategy);
        ShardedModel sharded(*model, layout, ShardedOptions{.context = kContext});
        Session session(*model, kContext);
        const GreedyRun ref =
            moerig::test::greedy([&](std::span<const int32_t> t) { return session.eval(t); }, kPrompt, kNumGenerated);
        const GreedyRun run =
            moerig::test::greedy([&](std::span<const int32_t> t) { return sharded.eval(t); }, kPrompt, kNumGenerated);
        EXPECT_EQ(run.tokens, ref.tokens) << strategy;
        for (const CardStats& s : sharded.card_stats()) {
            std::printf("%s %s card %s: weights+kv %zu, predicted %zu, peak %zu of %zu\n", rig, strategy.c_str(),
                        s.name.c_str(), s.weights_bytes + s.kv_bytes, s.predicted_bytes, s.peak_bytes, s.budget_bytes);
            EXPECT_LE(s.peak_bytes, s.budget_bytes) << s.name;
            const double measured = double(s.weights_bytes + s.kv_bytes);
            EXPECT_NEAR(measured, double(s.predicted_bytes), 0.05 * double(s.predicted_bytes)) << s.name;
        }
    }
}

TEST(Sharded, RunShardedGeneratesTheOneCardGreedyTokensAndReportsEveryCard) {
    const std::string path = model_path("qwen3moe-f32");
    auto model = Model::load(path, ModelOptions{.num_threads = 1, .context = kContext});
    Session session(*model, kContext);
    const GreedyRun ref =
        moerig::test::greedy([&](std::span<const int32_t> t) { return session.eval(t); }, kPrompt, kNumGenerated);
    ShardedRunRequest req;
    req.model_path = path;
    req.rig = "rtx3060-6x-gen3x4";
    req.prompt = kPrompt;
    req.max_tokens = kNumGenerated;
    req.stop_at_eog = false;
    req.sampler.temp = 0;
    req.context = kContext;
    req.emulate_links = true;
    const ShardedRunResult res = run_sharded(req);
    EXPECT_EQ(res.tokens, ref.tokens);
    EXPECT_EQ(res.cards.size(), 6u);
    EXPECT_FALSE(res.strategy.empty());
    EXPECT_GT(res.predicted_decode_tokens_per_s, 0.0);
}
