// Holds the CPU engine to transformers on the tiny Hugging Face checkpoints of tests/data/hf (one per family
// transformers 4.51.3 implements: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v3; tools/make_hf_fixtures.py
// made them and transformers' outputs). Each loads straight from its directory (config.json + safetensors).
// Exact weights: identical 32-token greedy continuations and last-position logits NMSE <= 1e-5 against
// transformers computing in float32. The BF16 fixture's reference is float32 compute over its BF16 weights;
// the engine (like llama.cpp, whose BF16 dot products take BF16 activations) rounds each matmul input to BF16
// first, a relative error of up to 2^-9 per element, which measures 6e-6..2e-5 in NMSE here: kBf16Nmse = 1e-4
// bounds it while a real mismatch (a wrong layout, a missed bias or gate) gives NMSE ~1e-2..1. Against
// transformers' all-BF16 forward (every matmul output and residual add rounded as well; measured 5e-5..8e-5)
// the bound is kBf16ComputeNmse = 1e-3.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tests/common/cli_run.h"
#include "tests/common/greedy_run.h"

namespace moerig {
namespace {

namespace fs = std::filesystem;

const fs::path kHfDir = fs::path(MOERIG_TEST_DATA) / "hf";
constexpr double kNmse = 1e-5;
constexpr double kBf16Nmse = 1e-4;
constexpr double kBf16ComputeNmse = 1e-3;

struct HfReference {
    std::string model_type;
    std::string weights_dtype;
    int64_t vocab = 0;
    std::vector<std::vector<int32_t>> prompts;
    std::vector<std::vector<int32_t>> greedy;
    std::vector<float> logits;       // [prompts][vocab], float32 compute
    std::vector<float> logits_lowp;  // transformers' low-precision compute, when recorded
};

std::vector<float> read_floats(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    EXPECT_TRUE(in.good()) << p;
    in.seekg(0, std::ios::end);
    std::vector<float> v(static_cast<size_t>(in.tellg()) / sizeof(float));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
    return v;
}

HfReference read_reference(const fs::path& dir) {
    std::ifstream in(dir / "reference.json");
    const auto j = nlohmann::json::parse(in);
    HfReference r;
    r.model_type = j.at("model_type").get<std::string>();
    r.weights_dtype = j.at("weights_dtype").get<std::string>();
    r.vocab = j.at("vocab").get<int64_t>();
    r.prompts = j.at("prompts").get<std::vector<std::vector<int32_t>>>();
    r.greedy = j.at("greedy").get<std::vector<std::vector<int32_t>>>();
    r.logits = read_floats(dir / j.at("logits_file").get<std::string>());
    if (j.contains("logits_lowp_file")) r.logits_lowp = read_floats(dir / j.at("logits_lowp_file").get<std::string>());
    return r;
}

struct Loaded {
    HfReference ref;
    std::unique_ptr<runtime::Model> model;
};

const Loaded& loaded(const fs::path& dir) {
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<Loaded>> cache;
    std::lock_guard lock(mu);
    auto& slot = cache[dir.string()];
    if (!slot) {
        auto l = std::make_unique<Loaded>();
        l->ref = read_reference(dir);
        runtime::ModelOptions opts;
        opts.num_threads = 2;
        opts.context = 128;
        opts.progress = false;
        l->model = runtime::Model::load(dir.string(), opts);
        slot = std::move(l);
    }
    return *slot;
}

int32_t argmax(const std::vector<float>& v) {
    size_t best = 0;
    for (size_t i = 1; i < v.size(); ++i)
        if (v[i] > v[best]) best = i;
    return static_cast<int32_t>(best);
}

std::vector<fs::path> fixture_dirs() {
    std::vector<fs::path> dirs;
    if (!fs::exists(kHfDir)) return dirs;
    for (const auto& e : fs::directory_iterator(kHfDir))
        if (e.is_directory() && fs::exists(e.path() / "reference.json")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    return dirs;
}

TEST(HfFixtures, EveryFamilyTransformersHasIsPresent) {
    std::vector<std::string> types;
    for (const auto& d : fixture_dirs()) types.push_back(read_reference(d).model_type);
    for (const char* want : {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3"})
        EXPECT_NE(std::find(types.begin(), types.end(), want), types.end()) << "no fixture for " << want;
    bool has_bf16 = false;
    for (const auto& d : fixture_dirs()) has_bf16 |= read_reference(d).weights_dtype == "bfloat16";
    EXPECT_TRUE(has_bf16);
}

class HfParity : public ::testing::TestWithParam<fs::path> {
  protected:
    const HfReference& ref() { return loaded(GetParam()).ref; }
    const runtime::Model& model() { return *loaded(GetParam()).model; }
};

TEST_P(HfParity, LastPositionLogitsMatchTransformers) {
    const auto& r = ref();
    ASSERT_EQ(model().hparams().n_vocab, r.vocab);
    ASSERT_EQ(r.logits.size(), r.prompts.size() * static_cast<size_t>(r.vocab));
    for (size_t p = 0; p < r.prompts.size(); ++p) {
        runtime::Session s(model(), 128);
        const auto logits = s.eval(r.prompts[p]);
        ASSERT_EQ(static_cast<int64_t>(logits.size()), r.vocab);
        const double e = moerig::test::nmse(
            logits, std::span<const float>(r.logits.data() + p * r.vocab, static_cast<size_t>(r.vocab)));
        EXPECT_LE(e, r.weights_dtype == "bfloat16" ? kBf16Nmse : kNmse) << GetParam().filename() << " prompt " << p;
        std::printf("[ hf ] %s prompt %zu: NMSE %.3g\n", GetParam().filename().c_str(), p, e);
        if (!r.logits_lowp.empty()) {
            const double el = moerig::test::nmse(
                logits, std::span<const float>(r.logits_lowp.data() + p * r.vocab, static_cast<size_t>(r.vocab)));
            EXPECT_LE(el, kBf16ComputeNmse) << GetParam().filename() << " prompt " << p << " vs BF16 compute";
            std::printf("[ hf ] %s prompt %zu: NMSE vs transformers' BF16 compute %.3g\n",
                        GetParam().filename().c_str(), p, el);
        }
    }
}

TEST_P(HfParity, GreedyContinuationMatchesTransformers) {
    const auto& r = ref();
    if (r.weights_dtype == "bfloat16") GTEST_SKIP() << "BF16 activations: see TeacherForcedTokensAreNearTopOne";
    for (size_t p = 0; p < r.prompts.size(); ++p) {
        runtime::Session s(model(), 128);
        std::vector<int32_t> got;
        std::vector<float> logits = s.eval(r.prompts[p]);
        for (size_t i = 0; i < r.greedy[p].size(); ++i) {
            const int32_t next = argmax(logits);
            got.push_back(next);
            if (i + 1 < r.greedy[p].size()) logits = s.eval(std::span<const int32_t>(&next, 1));
        }
        EXPECT_EQ(got, r.greedy[p]) << GetParam().filename() << " prompt " << p;
    }
}

// Feeding transformers' continuation token by token, its next token must be our top-1 or within a hair of it:
// exact for F32; for BF16 weights (rounded activations) within 2% of the logits' standard deviation, so a
// near-tie may flip but a real divergence fails.
TEST_P(HfParity, TeacherForcedTokensAreNearTopOne) {
    const auto& r = ref();
    const bool bf16 = r.weights_dtype == "bfloat16";
    size_t exact = 0, total = 0;
    for (size_t p = 0; p < r.prompts.size(); ++p) {
        runtime::Session s(model(), 128);
        std::vector<float> logits = s.eval(r.prompts[p]);
        for (size_t i = 0; i < r.greedy[p].size(); ++i) {
            const int32_t want = r.greedy[p][i], top = argmax(logits);
            double mean = 0, var = 0;
            for (float v : logits) mean += v;
            mean /= static_cast<double>(logits.size());
            for (float v : logits) var += (v - mean) * (v - mean);
            const double tol = bf16 ? 0.02 * std::sqrt(var / static_cast<double>(logits.size())) : 0.0;
            EXPECT_GE(logits[static_cast<size_t>(want)] + tol, logits[static_cast<size_t>(top)])
                << GetParam().filename() << " prompt " << p << " step " << i << ": transformers' token " << want
                << ", ours " << top;
            exact += top == want;
            ++total;
            logits = s.eval(std::span<const int32_t>(&want, 1));
        }
    }
    std::printf("[ hf ] %s: teacher-forced top-1 agreement %zu/%zu\n", GetParam().filename().c_str(), exact, total);
}

TEST_P(HfParity, LoadsThroughConfigJsonPathToo) {
    runtime::ModelOptions opts;
    opts.num_threads = 1;
    opts.context = 32;
    opts.progress = false;
    const auto m = runtime::Model::load((GetParam() / "config.json").string(), opts);
    EXPECT_EQ(m->hparams().n_layer, model().hparams().n_layer);
    EXPECT_EQ(m->gguf().get_string("moerig.import"), "huggingface");
}

TEST(HfCli, RunGeneratesTransformersGreedyTokensFromTheDirectory) {
    // mixtral-f32 carries a byte-level tokenizer.json (id = byte); its last prompt is this text.
    const fs::path dir = kHfDir / "mixtral-f32";
    const HfReference r = read_reference(dir);
    const auto run = testing::run_moerig("run -m " + dir.string() +
                                         " -p 'Hello, MoE world' -n 32 --temp 0 --threads 2 --ctx 128 --json");
    ASSERT_EQ(run.code, 0) << run.err;
    const auto j = nlohmann::json::parse(run.out);
    const auto prompt = j.at("prompt_tokens").get<std::vector<int32_t>>();
    EXPECT_EQ(prompt, r.prompts.back());
    auto want = r.greedy.back();
    auto got = j.at("tokens").get<std::vector<int32_t>>();
    // Generation stops at end of generation (eos_token_id 2), which the reference ends with.
    ASSERT_FALSE(want.empty());
    if (want.back() == 2 && got.size() + 1 == want.size()) want.pop_back();
    EXPECT_EQ(got, want);
}

TEST(HfCli, ShardedRunOfEveryCheckpointGivesTransformersTokens) {
    // Every fixture carries the byte tokenizer; experts spread over the six virtual cards of a rig.
    for (const auto& dir : fixture_dirs()) {
        const HfReference r = read_reference(dir);
        const std::string base = "run -m " + (dir / "config.json").string() +
                                 " -p 'Hello, MoE world' -n 32 --temp 0 --threads 2 --ctx 128 --json";
        const auto one = testing::run_moerig(base);
        const auto sharded = testing::run_moerig(base + " --rig rtx3060-6x-gen3x4 --strategy expert-parallel");
        ASSERT_EQ(one.code, 0) << dir << one.err;
        ASSERT_EQ(sharded.code, 0) << dir << sharded.err;
        const auto one_tokens = nlohmann::json::parse(one.out).at("tokens").get<std::vector<int32_t>>();
        const auto sharded_tokens = nlohmann::json::parse(sharded.out).at("tokens").get<std::vector<int32_t>>();
        EXPECT_EQ(sharded_tokens, one_tokens) << dir;
        auto want = r.greedy.back();
        if (!want.empty() && want.back() == 2 && one_tokens.size() + 1 == want.size()) want.pop_back();
        if (r.weights_dtype != "bfloat16") {
            EXPECT_EQ(one_tokens, want) << dir;
        }
    }
}

TEST(HfCli, InspectShowsTheCheckpoint) {
    const auto run = testing::run_moerig("inspect " + (kHfDir / "deepseekv3-f32").string());
    ASSERT_EQ(run.code, 0) << run.err;
    EXPECT_NE(run.out.find("model.layers.1.mlp.gate.e_score_correction_bias"), std::string::npos) << run.out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfParity, ::testing::ValuesIn(fixture_dirs()),
                         [](const ::testing::TestParamInfo<fs::path>& info) {
                             std::string n = info.param.filename().string();
                             for (auto& c : n)
                                 if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                             return n;
                         });

}  // namespace
}  // namespace moerig
