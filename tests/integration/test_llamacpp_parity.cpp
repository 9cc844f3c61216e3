// Holds the CPU engine to llama.cpp on the small fixture models of tests/data/models (one per MoE architecture,
// F32/F16/BF16 and llama.cpp-quantised variants; tools/make_fixtures.py made them and llama.cpp's outputs).
// Exact-weight models: same tokens, same 32-token greedy continuation, last-position logits NMSE <= 1e-5.
// Quantised models: llama.cpp quantises activations to Q8 inside its quantised matmuls, so logits only agree
// to the bound in the JSON (see tests/data/models/README.md); teacher-forced top-1 >= 95%. Perplexity: 0.5%.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/perplexity.h"
#include "runtime/session.h"
#include "runtime/tokenizer.h"
#include "tests/integration/llamacpp_reference.h"

namespace moerig {
namespace {

namespace fs = std::filesystem;
using testing::LlamaCppReference;

/// The committed fixtures; MOERIG_PARITY_FIXTURES points the suite at another make_fixtures.py output (bisecting).
const fs::path kModelDir = std::getenv("MOERIG_PARITY_FIXTURES") ? fs::path(std::getenv("MOERIG_PARITY_FIXTURES"))
                                                                 : fs::path(MOERIG_TEST_DATA) / "models";
constexpr int kThreads = 2;

/// Every fixture's reference and model are loaded once for the whole binary (the models are small).
struct Loaded {
    LlamaCppReference ref;
    std::unique_ptr<runtime::Model> model;
};

const Loaded& loaded(const fs::path& json) {
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<Loaded>> cache;
    std::lock_guard lock(mu);
    auto& slot = cache[json.string()];
    if (!slot) {
        auto l = std::make_unique<Loaded>();
        l->ref = LlamaCppReference::load(json);
        runtime::ModelOptions opts;
        opts.num_threads = kThreads;
        opts.context = 512;
        opts.progress = false;
        l->model = runtime::Model::load(l->ref.model_path, opts);
        slot = std::move(l);
    }
    return *slot;
}

std::vector<int32_t> greedy_decode(runtime::Session& s, const std::vector<int32_t>& prompt, size_t n) {
    std::vector<int32_t> out;
    std::vector<float> logits = s.eval(prompt);
    for (size_t i = 0; i < n; ++i) {
        const int32_t next = testing::argmax(logits);
        out.push_back(next);
        if (i + 1 < n) logits = s.eval(std::span<const int32_t>(&next, 1));
    }
    return out;
}

class LlamaCppParity : public ::testing::TestWithParam<fs::path> {
  protected:
    const LlamaCppReference& ref() { return loaded(GetParam()).ref; }
    const runtime::Model& model() { return *loaded(GetParam()).model; }
};

TEST(LlamaCppFixtures, EveryArchitectureAndWeightKindHasAReference) {
    const auto files = testing::reference_files(kModelDir);
    std::vector<std::string> names;
    for (const auto& f : files) names.push_back(f.stem().string());
    for (const char* want :
         {"mixtral-f32", "qwen2moe-f32", "qwen3moe-f32", "olmoe-f32", "deepseek2-v3-f32", "deepseek2-lite-f32",
          "gpt-oss-mxfp4", "qwen3moe-f16", "olmoe-bf16", "mixtral-q8_0", "qwen3moe-q4_k_m", "deepseek2-v3-q6_k"}) {
        EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want << " missing in " << kModelDir;
    }
}

TEST_P(LlamaCppParity, LoadsWithLlamaCppVocabularySize) {
    EXPECT_EQ(model().hparams().n_vocab, ref().n_vocab);
    EXPECT_EQ(model().tokenizer().add_bos(), ref().add_bos);
}

TEST_P(LlamaCppParity, TokenizesPromptsLikeLlamaCpp) {
    for (const auto& p : ref().prompts) {
        // llama-cpp-python tokenize(text, add_bos=True, special=False) = add_special, no special parsing
        EXPECT_EQ(model().tokenizer().encode(p.text, true, false), p.tokens) << "prompt: " << p.text;
    }
}

TEST_P(LlamaCppParity, LastPositionLogitsMatchWithinNmseBound) {
    runtime::Session s(model(), 512);
    for (size_t i = 0; i < ref().prompts.size(); ++i) {
        const auto& p = ref().prompts[i];
        s.reset();
        const std::vector<float> logits = s.eval(p.tokens);
        ASSERT_EQ(static_cast<int64_t>(logits.size()), ref().n_vocab);
        const double e = testing::nmse(logits, p.last_logits);
        EXPECT_LE(e, ref().last_logits_nmse_max) << "prompt " << i << " (" << p.tokens.size() << " tokens)";
        EXPECT_EQ(testing::argmax(logits), testing::argmax(p.last_logits)) << "prompt " << i;
    }
}

TEST_P(LlamaCppParity, GreedyContinuationIsTokenForTokenLlamaCpp) {
    if (!ref().exact) GTEST_SKIP() << "quantised: held to teacher-forced top-1 agreement instead";
    runtime::Session s(model(), 512);
    for (size_t i = 0; i < ref().prompts.size(); ++i) {
        const auto& p = ref().prompts[i];
        s.reset();
        const auto got = greedy_decode(s, p.tokens, p.greedy.size());
        EXPECT_EQ(got, p.greedy) << "prompt " << i << " (llama.cpp's smallest top-1/top-2 gap " << p.greedy_min_margin
                                 << ")";
    }
}

TEST_P(LlamaCppParity, GenerateAtZeroTemperatureFollowsGreedyUntilEndOfGeneration) {
    if (!ref().exact) GTEST_SKIP() << "quantised: held to teacher-forced top-1 agreement instead";
    const auto& p = ref().prompts.front();
    std::vector<int32_t> want;
    for (int32_t t : p.greedy) {
        if (model().tokenizer().is_eog(t)) break;
        want.push_back(t);
    }
    runtime::Session s(model(), 512);
    runtime::SamplerParams greedy;
    greedy.temp = 0.f;
    const auto got = runtime::generate(s, p.tokens, static_cast<int>(p.greedy.size()), greedy);
    EXPECT_EQ(got, want);
}

TEST_P(LlamaCppParity, TeacherForcedTopOneAgreesAtEveryStepBound) {
    const auto& p = ref().prompts.front();
    ASSERT_FALSE(p.teacher_tokens.empty());
    runtime::Session s(model(), 512);
    const std::vector<float> logits = s.eval(p.teacher_tokens, true);
    const size_t n = p.teacher_tokens.size(), nv = static_cast<size_t>(ref().n_vocab);
    ASSERT_EQ(logits.size(), n * nv);
    size_t agree = 0;
    for (size_t t = 0; t < n; ++t) {
        agree += testing::argmax(std::span<const float>(logits).subspan(t * nv, nv)) == p.teacher_top1[t];
    }
    const double rate = double(agree) / double(n);
    EXPECT_GE(rate, ref().teacher_top1_min) << agree << " of " << n << " positions";
    if (!p.teacher_logits.empty()) {
        EXPECT_LE(testing::nmse(logits, p.teacher_logits), ref().last_logits_nmse_max) << "all " << n << " positions";
    }
}

TEST_P(LlamaCppParity, PerplexityMatchesLlamaCppPerplexityTool) {
    const auto& pp = ref().perplexity;
    const auto got = runtime::perplexity(model(), pp.tokens, pp.n_ctx, nullptr);
    EXPECT_EQ(got.num_scored, pp.num_scored);
    EXPECT_EQ(static_cast<int64_t>(got.chunk_ppl.size()), pp.num_chunks);
    EXPECT_NEAR(got.ppl / pp.ppl, 1.0, ref().ppl_rel_tol) << "moerig " << got.ppl << " vs llama.cpp " << pp.ppl;
}

std::string fixture_name(const ::testing::TestParamInfo<fs::path>& info) {
    std::string s = info.param.stem().string();
    std::replace_if(
        s.begin(), s.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
    return s;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlamaCppParity, ::testing::ValuesIn(testing::reference_files(kModelDir)),
                         fixture_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(LlamaCppParity);

}  // namespace
}  // namespace moerig
