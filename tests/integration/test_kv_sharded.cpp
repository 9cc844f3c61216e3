// The KV cache type and sliding-window rings across virtual cards: a plan from the planner (F16 KV, as `moerig plan`
// writes it) runs with F16 caches whose charges are what the plan predicted, the run's own plan follows --kv-type,
// a type that contradicts the plan is refused, and `moerig run --kv-type` reports its type and refuses others.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "kernels/ops.h"
#include "proto/plan.pb.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/sharded_run.h"
#include "sharding/accounting.h"
#include "sharding/plan_io.h"
#include "sharding/planner.h"
#include "sharding/rig.h"
#include "tests/common/cli_run.h"

using moerig::DType;
using namespace moerig::runtime;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kContext = 256;
constexpr int kNumGenerated = 8;
const std::vector<int32_t> kPrompt = {1, 17, 230, 45, 9, 301, 77, 12};

std::string model_path(const std::string& name) {
    return std::string(MOERIG_TEST_DATA) + "/models/" + name + ".gguf";
}

struct TempDir {
    fs::path path = fs::temp_directory_path() / ("moerig_kv_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
};

/// Two P106-100 cards on gen3 x4 with room to spare.
std::string write_rig(const fs::path& dir) {
    const fs::path path = dir / "two.yaml";
    std::ofstream out(path);
    out << "name: two\nhost:\n  name: rig0\n  ram: 1 GiB\n  mem_bw: 38.4 GB/s\ncards:\n"
        << "  - card: P106-100\n    count: 2\n    pcie_gen: 3\n    lanes: 4\n";
    return path.string();
}

/// The planner's plan with its default options (F16 KV) for prompts of `prompt` tokens; pipeline so that each card
/// holds a stage with its own KV cache.
moerig::proto::Plan planner_plan(const Model& model, const std::string& rig, uint32_t prompt) {
    moerig::sharding::Workload workload;
    workload.context = kContext;
    workload.prompt = prompt;
    workload.gen = kNumGenerated;
    moerig::sharding::PlanOptions options;
    options.strategy = moerig::sharding::StrategyChoice::kPipeline;
    return moerig::sharding::plan(moerig::sharding::account_gguf(model.gguf()), moerig::sharding::load_rig(rig),
                                  workload, options)
        .plan;
}

ShardedRunRequest request(const std::string& path) {
    ShardedRunRequest req;
    req.model_path = path;
    req.prompt = kPrompt;
    req.max_tokens = kNumGenerated;
    req.stop_at_eog = false;
    req.sampler.temp = 0;
    req.context = kContext;
    return req;
}

std::vector<int32_t> one_card_tokens(const Model& model, const KvOptions& kv) {
    Session session(model, kContext, nullptr, kv);
    std::vector<int32_t> out;
    std::vector<float> logits = session.eval(kPrompt);
    for (int i = 0; i < kNumGenerated; ++i) {
        out.push_back(static_cast<int32_t>(moerig::kernels::argmax(logits.data(), model.hparams().n_vocab)));
        if (i + 1 < kNumGenerated) logits = session.eval(std::span(&out.back(), 1));
    }
    return out;
}

}  // namespace

TEST(KvSharded, PlannersF16PlanRunsWithF16CachesChargedAsPredicted) {
    TempDir dir;
    const std::string path = model_path("gpt-oss-mxfp4");
    auto model = Model::load(path, ModelOptions{.num_threads = 1, .context = kContext, .progress = false});
    const ModelHParams& hp = model->hparams();
    ASSERT_GT(hp.n_swa, 0);
    const std::string rig = write_rig(dir.path);
    const std::vector<int32_t> ref =
        one_card_tokens(*model, KvOptions{.dtype = DType::F16, .max_step_rows = kSessionStepRows});
    // prompt 1: the plan reserves one-row steps, so the rings are exactly the window the planner counts; prompt 8:
    // rings of n_swa + 7 positions, within 5% of the plan's count over the whole model.
    for (const uint32_t prompt : {1u, 8u}) {
        SCOPED_TRACE("plan prompt " + std::to_string(prompt));
        const moerig::proto::Plan plan = planner_plan(*model, rig, prompt);
        ASSERT_TRUE(plan.fits());
        EXPECT_EQ(plan.workload().kv_cache_dtype(), "F16");
        const std::string plan_path = (dir.path / ("plan" + std::to_string(prompt) + ".txtpb")).string();
        moerig::sharding::write_plan(plan, plan_path);
        ShardedRunRequest req = request(path);
        req.plan_path = plan_path;
        const ShardedRunResult res = run_sharded(req);
        EXPECT_EQ(res.kv_dtype, DType::F16);
        EXPECT_EQ(res.tokens, ref);
        ASSERT_EQ(res.cards.size(), static_cast<size_t>(plan.cards_size()));
        size_t charged = 0, predicted = 0;
        for (int c = 0; c < plan.cards_size(); ++c) {
            const uint64_t want = plan.cards(c).memory().kv_cache();
            const size_t got = res.cards[static_cast<size_t>(c)].kv_bytes;
            std::printf("prompt %u card %d: KV charged %zu, plan %llu\n", prompt, c, got,
                        static_cast<unsigned long long>(want));
            if (prompt == 1) {
                EXPECT_EQ(got, want) << "card " << c;
            }
            charged += got;
            predicted += want;
        }
        ASSERT_GT(predicted, 0u);
        EXPECT_NEAR(double(charged), double(predicted), 0.05 * double(predicted));
        // An explicit type that contradicts the plan is refused, naming both.
        req.kv_dtype = DType::F32;
        try {
            run_sharded(req);
            FAIL() << "expected ConfigError";
        } catch (const moerig::ConfigError& e) {
            EXPECT_NE(std::string(e.what()).find("F16"), std::string::npos) << e.what();
        }
    }
}

TEST(KvSharded, RunsOwnPlanFollowsTheRequestedTypeAndF16HalvesTheCharge) {
    TempDir dir;
    const std::string path = model_path("qwen3moe-f32");
    const std::string rig = write_rig(dir.path);
    ShardedRunRequest req = request(path);
    req.rig = rig;
    req.strategy = "pipeline";
    const ShardedRunResult f32 = run_sharded(req);
    req.kv_dtype = DType::F16;
    const ShardedRunResult f16 = run_sharded(req);
    EXPECT_EQ(f32.kv_dtype, DType::F32);
    EXPECT_EQ(f16.kv_dtype, DType::F16);
    size_t kv32 = 0, kv16 = 0;
    for (const CardStats& c : f32.cards) kv32 += c.kv_bytes;
    for (const CardStats& c : f16.cards) kv16 += c.kv_bytes;
    ASSERT_GT(kv16, 0u);
    EXPECT_EQ(kv32, 2 * kv16);
    EXPECT_EQ(f16.tokens, f32.tokens);
}

TEST(KvSharded, RunCliReportsItsKvTypeAndRefusesOthers) {
    const std::string base = "run -m " + model_path("gpt-oss-mxfp4") + " -p 'The quick brown fox' -n 6 --temp 0 ";
    const auto bad = moerig::testing::run_moerig(base + "--kv-type q8_0");
    EXPECT_EQ(bad.code, 2) << bad.out;
    EXPECT_NE(bad.err.find("--kv-type"), std::string::npos) << bad.err;
    const auto f32 = moerig::testing::run_moerig(base + "--json");
    const auto f16 = moerig::testing::run_moerig(base + "--json --kv-type f16");
    ASSERT_EQ(f32.code, 0) << f32.err;
    ASSERT_EQ(f16.code, 0) << f16.err;
    const auto a = nlohmann::json::parse(f32.out), b = nlohmann::json::parse(f16.out);
    EXPECT_EQ(a["kv_type"], "f32");
    EXPECT_EQ(b["kv_type"], "f16");
    EXPECT_EQ(b["tokens"], a["tokens"]);
}
