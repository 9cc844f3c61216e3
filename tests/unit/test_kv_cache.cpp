// The KV cache's storage forms on the CPU engine: F16 rows (half the bytes) keep every fixture model's greedy
// tokens and logits close to F32's, and sliding-window layers kept as a ring of n_swa + max_step_rows - 1 slots give
// the full-context cache's logits bit for bit over many windows, with bytes to match; steps and truncations the
// ring cannot serve are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tests/common/greedy_run.h"

using moerig::DType;
using namespace moerig::runtime;
using moerig::test::nmse;

namespace {

const std::vector<int32_t> kPrompt = {1, 17, 230, 45, 9, 301, 77, 12};

const char* const kFixtures[] = {"mixtral-f32",      "mixtral-q8_0",      "qwen2moe-f32",       "qwen3moe-f32",
                                 "qwen3moe-f16",     "qwen3moe-q4_k_m",   "olmoe-f32",          "olmoe-bf16",
                                 "deepseek2-v3-f32", "deepseek2-v3-q6_k", "deepseek2-lite-f32", "gpt-oss-mxfp4"};

std::string model_path(const std::string& name) {
    return std::string(MOERIG_TEST_DATA) + "/models/" + name + ".gguf";
}

int32_t argmax(const std::vector<float>& logits) {
    return static_cast<int32_t>(moerig::kernels::argmax(logits.data(), static_cast<int64_t>(logits.size())));
}

struct Greedy {
    std::vector<int32_t> tokens;
    std::vector<std::vector<float>> logits;  // [step] the logits each token was chosen from
};

/// Prompt, then num_steps greedy tokens; the prompt goes in chunks of prompt_chunk tokens (0: one eval).
Greedy greedy(Session& session, int num_steps, size_t prompt_chunk = 0) {
    Greedy g;
    std::vector<float> logits;
    const size_t chunk = prompt_chunk ? prompt_chunk : kPrompt.size();
    for (size_t b = 0; b < kPrompt.size(); b += chunk) {
        logits = session.eval(std::span(kPrompt).subspan(b, std::min(chunk, kPrompt.size() - b)));
    }
    for (int i = 0; i < num_steps; ++i) {
        g.logits.push_back(logits);
        g.tokens.push_back(argmax(logits));
        logits = session.eval(std::span(&g.tokens.back(), 1));
    }
    return g;
}

std::unique_ptr<Model> load(const std::string& name, int64_t context) {
    return Model::load(model_path(name), ModelOptions{.num_threads = 1, .context = context, .progress = false});
}

}  // namespace

TEST(KvCache, F16HoldsHalfTheBytesAndRoundsRowsToHalf) {
    auto model = load("qwen3moe-f32", 64);
    const ModelHParams& hp = model->hparams();
    KvCache f32(hp, 64), f16(hp, 64, 0, -1, KvOptions{.dtype = DType::F16});
    EXPECT_EQ(f32.bytes(), 2 * f16.bytes());
    EXPECT_EQ(f16.bytes(), size_t(hp.n_layer * 64 * (f16.k_row() + f16.v_row()) * 2));
    EXPECT_EQ(f16.bytes(), KvCache::bytes_for(hp, 64, 0, hp.n_layer, KvOptions{.dtype = DType::F16}));
    std::vector<float> row(static_cast<size_t>(f16.k_row())), back(row.size());
    for (size_t i = 0; i < row.size(); ++i) row[i] = 0.1f * static_cast<float>(i) + 1e-4f;
    f16.write_k(1, 5, row.data());
    f16.read_k(1, 5, back.data());
    for (size_t i = 0; i < row.size(); ++i) {
        EXPECT_EQ(back[i], moerig::kernels::fp16_to_fp32(moerig::kernels::fp32_to_fp16(row[i]))) << i;
    }
    EXPECT_NE(back, row);  // rounded, not kept
    f32.write_v(0, 63, row.data());
    f32.read_v(0, 63, back.data());
    EXPECT_EQ(back, row);
}

TEST(KvCache, OtherTypesAreRefusedWithTheirName) {
    auto model = load("mixtral-f32", 16);
    try {
        KvCache kv(model->hparams(), 16, 0, -1, KvOptions{.dtype = DType::Q8_0});
        FAIL() << "expected ConfigError";
    } catch (const moerig::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("Q8_0"), std::string::npos) << e.what();
    }
    EXPECT_EQ(parse_kv_dtype("F16", "--kv-type"), DType::F16);
    EXPECT_EQ(parse_kv_dtype("f32", "--kv-type"), DType::F32);
    try {
        parse_kv_dtype("q8_0", "--kv-type");
        FAIL() << "expected ConfigError";
    } catch (const moerig::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("--kv-type"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("q8_0"), std::string::npos) << e.what();
    }
}

class KvF16Fixture : public ::testing::TestWithParam<const char*> {};

TEST_P(KvF16Fixture, F16CacheKeepsGreedyTokensAndLogitsCloseOver32Steps) {
    // The fixtures' own classes (tests/data/models/*.json "check"): exact-weight models keep every greedy token;
    // quantised ones (activations rounded to Q8 per matmul, discrete top-k routing) can turn the F16 rounding of a
    // K/V value into a different activation code or expert, as llama.cpp's parity bounds for them allow.
    constexpr int kSteps = 32;
    const std::string name = GetParam();
    const bool quantised =
        name == "mixtral-q8_0" || name == "qwen3moe-q4_k_m" || name == "deepseek2-v3-q6_k" || name == "gpt-oss-mxfp4";
    auto model = load(name, 64);
    const KvOptions f16{.dtype = DType::F16, .max_step_rows = kSessionStepRows};
    Session s32(*model, 64), s16(*model, 64, nullptr, f16);
    const Greedy a = greedy(s32, kSteps);
    EXPECT_EQ(s32.kv().bytes(), 2 * s16.kv().bytes());
    // Teacher forced: the F16 session is fed the F32 session's tokens, so every step compares like for like.
    std::vector<float> logits = s16.eval(kPrompt);
    std::vector<double> step_nmse;
    int num_same = 0;
    for (int i = 0; i < kSteps; ++i) {
        step_nmse.push_back(nmse(logits, a.logits[i]));
        num_same += argmax(logits) == a.tokens[i];
        logits = s16.eval(std::span(&a.tokens[i], 1));
    }
    std::sort(step_nmse.begin(), step_nmse.end());
    const double median = step_nmse[kSteps / 2], worst = step_nmse.back();
    std::printf("%s: F16 vs F32 KV over %d steps: logits NMSE median %.3g, worst %.3g; same top-1 %d/%d\n",
                name.c_str(), kSteps, median, worst, num_same, kSteps);
    EXPECT_GT(step_nmse.front(), 0.0);  // the F16 cache really rounds
    if (quantised) {
        EXPECT_LE(median, 1e-3);
        EXPECT_GE(num_same, kSteps - 4);
        return;
    }
    EXPECT_LE(worst, 1e-4);
    EXPECT_EQ(num_same, kSteps);
    Session free16(*model, 64, nullptr, f16);
    EXPECT_EQ(greedy(free16, kSteps).tokens, a.tokens);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, KvF16Fixture, ::testing::ValuesIn(kFixtures), [](const auto& info) {
    std::string name = info.param;
    for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return name;
});

class KvRing : public ::testing::TestWithParam<DType> {};

TEST_P(KvRing, SlidingWindowRingGivesTheFullCachesLogitsBitForBitOverManyWindows) {
    constexpr int64_t kContext = 160, kStep = 4;
    constexpr int kSteps = 120;  // positions 8..128: eight windows of 16
    auto model = load("gpt-oss-mxfp4", kContext);
    const ModelHParams& hp = model->hparams();
    ASSERT_EQ(hp.n_swa, 16);
    Session ring(*model, kContext, nullptr, KvOptions{.dtype = GetParam(), .max_step_rows = kStep});
    Session full(*model, kContext, nullptr, KvOptions{.dtype = GetParam(), .max_step_rows = 0});
    ASSERT_TRUE(ring.kv().wraps());
    EXPECT_FALSE(full.kv().wraps());
    EXPECT_EQ(ring.kv().ring(), hp.n_swa + kStep - 1);
    const size_t elem = GetParam() == DType::F16 ? 2 : 4;
    const size_t row = static_cast<size_t>(ring.kv().k_row() + ring.kv().v_row()) * elem;
    int num_swa = 0;
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        num_swa += hp.is_swa(l);
        EXPECT_EQ(ring.kv().layer_bytes(l), (hp.is_swa(l) ? 19 : kContext) * row) << "layer " << l;
        EXPECT_EQ(full.kv().layer_bytes(l), kContext * row) << "layer " << l;
    }
    ASSERT_GT(num_swa, 0);
    EXPECT_EQ(full.kv().bytes() - ring.kv().bytes(), num_swa * (kContext - 19) * row);
    // The ring session splits the 8-token prompt into two steps of 4; the full one is given the same steps.
    const Greedy a = greedy(full, kSteps, kStep), b = greedy(ring, kSteps);
    EXPECT_EQ(b.tokens, a.tokens);
    for (int i = 0; i < kSteps; ++i) ASSERT_EQ(b.logits[i], a.logits[i]) << "step " << i;
    // A full step of kStep tokens far past the first window: its first query still sees all n_swa positions.
    const std::vector<int32_t> step = {5, 99, 300, 7};
    EXPECT_EQ(ring.eval(step, true), full.eval(step, true));
}

INSTANTIATE_TEST_SUITE_P(Types, KvRing, ::testing::Values(DType::F32, DType::F16),
                         [](const auto& info) { return info.param == DType::F16 ? std::string("F16") : "F32"; });

TEST(KvRing, TruncationWithinTheStepBoundResumesExactlyAndBeyondItIsRefused) {
    constexpr int64_t kContext = 64, kStep = 4;
    auto model = load("gpt-oss-mxfp4", kContext);
    Session ring(*model, kContext, nullptr, KvOptions{.max_step_rows = kStep});
    Session full(*model, kContext, nullptr, KvOptions{.max_step_rows = 0});
    const Greedy a = greedy(full, 32, kStep), b = greedy(ring, 32);  // n_past 40: ring holds [21, 40)
    ASSERT_EQ(b.tokens, a.tokens);
    try {
        ring.truncate(35);  // the next token at 35 would need position 20
        FAIL() << "expected ConfigError";
    } catch (const moerig::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("ring"), std::string::npos) << e.what();
    }
    EXPECT_EQ(ring.n_past(), 40);
    ring.truncate(36);
    full.truncate(36);
    const std::vector<int32_t> other = {5, 99, 300, 7};
    EXPECT_EQ(ring.eval(other, true), full.eval(other, true));
    ring.reset();
    EXPECT_EQ(ring.n_past(), 0);
}

TEST(KvRing, AStepLongerThanTheRingWasSizedForIsRefusedAndSessionsSplitLongEvals) {
    constexpr int64_t kContext = 64, kStep = 4;
    auto model = load("gpt-oss-mxfp4", kContext);
    const ModelHParams& hp = model->hparams();
    KvCache kv(hp, kContext, 0, -1, KvOptions{.max_step_rows = kStep});
    std::vector<float> x(static_cast<size_t>(5 * hp.n_embd));
    model->embed(std::span(kPrompt).first(5), x.data());
    EXPECT_THROW(model->forward_layers(0, hp.n_layer, x.data(), 5, 0, kv, model->pool()), moerig::ConfigError);

    // Session and BatchSession run the 8-token prompt (all logits) in steps of 4 and give the unsplit logits.
    Session ring(*model, kContext, nullptr, KvOptions{.max_step_rows = kStep});
    Session full(*model, kContext, nullptr, KvOptions{.max_step_rows = 0});
    const std::vector<float> ref = full.eval(kPrompt, true);
    const std::vector<float> split = ring.eval(kPrompt, true);
    ASSERT_EQ(split.size(), ref.size());
    EXPECT_LE(nmse(split, ref), 1e-10);
    BatchSession batch(*model, 2, kContext, nullptr, KvOptions{.max_step_rows = kStep});
    const std::vector<int32_t> short_prompt = {3, 4, 5};
    const std::vector<SeqTokens> entries = {{.slot_idx = 1, .tokens = kPrompt, .all_logits = true},
                                            {.slot_idx = 0, .tokens = short_prompt}};
    const auto out = batch.eval(entries);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_LE(nmse(out[0], ref), 1e-10);
    EXPECT_EQ(batch.n_past(1), 8);
    EXPECT_EQ(batch.n_past(0), 3);
    Session alone(*model, kContext);
    EXPECT_LE(nmse(out[1], alone.eval(short_prompt)), 1e-10);
}
