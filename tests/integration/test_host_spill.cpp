// Experts spilled to host RAM at run time: a host participant computes them on the CPU from the model
// mapping, charged to the host's budget and not to any card, with rows crossing only the card's link, as
// the planner's cost model assumes. Spilled runs must give the one-card greedy tokens and logits; a rig
// whose cards cannot hold every expert must plan with spill and then run, via the API and `moerig run`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/gguf.h"
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
#include "tests/common/cli_run.h"
#include "tests/common/greedy_run.h"

using namespace moerig::runtime;
using moerig::test::GreedyRun;
using moerig::test::nmse;
namespace fs = std::filesystem;

namespace {

constexpr size_t kBudget = size_t{256} << 20;
constexpr size_t kHostBudget = size_t{1} << 30;
constexpr int64_t kContext = 64;
constexpr int kNumGenerated = 6;
const std::vector<int32_t> kPrompt = {1, 17, 230, 45, 9, 301, 77, 12};

std::string model_path(const std::string& name) {
    return std::string(MOERIG_TEST_DATA) + "/models/" + name + ".gguf";
}

/// Every odd expert of every MoE layer.
std::vector<std::vector<int32_t>> odd_experts(const ModelHParams& hp) {
    std::vector<std::vector<int32_t>> spilled(hp.n_layer);
    for (int64_t l = 0; l < hp.n_layer; ++l)
        if (hp.is_moe_layer(l))
            for (int32_t e = 1; e < hp.n_expert; e += 2) spilled[l].push_back(e);
    return spilled;
}

/// A scratch folder removed with the test.
struct TempDir {
    fs::path path = fs::temp_directory_path() / ("moerig_spill_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
};

/// Two P106-100 cards on gen1 x1 with usable_bytes of VRAM each (plus a 64 KiB reserve), 1 GiB of host RAM.
std::string write_rig(const fs::path& dir, uint64_t usable_bytes) {
    const uint64_t vram_bytes = usable_bytes + 65536;
    const fs::path path = dir / ("tiny-" + std::to_string(vram_bytes) + ".yaml");
    std::ofstream out(path);
    out << "name: tiny-spill\nhost:\n  name: rig0\n  ram: 1 GiB\n  mem_bw: 38.4 GB/s\ncards:\n"
        << "  - card: P106-100\n    count: 2\n    pcie_gen: 1\n    lanes: 1\n    vram: " << vram_bytes
        << "\n    reserve: 65536\n";
    return path.string();
}

/// The planner's result for the model on the rig for one-token steps: buffers for a single row, so the 8-token
/// test prompt runs in ubatches of one row (plan_step_limits).
moerig::proto::Plan make_plan(const Model& model, const std::string& rig, bool spill) {
    moerig::sharding::Workload workload;
    workload.context = kContext;
    workload.prompt = 1;
    workload.gen = kNumGenerated;
    moerig::sharding::PlanOptions options;
    options.allow_host_spill = spill;
    return moerig::sharding::plan(moerig::sharding::account_gguf(model.gguf()), moerig::sharding::load_rig(rig),
                                  workload, options)
        .plan;
}

/// The largest usable card VRAM (in 2% steps of the model file) at which the model fits the two-card rig
/// only with experts spilled to host RAM: not without spill even for a one-token prompt, so `moerig run`
/// with any prompt needs spill too. 0 when there is none.
uint64_t spill_only_vram(const Model& model, const fs::path& dir) {
    const uint64_t file_bytes = fs::file_size(model.gguf().path());
    for (int pct = 100; pct >= 2; pct -= 2) {
        const uint64_t vram = file_bytes * pct / 100;
        const std::string rig = write_rig(dir, vram);
        if (!make_plan(model, rig, false).fits() && make_plan(model, rig, true).fits()) return vram;
    }
    return 0;
}

}  // namespace

TEST(HostSpill, HostLinkAddsNoTimeOfItsOwn) {
    // Rows to spilled experts cross only the card's link (the planner's cost model): the host side is free.
    LinkEmulation links({LinkSpec{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 5e-6},
                         LinkSpec{.latency_s = 5e-6, .host_memory = true}});
    const double card_side = 5e-6 + 1e6 / 0.25e9;
    EXPECT_NEAR(links.message_s(0, 1, 1'000'000), card_side, 1e-12);
    EXPECT_NEAR(links.message_s(1, 0, 1'000'000), card_side, 1e-12);
    EXPECT_EQ(LinkSpec{.host_memory = true}.describe(), "host memory");
}

TEST(HostSpill, HostWithAStageIsRefused) {
    auto model = Model::load(model_path("qwen3moe-f32"), ModelOptions{.num_threads = 1, .context = kContext});
    ShardLayout layout = ShardLayout::pipeline(model->hparams(), 2, kBudget);
    layout.spill_to_host(odd_experts(model->hparams()), kHostBudget);
    layout.cards[2].layer_begin = layout.cards[1].layer_begin;  // the host checks before the overlap does
    layout.cards[2].layer_end = layout.cards[1].layer_end;
    try {
        layout.validate(model->hparams());
        FAIL() << "expected ConfigError";
    } catch (const moerig::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("host0"), std::string::npos) << e.what();
    }
}

TEST(HostSpill, SpilledExpertsGiveTheOneCardTokensAndChargeOnlyTheHost) {
    for (const char* name : {"qwen3moe-f32", "deepseek2-v3-f32", "gpt-oss-mxfp4", "mixtral-f32"}) {
        SCOPED_TRACE(name);
        auto model = Model::load(model_path(name), ModelOptions{.num_threads = 1, .context = kContext});
        const ModelHParams& hp = model->hparams();
        Session session(*model, kContext);
        const GreedyRun ref =
            moerig::test::greedy([&](std::span<const int32_t> t) { return session.eval(t); }, kPrompt, kNumGenerated);
        for (int num_cards : {1, 2, 3}) {
            SCOPED_TRACE(num_cards);
            ShardLayout layout = ShardLayout::expert_parallel(hp, num_cards, kBudget);
            layout.set_links(LinkSpec{.pcie_gen = 1, .lanes = 1, .p2p = false, .latency_s = 20e-6});
            const auto before = card_share_bytes(model->gguf(), hp, layout, kContext);
            layout.spill_to_host(odd_experts(hp), kHostBudget);
            ASSERT_EQ(layout.num_hosts(), 1);
            ASSERT_EQ(layout.num_cards(), num_cards + 1);
            ShardedModel sharded(*model, layout, ShardedOptions{.context = kContext, .emulate_links = true});
            const GreedyRun run = moerig::test::greedy([&](std::span<const int32_t> t) { return sharded.eval(t); },
                                                       kPrompt, kNumGenerated);
            moerig::test::expect_same_run(run, ref);

            const auto shares = card_share_bytes(model->gguf(), hp, sharded.layout(), kContext);
            const auto stats = sharded.card_stats();
            size_t card_experts_before = 0, card_experts_after = 0;
            for (int c = 0; c < num_cards; ++c) {
                EXPECT_FALSE(stats[c].host);
                EXPECT_LE(stats[c].peak_bytes, stats[c].budget_bytes) << stats[c].name;
                EXPECT_EQ(stats[c].weights_bytes, shares[c].dense_weights + shares[c].expert_weights);
                card_experts_before += before[c].expert_weights;
                card_experts_after += shares[c].expert_weights;
            }
            const CardStats& host = stats.back();
            EXPECT_TRUE(host.host);
            EXPECT_EQ(host.name, "host0");
            EXPECT_EQ(host.kv_bytes, 0u);
            EXPECT_LE(host.peak_bytes, host.budget_bytes);
            // The spilled experts (half of them, rounded down) left the cards and are charged to the host.
            EXPECT_EQ(host.weights_bytes, shares.back().expert_weights);
            EXPECT_EQ(card_experts_before, card_experts_after + host.weights_bytes);
            EXPECT_EQ(host.weights_bytes * size_t(hp.n_expert), card_experts_before * size_t(hp.n_expert / 2));
            // With top-k over half the experts spilled, the host computes rows every step and sends them back.
            EXPECT_GT(host.bytes_received, 0u);
            EXPECT_GT(host.bytes_sent, 0u);
            EXPECT_GT(host.busy_s, 0.0);
            size_t sent = 0, received = 0;
            for (const CardStats& s : stats) {
                sent += s.bytes_sent;
                received += s.bytes_received;
            }
            EXPECT_EQ(sent, received);
        }
    }
}

TEST(HostSpill, RigTooSmallForEveryExpertPlansWithSpillAndRunsTheOneCardTokens) {
    TempDir dir;
    // deepseek2-v3-f32: its experts outweigh the planner's buffers, so a spill-only rig exists (the smaller
    // fixtures fit without spill or not at all once the buffers are reserved).
    for (const char* name : {"deepseek2-v3-f32"}) {
        SCOPED_TRACE(name);
        auto model = Model::load(model_path(name), ModelOptions{.num_threads = 1, .context = kContext});
        const uint64_t vram = spill_only_vram(*model, dir.path);
        ASSERT_GT(vram, 0u) << "no card size at which the model fits only with spill";
        const std::string rig = write_rig(dir.path, vram);
        const moerig::proto::Plan plan = make_plan(*model, rig, true);
        ASSERT_TRUE(plan.fits());
        ShardLayout layout = ShardLayout::from_plan(plan, model->hparams());
        ASSERT_EQ(layout.num_hosts(), 1);
        const ShardCard& host_card = layout.cards.back();
        EXPECT_TRUE(host_card.host);
        EXPECT_EQ(host_card.name, "host:rig0");
        EXPECT_GT(host_card.predicted_bytes, 0u);
        EXPECT_GT(host_card.budget_bytes, host_card.predicted_bytes);

        Session session(*model, kContext);
        const GreedyRun ref =
            moerig::test::greedy([&](std::span<const int32_t> t) { return session.eval(t); }, kPrompt, kNumGenerated);
        ShardedModel sharded(*model, layout,
                             plan_step_limits(plan, ShardedOptions{.context = kContext, .emulate_links = true}));
        const GreedyRun run =
            moerig::test::greedy([&](std::span<const int32_t> t) { return sharded.eval(t); }, kPrompt, kNumGenerated);
        moerig::test::expect_same_run(run, ref);
        size_t host_traffic = 0;
        for (const CardStats& s : sharded.card_stats()) {
            std::printf("%s %s: weights %zu (predicted %zu), peak %zu of %zu, sent %zu, received %zu\n", name,
                        s.name.c_str(), s.weights_bytes, s.predicted_bytes, s.peak_bytes, s.budget_bytes, s.bytes_sent,
                        s.bytes_received);
            EXPECT_LE(s.peak_bytes, s.budget_bytes) << s.name;
            if (s.host) {
                // The plan's spilled bytes are what the host is charged.
                EXPECT_EQ(s.weights_bytes, s.predicted_bytes);
                host_traffic += s.bytes_sent + s.bytes_received;
            } else {
                EXPECT_NEAR(double(s.weights_bytes + s.kv_bytes), double(s.predicted_bytes),
                            0.05 * double(s.predicted_bytes))
                    << s.name;
            }
        }
        // The planner spills the coldest experts (uniform loads: the last ones); this prompt still reaches them.
        EXPECT_GT(host_traffic, 0u);
    }
}

TEST(HostSpill, RunCliRefusesARigTooSmallWithoutSpillAndRunsItsSpilledPlan) {
    TempDir dir;
    const std::string path = model_path("deepseek2-v3-f32");
    auto model = Model::load(path, ModelOptions{.num_threads = 1, .context = kContext});
    const uint64_t vram = spill_only_vram(*model, dir.path);
    ASSERT_GT(vram, 0u);
    const std::string rig = write_rig(dir.path, vram);
    const std::string plan_path = (dir.path / "spill.txtpb").string();
    moerig::sharding::write_plan(make_plan(*model, rig, true), plan_path);
    const std::string base = "run -m " + path + " -p 'The quick brown fox' -n 8 --temp 0 --ctx 64 ";

    const auto refused = moerig::testing::run_moerig(base + "--rig " + rig);
    EXPECT_EQ(refused.code, 2) << refused.out;
    EXPECT_NE(refused.err.find("does not fit"), std::string::npos) << refused.err;

    const auto one = moerig::testing::run_moerig(base + "--json");
    ASSERT_EQ(one.code, 0) << one.err;
    const auto spilled = moerig::testing::run_moerig(base + "--json --emulate-links --plan " + plan_path);
    ASSERT_EQ(spilled.code, 0) << spilled.err;
    const auto a = nlohmann::json::parse(one.out), b = nlohmann::json::parse(spilled.out);
    EXPECT_EQ(b["tokens"], a["tokens"]);
    ASSERT_EQ(b["cards"].size(), 3u);  // two cards, then the host
    const auto& host = b["cards"][2];
    EXPECT_TRUE(host["host"].get<bool>());
    EXPECT_EQ(host["weights_bytes"].get<size_t>(), host["predicted_bytes"].get<size_t>());
    EXPECT_GT(host["bytes_received"].get<size_t>(), 0u);
    EXPECT_GT(host["bytes_sent"].get<size_t>(), 0u);
    for (const auto& c : b["cards"]) EXPECT_LE(c["peak_bytes"].get<size_t>(), c["budget_bytes"].get<size_t>());

    // `--rig R --spill` plans for this prompt and runs the same way. (Its plan packs the cards for a 4-token
    // prompt; on this rig the cards' F32 dispatch rows and logits still fit what the plan leaves.)
    const auto planned = moerig::testing::run_moerig(base + "--json --spill --rig " + rig);
    ASSERT_EQ(planned.code, 0) << planned.err;
    const auto c = nlohmann::json::parse(planned.out);
    EXPECT_EQ(c["tokens"], a["tokens"]);
    ASSERT_EQ(c["cards"].size(), 3u);
    EXPECT_TRUE(c["cards"][2]["host"].get<bool>());
    EXPECT_GT(c["cards"][2]["weights_bytes"].get<size_t>(), 0u);
}
