// Steps split into ubatches (ShardedOptions::max_step_rows): a prompt evaluated a few rows at a time gives the
// logits of one step, since KV positions continue; and a plan whose cards are packed to the last byte runs a
// prompt longer than the rows it reserved buffers for, with the one-card tokens and every card within budget.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "kernels/ops.h"
#include "proto/plan.pb.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/sharded_executor.h"
#include "runtime/sharded_run.h"
#include "sharding/accounting.h"
#include "sharding/plan_io.h"
#include "sharding/planner.h"
#include "sharding/rig.h"
#include "tests/common/greedy_run.h"

using namespace moerig::runtime;
using moerig::test::nmse;
namespace fs = std::filesystem;

namespace {

constexpr size_t kBudget = size_t{256} << 20;
constexpr int64_t kContext = 64;
constexpr int kNumGenerated = 6;
const std::vector<int32_t> kPrompt = {1, 17, 230, 45, 9, 301, 77, 12};
/// Longer than the one-row steps the tight plan below reserves buffers for.
const std::vector<int32_t> kLongPrompt = {1,  17, 230, 45, 9,   301, 77, 12,  5,  88, 140, 61,
                                          33, 7,  250, 19, 402, 3,   64, 111, 28, 90, 2,   17};

std::string model_path(const std::string& name) {
    return std::string(MOERIG_TEST_DATA) + "/models/" + name + ".gguf";
}

/// Row by row: every logits row of `a` within 1e-6 NMSE of `ref`'s.
void expect_rows_close(const std::vector<float>& a, const std::vector<float>& ref, int64_t n_vocab) {
    ASSERT_EQ(a.size(), ref.size());
    for (size_t row = 0; row * n_vocab < ref.size(); ++row) {
        const std::span<const float> ar(a.data() + row * n_vocab, n_vocab), rr(ref.data() + row * n_vocab, n_vocab);
        EXPECT_LE(nmse(ar, rr), 1e-6) << "row " << row;
    }
}

struct TempDir {
    fs::path path = fs::temp_directory_path() / ("moerig_ubatch_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
};

/// Two P106-100 cards on gen1 x1 with usable_bytes of VRAM each (plus a 64 KiB reserve).
std::string write_rig(const fs::path& dir, uint64_t usable_bytes) {
    const uint64_t vram_bytes = usable_bytes + 65536;
    const fs::path path = dir / ("tight-" + std::to_string(vram_bytes) + ".yaml");
    std::ofstream out(path);
    out << "name: tight\nhost:\n  name: rig0\n  ram: 1 GiB\n  mem_bw: 38.4 GB/s\ncards:\n"
        << "  - card: P106-100\n    count: 2\n    pcie_gen: 1\n    lanes: 1\n    vram: " << vram_bytes
        << "\n    reserve: 65536\n";
    return path.string();
}

/// The plan for one-token steps (batch 1, a one-token prompt): buffers for a single row; KV in F32 as the
/// virtual cards hold it.
moerig::proto::Plan one_row_plan(const Model& model, const std::string& rig) {
    moerig::sharding::Workload workload;
    workload.context = kContext;
    workload.prompt = 1;
    workload.gen = kNumGenerated;
    moerig::sharding::PlanOptions options;
    options.kv_cache_dtype = moerig::DType::F32;  // the virtual cards' KV cache
    return moerig::sharding::plan(moerig::sharding::account_gguf(model.gguf()), moerig::sharding::load_rig(rig),
                                  workload, options)
        .plan;
}

}  // namespace

class UbatchEquivalence : public ::testing::TestWithParam<const char*> {};

TEST_P(UbatchEquivalence, PromptInUbatchesGivesTheOneStepLogitsAndDecodesOnFromThere) {
    auto model = Model::load(model_path(GetParam()), ModelOptions{.num_threads = 1, .context = kContext});
    const ModelHParams& hp = model->hparams();
    const ShardLayout layout = ShardLayout::expert_parallel(hp, 2, kBudget);
    ShardedModel whole(*model, layout, ShardedOptions{.context = kContext});
    // 3 rows per ubatch (8 tokens: 3 + 3 + 2), logits two rows at a time.
    ShardedModel split(*model, layout, ShardedOptions{.context = kContext, .max_step_rows = 3, .max_logits_rows = 2});
    const std::vector<float> ref = whole.eval(kPrompt, true);
    const std::vector<float> got = split.eval(kPrompt, true);
    ASSERT_EQ(ref.size(), kPrompt.size() * hp.n_vocab);
    expect_rows_close(got, ref, hp.n_vocab);
    EXPECT_EQ(split.n_past(), whole.n_past());
    // Last-token logits only, then a decode step on the cache the ubatches filled.
    whole.reset();
    split.reset();
    const std::vector<float> ref_last = whole.eval(kPrompt);
    const std::vector<float> got_last = split.eval(kPrompt);
    expect_rows_close(got_last, ref_last, hp.n_vocab);
    const auto next = static_cast<int32_t>(moerig::kernels::argmax(ref_last.data(), hp.n_vocab));
    expect_rows_close(split.eval(std::span(&next, 1)), whole.eval(std::span(&next, 1)), hp.n_vocab);
    for (const CardStats& s : split.card_stats()) EXPECT_LE(s.peak_bytes, s.budget_bytes) << s.name;
}

INSTANTIATE_TEST_SUITE_P(FixtureModels, UbatchEquivalence,
                         ::testing::Values("deepseek2-v3-f32", "mixtral-f32", "olmoe-f32", "qwen2moe-f32"));

TEST(ShardedUbatch, BatchedStepSplitAcrossSequencesGivesTheOneStepLogits) {
    // Two sequences (8 and 5 tokens) in ubatches of 3 rows: a ubatch holds the end of one and the start of the
    // next; each sequence's last-token logits come from the ubatch that holds its last token.
    auto model = Model::load(model_path("deepseek2-v3-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    const ModelHParams& hp = model->hparams();
    const ShardLayout layout = ShardLayout::expert_parallel(hp, 2, kBudget);
    const std::vector<int32_t> second = {1, 99, 4, 250, 31};
    const std::vector<SeqTokens> entries = {SeqTokens{.slot_idx = 0, .tokens = kPrompt},
                                            SeqTokens{.slot_idx = 1, .tokens = second, .all_logits = true}};
    ShardedModel whole(*model, layout, ShardedOptions{.context = kContext, .num_slots = 2});
    ShardedModel split(*model, layout, ShardedOptions{.context = kContext, .num_slots = 2, .max_step_rows = 3});
    const auto ref = whole.eval(entries);
    const auto got = split.eval(entries);
    ASSERT_EQ(got.size(), 2u);
    ASSERT_EQ(got[0].size(), static_cast<size_t>(hp.n_vocab));
    ASSERT_EQ(got[1].size(), second.size() * hp.n_vocab);
    expect_rows_close(got[0], ref[0], hp.n_vocab);
    expect_rows_close(got[1], ref[1], hp.n_vocab);
    EXPECT_EQ(split.n_past(0), 8);
    EXPECT_EQ(split.n_past(1), 5);
}

TEST(ShardedUbatch, NegativeRowLimitsAreRefused) {
    auto model = Model::load(model_path("olmoe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    const ShardLayout layout = ShardLayout::expert_parallel(model->hparams(), 2, kBudget);
    EXPECT_THROW(ShardedModel(*model, layout, ShardedOptions{.context = kContext, .max_step_rows = -1}),
                 moerig::ConfigError);
    EXPECT_THROW(ShardedModel(*model, layout, ShardedOptions{.context = kContext, .max_logits_rows = -2}),
                 moerig::ConfigError);
}

TEST(ShardedUbatch, TightlyPackedPlanRunsAPromptLongerThanItsRowsWithinEveryBudget) {
    TempDir dir;
    const std::string path = model_path("deepseek2-v3-f32");
    auto model = Model::load(path, ModelOptions{.num_threads = 1, .context = kContext});
    // The least usable VRAM (to 64 bytes) at which the one-row plan fits two cards: a card is packed to the
    // last expert, so only the buffers the plan reserved are left.
    uint64_t lo = 0, hi = fs::file_size(path) * 2;
    ASSERT_TRUE(one_row_plan(*model, write_rig(dir.path, hi)).fits());
    while (hi - lo > 64) {
        const uint64_t mid = lo + (hi - lo) / 2;
        (one_row_plan(*model, write_rig(dir.path, mid)).fits() ? hi : lo) = mid;
    }
    const moerig::proto::Plan plan = one_row_plan(*model, write_rig(dir.path, hi));
    ASSERT_TRUE(plan.fits());
    const std::string plan_path = (dir.path / "tight.txtpb").string();
    moerig::sharding::write_plan(plan, plan_path);
    EXPECT_EQ(plan_step_limits(plan).max_step_rows, 1);

    // The whole prompt in one step needs buffers for all its rows, more than the plan left on its packed card.
    {
        ShardedModel unbounded(*model, ShardLayout::from_plan(plan, model->hparams()),
                               ShardedOptions{.context = kContext});
        EXPECT_THROW(unbounded.eval(kLongPrompt), moerig::OutOfMemoryError);
    }

    Session session(*model, kContext);
    std::vector<int32_t> ref;
    std::vector<float> logits = session.eval(kLongPrompt);
    for (int i = 0; i < kNumGenerated; ++i) {
        ref.push_back(static_cast<int32_t>(moerig::kernels::argmax(logits.data(), model->hparams().n_vocab)));
        logits = session.eval(std::span(&ref.back(), 1));
    }
    ShardedRunRequest req;
    req.model_path = path;
    req.plan_path = plan_path;
    req.prompt = kLongPrompt;
    req.max_tokens = kNumGenerated;
    req.stop_at_eog = false;
    req.sampler.temp = 0;
    req.context = kContext;
    const ShardedRunResult res = run_sharded(req);
    EXPECT_EQ(res.tokens, ref);
    ASSERT_EQ(res.cards.size(), 2u);
    for (const CardStats& s : res.cards) {
        std::printf("%s: peak %zu of %zu (weights %zu, kv %zu)\n", s.name.c_str(), s.peak_bytes, s.budget_bytes,
                    s.weights_bytes, s.kv_bytes);
        EXPECT_LE(s.peak_bytes, s.budget_bytes) << s.name;
    }
}
