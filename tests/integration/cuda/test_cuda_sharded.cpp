// A sharded run whose expert FFNs run on 4 virtual cards of GPU 0 (CudaCardExperts through
// ShardedOptions::card_experts) against the one-card CPU engine, for every fixture model under pipeline,
// expert-parallel and hybrid layouts: teacher-forced logits per step and greedy tokens; each expert FFN alone
// against the CPU's for 1 to 33 rows (GEMV, DP4A and cuBLAS paths); each card's GPU budget charged exactly its
// experts' bytes and an over-budget card refused by name; `moerig run --rig R --gpu 0` against the CPU run.
// Skips without a GPU. MOERIG_TEST_DATA_DIR overrides the data folder (binaries built elsewhere).
//
// Bounds: only the routed experts move to the GPU, so the runs differ from the CPU engine by the expert products'
// float rounding, as the whole-model GPU engine does (test_cuda_engine.cpp): the CPU rounds activations to the
// weights' vec_dot type (F16/BF16, Q8_0/Q8_K) while the GPU multiplies float activations (F32/F16/BF16/MXFP4) or
// int8 ones per 32 values (Q8_0/Q4_0/K-quants). F32 models agree to 1e-6 NMSE, F16/BF16 ones to 1e-5, quantised
// ones to the bound the fixture holds the CPU engine to against llama.cpp; greedy tokens of exact-weight models
// are identical, and for quantised models a step whose CPU top-1/top-2 gap is below kQuantTieGap may go either way.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/error.h"
#include "runtime/cuda/cuda_card_experts.h"
#include "runtime/model.h"
#include "runtime/moe.h"
#include "runtime/session.h"
#include "runtime/sharded_executor.h"
#include "tests/integration/cuda/gpu_fixtures.h"
#include "tests/integration/llamacpp_reference.h"

namespace moerig::runtime::cuda {
namespace {

namespace fs = std::filesystem;
using moerig::testing::LlamaCppReference;
using namespace moerig::testing::gpu;

constexpr size_t kBudget = size_t{256} << 20;
constexpr int64_t kContext = 96;
constexpr int kNumCards = 4;
constexpr int kSteps = 8;
constexpr double kQuantTieGap = 0.1;

struct LayoutCase {
    const char* name;
    ShardLayout (*make)(const ModelHParams&);
};

const LayoutCase kLayouts[] = {
    {"pipeline", [](const ModelHParams& hp) { return ShardLayout::pipeline(hp, kNumCards, kBudget); }},
    {"expert_parallel", [](const ModelHParams& hp) { return ShardLayout::expert_parallel(hp, kNumCards, kBudget); }},
    {"hybrid", [](const ModelHParams& hp) { return ShardLayout::hybrid(hp, kNumCards, 2, kBudget); }},
};

ShardedOptions gpu_options(const CudaCardExpertsOptions& experts = {}) {
    ShardedOptions options{.context = kContext};
    options.card_experts = cuda_card_experts(experts);
    return options;
}

class CudaSharded : public ::testing::TestWithParam<fs::path> {
  protected:
    void SetUp() override {
        MOERIG_REQUIRE_GPU();
        ref_ = LlamaCppReference::load(GetParam());
        model_ = Model::load(ref_.model_path, ModelOptions{.num_threads = 2, .context = kContext, .progress = false});
    }
    double nmse_bound() const {
        if (!ref_.exact) return ref_.last_logits_nmse_max;
        return ref_.name.find("f32") != std::string::npos ? 1e-6 : 1e-5;
    }
    /// One expert's output alone, without the residual stream that dilutes it in the logits: BF16 activations keep
    /// 8 significant bits, so each of the two products in series is off by ~2^-16 / 3 NMSE on the CPU side.
    double expert_bound() const {
        return ref_.exact && ref_.name.find("bf16") != std::string::npos ? 1e-4 : nmse_bound();
    }
    /// The fixture's longest prompt: long enough that prefill sends more than 8 rows to an expert (cuBLAS).
    const std::vector<int32_t>& prompt() const {
        return std::max_element(ref_.prompts.begin(), ref_.prompts.end(),
                                [](const auto& a, const auto& b) { return a.tokens.size() < b.tokens.size(); })
            ->tokens;
    }

    LlamaCppReference ref_;
    std::unique_ptr<Model> model_;
};

TEST_P(CudaSharded, ExpertsOnFourVirtualCardsGiveTheOneCardCpuTokens) {
    const auto& tokens = prompt();
    // The CPU engine's greedy run: its tokens are fed to every sharded run (teacher-forced) so that each step's
    // logits compare like for like; where no step is a tie this is the free-running greedy comparison.
    Session cpu(*model_, kContext);
    std::vector<std::vector<float>> cpu_logits{cpu.eval(tokens)};
    std::vector<int32_t> cpu_tokens;
    for (int step = 0; step < kSteps; ++step) {
        cpu_tokens.push_back(moerig::testing::argmax(cpu_logits.back()));
        if (step + 1 < kSteps) cpu_logits.push_back(cpu.eval(std::span<const int32_t>(&cpu_tokens.back(), 1)));
    }
    for (const LayoutCase& lc : kLayouts) {
        SCOPED_TRACE(lc.name);
        ShardedModel sharded(*model_, lc.make(model_->hparams()), gpu_options());
        int num_backends = 0;
        for (int c = 0; c < kNumCards; ++c) num_backends += sharded.card_experts(c) != nullptr ? 1 : 0;
        EXPECT_GT(num_backends, 0);
        std::vector<float> lg = sharded.eval(tokens);
        for (int step = 0; step < kSteps; ++step) {
            const auto& lc_step = cpu_logits[static_cast<size_t>(step)];
            ASSERT_EQ(lg.size(), lc_step.size());
            EXPECT_LE(moerig::testing::nmse(lg, lc_step), nmse_bound()) << "step " << step;
            const double gap = top_gap(lc_step);
            if (ref_.exact || gap >= kQuantTieGap) {
                EXPECT_EQ(moerig::testing::argmax(lg), cpu_tokens[static_cast<size_t>(step)])
                    << "step " << step << " (CPU top-1/top-2 gap " << gap << ")";
            }
            if (step + 1 < kSteps)
                lg = sharded.eval(std::span<const int32_t>(&cpu_tokens[static_cast<size_t>(step)], 1));
        }
    }
}

TEST_P(CudaSharded, EachExpertFfnMatchesTheCpuExpertForEveryRowCount) {
    const ModelHParams& hp = model_->hparams();
    const ShardLayout layout = ShardLayout::single(hp, kBudget);
    CudaCardExperts gpu(*model_, layout.cards[0], 0, CudaCardExpertsOptions{});
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (const CardLayerUpload& u : gpu.upload().layers) {
        const LayerWeights& l = model_->weights().layers.at(static_cast<size_t>(u.layer_idx));
        for (int32_t e : {u.experts.front(), u.experts.back()}) {
            for (int64_t num_rows : {1, 3, 8, 9, 33}) {
                SCOPED_TRACE(::testing::Message()
                             << "layer " << u.layer_idx << " expert " << e << " rows " << num_rows);
                std::vector<float> x(static_cast<size_t>(num_rows * hp.n_embd));
                for (float& v : x) v = normal(rng);
                std::vector<float> want(x.size()), got(x.size(), NAN);
                std::vector<float> g(static_cast<size_t>(num_rows * u.gate.rows)), up(g.size());
                run_expert_rows(
                    l, e, hp.n_embd,
                    ExpertRows{
                        .x = x.data(), .gate = g.data(), .up = up.data(), .y = want.data(), .num_rows = num_rows},
                    model_->pool());
                gpu.layer(u.layer_idx).run_expert(e, x.data(), num_rows, got.data());
                EXPECT_LE(moerig::testing::nmse(got, want), expert_bound());
            }
        }
    }
    EXPECT_THROW(gpu.run_expert(0, static_cast<int>(hp.n_expert), nullptr, 1, nullptr), ConfigError);
}

TEST_P(CudaSharded, EachCardsGpuBudgetIsChargedItsExpertsBytes) {
    const ModelHParams& hp = model_->hparams();
    ShardedModel sharded(*model_, ShardLayout::expert_parallel(hp, kNumCards, kBudget), gpu_options());
    const auto shares = card_share_bytes(model_->gguf(), hp, sharded.layout(), kContext);
    for (int c = 0; c < kNumCards; ++c) {
        const auto* backend = dynamic_cast<const CudaCardExperts*>(sharded.card_experts(c));
        ASSERT_NE(backend, nullptr) << "card " << c;
        const MemoryInfo mem = backend->device().memory_info();
        EXPECT_EQ(mem.budget_bytes, kBudget);
        // What the CPU card charges for its expert slots, unless a type had to be widened to F32 for the GPU.
        if (backend->upload().conversions().empty()) {
            EXPECT_EQ(mem.held(MemoryKind::kWeights), shares[static_cast<size_t>(c)].expert_weights);
        }
        EXPECT_EQ(mem.held(MemoryKind::kWeights), backend->weight_bytes());
        EXPECT_EQ(sharded.card_stats()[static_cast<size_t>(c)].expert_backend_bytes, backend->weight_bytes());
        EXPECT_NE(backend->device().name().find(sharded.layout().cards[static_cast<size_t>(c)].name),
                  std::string::npos);
    }
}

TEST_P(CudaSharded, ACardWhoseExpertsExceedItsGpuBudgetIsRefusedByName) {
    const ModelHParams& hp = model_->hparams();
    ShardLayout layout = ShardLayout::expert_parallel(hp, kNumCards, kBudget);
    for (int c = 0; c < kNumCards; ++c) layout.cards[static_cast<size_t>(c)].name = "vcard-" + std::to_string(c);
    // A GPU budget one byte short of the smallest card's experts: the first card built (card 0) is refused.
    size_t smallest = SIZE_MAX;
    for (const ShardCard& card : layout.cards) {
        smallest = std::min(smallest, card_expert_upload(*model_, card, gpu_decodes).bytes());
    }
    ASSERT_GT(smallest, 1u);
    try {
        ShardedModel sharded(*model_, layout, gpu_options(CudaCardExpertsOptions{.budget_bytes = smallest - 1}));
        FAIL() << "expected OutOfMemoryError";
    } catch (const OutOfMemoryError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("vcard-0"), std::string::npos) << what;
        EXPECT_NE(what.find("GPU 0"), std::string::npos) << what;
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaSharded, ::testing::ValuesIn(fixtures()), fixture_name);

TEST(CudaShardedCli, RunOnARigWithGpuExpertsGeneratesTheCpuRunsGreedyTokens) {
    MOERIG_REQUIRE_GPU();
    const std::string model = (data_dir() / "models" / "qwen3moe-f32.gguf").string();
    const std::string args =
        "-m " + model + " -p 'The quick brown fox' -n 12 --temp 0 --rig rtx3060-6x-gen3x4 --strategy expert-parallel";
    const auto cpu = run_json(args);
    const auto gpu = run_json(args + " --gpu 0");
    ASSERT_TRUE(cpu.is_object() && gpu.is_object());
    EXPECT_EQ(gpu.at("tokens"), cpu.at("tokens"));
    EXPECT_FALSE(gpu.at("tokens").empty());
    size_t on_gpu = 0;
    for (const auto& card : gpu.at("cards")) on_gpu += card.at("expert_backend_bytes").get<size_t>();
    EXPECT_GT(on_gpu, 0u);
    for (const auto& card : cpu.at("cards")) EXPECT_EQ(card.at("expert_backend_bytes").get<size_t>(), 0u);
}

}  // namespace
}  // namespace moerig::runtime::cuda
