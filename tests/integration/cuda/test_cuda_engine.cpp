// The engine's GPU forward pass (CudaModel + CudaSession) against the CPU engine (runtime::Session) on every
// fixture model of tests/data/models: 32 greedy tokens per prompt, logits NMSE per step, prefill logits of every
// position, and the session bookkeeping. Skips without a GPU. MOERIG_TEST_DATA_DIR overrides the data folder
// (binaries built on another machine, tools/device-prebuild.sh).
//
// Bounds: the two engines differ only by float rounding. The CPU rounds activations to the weights' vec_dot type
// (F16/BF16, or Q8_0/Q8_K for quantised weights, as llama.cpp); the GPU multiplies float activations. So F32
// models agree to 1e-6 NMSE, F16/BF16 ones to 1e-5, quantised ones to the fixture's llama.cpp bound. Greedy tokens
// of exact-weight models must be identical; for quantised models a step where the CPU's top-1/top-2 gap is below
// kQuantTieGap may go either way, so free-running tokens are compared up to the first such step and every step
// is compared teacher-forced (CPU tokens fed to both) with that exemption.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/error.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/cuda/cuda_model.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tests/common/cli_run.h"
#include "tests/integration/cuda/gpu_fixtures.h"
#include "tests/integration/llamacpp_reference.h"

namespace moerig::runtime::cuda {
namespace {

namespace fs = std::filesystem;
using moerig::testing::LlamaCppReference;
using namespace moerig::testing::gpu;

constexpr int kGreedyTokens = 32;
constexpr int64_t kContext = 256;
constexpr double kQuantTieGap = 0.1;

class CudaEngine : public ::testing::TestWithParam<fs::path> {
  protected:
    void SetUp() override {
        MOERIG_REQUIRE_GPU();
        ref_ = LlamaCppReference::load(GetParam());
        ModelOptions opts;
        opts.num_threads = 2;
        opts.context = kContext;
        opts.progress = false;
        model_ = Model::load(ref_.model_path, opts);
        device_ = std::make_unique<CudaDevice>(0, size_t{2} << 30, "test card");
        gpu_ = std::make_unique<CudaModel>(*model_, *device_);
    }
    void TearDown() override {
        gpu_.reset();
        device_.reset();
    }
    double nmse_bound() const {
        if (!ref_.exact) return ref_.last_logits_nmse_max;
        return ref_.name.find("f32") != std::string::npos ? 1e-6 : 1e-5;
    }

    LlamaCppReference ref_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<CudaDevice> device_;
    std::unique_ptr<CudaModel> gpu_;
};

TEST_P(CudaEngine, GreedyTokensMatchTheCpuEngine) {
    Session cpu(*model_, kContext);
    CudaSession gpu(*gpu_, kContext);
    for (size_t pi = 0; pi < ref_.prompts.size(); ++pi) {
        const auto& prompt = ref_.prompts[pi].tokens;
        cpu.reset();
        gpu.reset();
        // Teacher-forced: both engines see the CPU's tokens; logits compared at every step.
        std::vector<int32_t> cpu_tokens;
        std::vector<float> lc = cpu.eval(prompt);
        std::vector<float> lg = gpu.eval(prompt);
        int first_tie = kGreedyTokens;
        for (int step = 0; step < kGreedyTokens; ++step) {
            ASSERT_EQ(lg.size(), lc.size());
            EXPECT_LE(moerig::testing::nmse(lg, lc), nmse_bound()) << "prompt " << pi << " step " << step;
            const int32_t want = moerig::testing::argmax(lc);
            const double gap = top_gap(lc);
            const bool tie = !ref_.exact && gap < kQuantTieGap;
            if (tie) first_tie = std::min(first_tie, step);
            if (!tie) {
                EXPECT_EQ(moerig::testing::argmax(lg), want)
                    << "prompt " << pi << " step " << step << " (CPU top-1/top-2 gap " << gap << ")";
            }
            cpu_tokens.push_back(want);
            if (step + 1 < kGreedyTokens) {
                lc = cpu.eval(std::span<const int32_t>(&want, 1));
                lg = gpu.eval(std::span<const int32_t>(&want, 1));
            }
        }
        // Free-running on the GPU with the argmax on the device.
        gpu.reset();
        std::vector<int32_t> gpu_tokens;
        int32_t next = gpu.eval_greedy(prompt);
        for (int step = 0; step < kGreedyTokens; ++step) {
            gpu_tokens.push_back(next);
            if (step + 1 < kGreedyTokens) next = gpu.eval_greedy(std::span<const int32_t>(&next, 1));
        }
        const auto n = static_cast<size_t>(first_tie);
        EXPECT_EQ(std::vector<int32_t>(gpu_tokens.begin(), gpu_tokens.begin() + n),
                  std::vector<int32_t>(cpu_tokens.begin(), cpu_tokens.begin() + n))
            << "prompt " << pi << " (compared up to step " << n << ")";
        if (ref_.exact) {
            EXPECT_EQ(n, static_cast<size_t>(kGreedyTokens));
        }
        EXPECT_EQ(gpu.n_past(), static_cast<int64_t>(prompt.size()) + kGreedyTokens - 1);
    }
}

TEST_P(CudaEngine, PrefillLogitsOfEveryPositionMatchTheCpuEngine) {
    const auto& prompt = ref_.prompts.front().tokens;
    Session cpu(*model_, kContext);
    CudaSession gpu(*gpu_, kContext);
    const auto lc = cpu.eval(prompt, true);
    const auto lg = gpu.eval(prompt, true);
    ASSERT_EQ(lg.size(), lc.size());
    const auto v = static_cast<size_t>(model_->hparams().n_vocab);
    for (size_t t = 0; t < prompt.size(); ++t) {
        const std::span<const float> a(lg.data() + t * v, v), b(lc.data() + t * v, v);
        EXPECT_LE(moerig::testing::nmse(a, b), nmse_bound()) << "position " << t;
    }
    // Decoding after a split prefill (two chunks) gives the one-chunk logits.
    CudaSession split(*gpu_, kContext);
    const size_t half = prompt.size() / 2;
    split.eval(std::span<const int32_t>(prompt.data(), half));
    const auto last = split.eval(std::span<const int32_t>(prompt.data() + half, prompt.size() - half));
    EXPECT_LE(moerig::testing::nmse(last, std::span<const float>(lc.data() + (prompt.size() - 1) * v, v)),
              nmse_bound());
}

TEST_P(CudaEngine, TruncateRewindsAndTheContextLimitIsEnforced) {
    const auto& prompt = ref_.prompts.front().tokens;
    CudaSession gpu(*gpu_, static_cast<int64_t>(prompt.size()) + 1);
    const auto first = gpu.eval(prompt);
    const int32_t tok = moerig::testing::argmax(first);
    const auto a = gpu.eval(std::span<const int32_t>(&tok, 1));
    gpu.truncate(static_cast<int64_t>(prompt.size()));
    const auto b = gpu.eval(std::span<const int32_t>(&tok, 1));
    EXPECT_EQ(a, b);
    EXPECT_THROW(gpu.eval(std::span<const int32_t>(&tok, 1)), ConfigError);
    EXPECT_THROW(gpu.truncate(gpu.n_past() + 1), ConfigError);
    const int32_t bad = static_cast<int32_t>(model_->hparams().n_vocab);
    gpu.reset();
    EXPECT_THROW(gpu.eval(std::span<const int32_t>(&bad, 1)), ConfigError);
}

TEST_P(CudaEngine, WeightsAreChargedToTheCardBudget) {
    EXPECT_GT(gpu_->weight_bytes(), 0u);
    EXPECT_GE(device_->memory_info().used_bytes, gpu_->weight_bytes());
    CudaSession gpu(*gpu_, 64);
    EXPECT_GT(gpu.kv_bytes(), 0u);
    EXPECT_THROW(CudaModel(*model_, *std::make_unique<CudaDevice>(0, 4096, "tiny card")), OutOfMemoryError);
}

TEST_P(CudaEngine, DecodeStepsAsCudaGraphsGiveTheEagerLogitsExactly) {
    const auto& prompt = ref_.prompts.front().tokens;
    CudaSession eager(*gpu_, kContext);
    CudaSession graphed(*gpu_, kContext);
    eager.set_graphs(false);
    std::vector<float> le = eager.eval(prompt);
    std::vector<float> lg = graphed.eval(prompt);
    for (int step = 0; step < kGreedyTokens; ++step) {
        ASSERT_EQ(lg, le) << "step " << step;
        const int32_t next = moerig::testing::argmax(le);
        le = eager.eval(std::span<const int32_t>(&next, 1));
        lg = graphed.eval(std::span<const int32_t>(&next, 1));
    }
    ASSERT_EQ(lg, le);
    // Every one-token step after a one-token step ran as one graph launch: recorded, then instantiated once and
    // updated in place after that (a refused update re-instantiates, which is slower but equally exact).
    const auto& st = graphed.graph_stats();
    const int64_t expected = kGreedyTokens - (prompt.size() == 1 ? 0 : 1);
    EXPECT_EQ(st.launched, expected);
    EXPECT_EQ(st.fell_back, 0);
    EXPECT_GE(st.instantiated, 1);
    EXPECT_EQ(st.instantiated + st.updated, st.launched);
    EXPECT_EQ(eager.graph_stats().launched, 0);
    std::printf("[ graphs ] %s: %lld graph steps, %lld instantiated, %lld updated in place\n", ref_.name.c_str(),
                static_cast<long long>(st.launched), static_cast<long long>(st.instantiated),
                static_cast<long long>(st.updated));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaEngine, ::testing::ValuesIn(fixtures()), fixture_name);

TEST(CudaEngineCli, RunOnTheGpuGeneratesTheCpuRunsGreedyTokens) {
    MOERIG_REQUIRE_GPU();
    const std::string model = (data_dir() / "models" / "qwen3moe-f32.gguf").string();
    const std::string args = "-m " + model + " -p 'The quick brown fox' -n 16 --temp 0 -t 2";
    const auto cpu = run_json(args);
    const auto gpu = run_json(args + " --gpu 0");
    ASSERT_TRUE(cpu.is_object() && gpu.is_object());
    EXPECT_EQ(gpu.at("tokens"), cpu.at("tokens"));
    EXPECT_EQ(gpu.at("text"), cpu.at("text"));
    EXPECT_FALSE(gpu.at("tokens").empty());
}

TEST(CudaEngineFixtures, EveryFixtureModelIsCovered) {
    EXPECT_GE(fixtures().size(), 12u) << "fixture models in " << data_dir();
}

}  // namespace
}  // namespace moerig::runtime::cuda
