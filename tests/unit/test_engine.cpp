// CPU engine on tiny models written in the test (random weights, every supported architecture): the KV-cache
// path equals recomputing from scratch, batch prefill equals token-by-token decode, MoE with identical experts
// equals the dense FFN, a dense model matches a naive float reference, absorbed and plain MLA files agree,
// generation and perplexity give exact results on degenerate models, and bad inputs fail with clear errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>

#include "kernels/error.h"
#include "kernels/quant.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/perplexity.h"
#include "runtime/session.h"
#include "tests/common/gguf_builder.h"

using moerig::DType;
using moerig::runtime::Model;
using moerig::runtime::Session;
using moerig::testing::GgufBuilder;

namespace {

struct TinySpec {
    std::string arch = "llama";
    int64_t n_embd = 64, n_head = 4, n_head_kv = 2, n_layer = 2, n_vocab = 96, n_ff = 96;
    int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 64, n_ff_shexp = 64;
    bool identical_experts = false;
    // DeepSeek MLA.
    int64_t q_lora_rank = 0, kv_lora_rank = 64, n_rot = 16, qk_nope = 32, v_head = 32;
    bool mla_absorbed = false;
    DType wtype = DType::F32;
    uint32_t seed = 7;
    int32_t eos_id = -1;
    bool zero_output = false;
    std::string attn_q_type;        // override for attn_q (error tests)
    int64_t declared_n_ff_exp = 0;  // written instead of n_ff_exp when > 0 (error tests)
    int64_t n_swa = 4;              // gpt-oss sliding window (even layers slide)
};

/// Deterministic values per tensor name, so tensors of the same name agree across specs.
std::vector<float> values(const TinySpec& s, const std::string& name, int64_t n, float scale, float offset = 0.f) {
    std::mt19937 rng(s.seed ^ static_cast<uint32_t>(std::hash<std::string>{}(name)));
    std::normal_distribution<float> d(0.f, 1.f);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = offset + scale * d(rng);
    return v;
}

std::vector<uint8_t> encode(DType type, const std::vector<float>& v) {
    std::vector<uint8_t> out(moerig::dtype_bytes(type, v.size()));
    if (type == DType::F32) {
        std::memcpy(out.data(), v.data(), out.size());
    } else if (moerig::kernels::can_quantize(type)) {
        moerig::kernels::quantize_row(type, v.data(), out.data(), static_cast<int64_t>(v.size()));
    }  // other types (error tests) stay zero bytes
    return out;
}

class TinyWriter {
  public:
    explicit TinyWriter(const TinySpec& s) : s_(s) {}

    void mat(const std::string& name, int64_t rows, int64_t cols, float scale = 0.f,
             std::optional<DType> type_opt = std::nullopt) {
        const DType type = type_opt.value_or(s_.wtype);
        if (scale == 0.f) scale = 1.f / std::sqrt(static_cast<float>(cols));
        b_.tensor(name, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)}, type,
                  encode(type, values(s_, name, rows * cols, scale)));
    }
    void vec(const std::string& name, int64_t n, float scale = 0.1f, float offset = 1.f) {
        b_.tensor(name, {static_cast<uint64_t>(n)}, DType::F32, encode(DType::F32, values(s_, name, n, scale, offset)));
    }
    void experts(const std::string& name, const std::string& dense_name, int64_t rows, int64_t cols, int64_t n) {
        std::vector<float> all;
        for (int64_t e = 0; e < n; ++e) {
            const auto one = s_.identical_experts
                                 ? values(s_, dense_name, rows * cols, 1.f / std::sqrt(float(cols)))
                                 : values(s_, name + std::to_string(e), rows * cols, 1.f / std::sqrt(float(cols)));
            all.insert(all.end(), one.begin(), one.end());
        }
        b_.tensor(name, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows), static_cast<uint64_t>(n)}, s_.wtype,
                  encode(s_.wtype, all));
    }
    GgufBuilder& builder() { return b_; }

  private:
    const TinySpec& s_;
    GgufBuilder b_;
};

std::string blk(int64_t i, const std::string& n) {
    return "blk." + std::to_string(i) + "." + n + ".weight";
}

GgufBuilder build(const TinySpec& s) {
    TinyWriter w(s);
    auto& b = w.builder();
    const std::string a = s.arch;
    const bool mla = a == "deepseek2";
    const int64_t hd = s.n_embd / s.n_head;
    b.kv_str("general.architecture", a)
        .kv_u32(a + ".block_count", static_cast<uint32_t>(s.n_layer))
        .kv_u32(a + ".embedding_length", static_cast<uint32_t>(s.n_embd))
        .kv_u32(a + ".attention.head_count", static_cast<uint32_t>(s.n_head))
        .kv_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(mla ? s.n_head : s.n_head_kv))
        .kv_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff))
        .kv_u32(a + ".context_length", 256)
        .kv_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f)
        .kv_f32(a + ".rope.freq_base", 10000.f);
    if (s.eos_id >= 0) b.kv_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(s.eos_id));
    if (s.n_expert > 0) {
        b.kv_u32(a + ".expert_count", static_cast<uint32_t>(s.n_expert))
            .kv_u32(a + ".expert_used_count", static_cast<uint32_t>(s.n_expert_used))
            .kv_u32(a + ".expert_feed_forward_length",
                    static_cast<uint32_t>(s.declared_n_ff_exp > 0 ? s.declared_n_ff_exp : s.n_ff_exp));
    }
    if (a == "qwen2moe") b.kv_u32(a + ".expert_shared_feed_forward_length", static_cast<uint32_t>(s.n_ff_shexp));
    const bool oss = a == "gpt-oss";
    if (oss) b.kv_u32(a + ".attention.sliding_window", static_cast<uint32_t>(s.n_swa));
    auto bias = [&](int64_t i, const std::string& n, int64_t len) {
        w.vec("blk." + std::to_string(i) + "." + n + ".bias", len, 0.1f, 0.f);
    };
    if (mla) {
        b.kv_u32(a + ".rope.dimension_count", static_cast<uint32_t>(s.n_rot))
            .kv_u32(a + ".attention.kv_lora_rank", static_cast<uint32_t>(s.kv_lora_rank))
            .kv_u32(a + ".leading_dense_block_count", 1)
            .kv_u32(a + ".expert_shared_count", 1)
            .kv_u32(a + ".expert_gating_func", 2)
            .kv_bool(a + ".expert_weights_norm", true)
            .kv_f32(a + ".expert_weights_scale", 2.5f)
            .kv_u32(a + ".expert_group_count", 2)
            .kv_u32(a + ".expert_group_used_count", 1);
        if (s.q_lora_rank) b.kv_u32(a + ".attention.q_lora_rank", static_cast<uint32_t>(s.q_lora_rank));
        const auto hk = static_cast<uint32_t>(s.qk_nope + s.n_rot), hv = static_cast<uint32_t>(s.v_head);
        if (s.mla_absorbed) {
            b.kv_u32(a + ".attention.key_length", static_cast<uint32_t>(s.kv_lora_rank + s.n_rot))
                .kv_u32(a + ".attention.value_length", static_cast<uint32_t>(s.kv_lora_rank))
                .kv_u32(a + ".attention.key_length_mla", hk)
                .kv_u32(a + ".attention.value_length_mla", hv);
        } else {
            b.kv_u32(a + ".attention.key_length", hk).kv_u32(a + ".attention.value_length", hv);
        }
    }

    w.mat("token_embd.weight", s.n_vocab, s.n_embd, 1.f);
    w.vec("output_norm.weight", s.n_embd, s.zero_output ? 0.f : 0.1f, s.zero_output ? 0.f : 1.f);
    w.mat("output.weight", s.n_vocab, s.n_embd);
    for (int64_t i = 0; i < s.n_layer; ++i) {
        w.vec(blk(i, "attn_norm"), s.n_embd);
        w.vec(blk(i, oss ? "post_attention_norm" : "ffn_norm"), s.n_embd);
        if (mla) {
            const int64_t hk = s.qk_nope + s.n_rot, rank = s.kv_lora_rank;
            if (s.q_lora_rank) {
                w.mat(blk(i, "attn_q_a"), s.q_lora_rank, s.n_embd);
                w.vec(blk(i, "attn_q_a_norm"), s.q_lora_rank);
                w.mat(blk(i, "attn_q_b"), s.n_head * hk, s.q_lora_rank);
            } else {
                w.mat(blk(i, "attn_q"), s.n_head * hk, s.n_embd);
            }
            w.mat(blk(i, "attn_kv_a_mqa"), rank + s.n_rot, s.n_embd);
            w.vec(blk(i, "attn_kv_a_norm"), rank);
            w.mat(blk(i, "attn_output"), s.n_embd, s.n_head * s.v_head);
            const int64_t per_head = s.qk_nope + s.v_head;
            const auto kv_b = values(s, blk(i, "attn_kv_b"), s.n_head * per_head * rank, 1.f / std::sqrt(float(rank)));
            if (!s.mla_absorbed) {
                b.tensor(blk(i, "attn_kv_b"), {uint64_t(rank), uint64_t(s.n_head * per_head)}, DType::F32,
                         encode(DType::F32, kv_b));
            } else {
                std::vector<float> k_b, v_b;  // ne {nope, rank, n_head} and {rank, v_head, n_head}
                for (int64_t h = 0; h < s.n_head; ++h) {
                    for (int64_t c = 0; c < rank; ++c)
                        for (int64_t r = 0; r < s.qk_nope; ++r) k_b.push_back(kv_b[(h * per_head + r) * rank + c]);
                    for (int64_t j = 0; j < s.v_head; ++j)
                        for (int64_t c = 0; c < rank; ++c)
                            v_b.push_back(kv_b[(h * per_head + s.qk_nope + j) * rank + c]);
                }
                b.tensor(blk(i, "attn_k_b"), {uint64_t(s.qk_nope), uint64_t(rank), uint64_t(s.n_head)}, DType::F32,
                         encode(DType::F32, k_b));
                b.tensor(blk(i, "attn_v_b"), {uint64_t(rank), uint64_t(s.v_head), uint64_t(s.n_head)}, DType::F32,
                         encode(DType::F32, v_b));
            }
        } else {
            const auto q_type = s.attn_q_type.empty() ? std::nullopt : moerig::dtype_from_name(s.attn_q_type);
            w.mat(blk(i, "attn_q"), s.n_head * hd, s.n_embd, 0.f, q_type);
            w.mat(blk(i, "attn_k"), s.n_head_kv * hd, s.n_embd);
            w.mat(blk(i, "attn_v"), s.n_head_kv * hd, s.n_embd);
            w.mat(blk(i, "attn_output"), s.n_embd, s.n_head * hd);
            if (a == "qwen2moe") {
                w.vec("blk." + std::to_string(i) + ".attn_q.bias", s.n_head * hd, 0.1f, 0.f);
                w.vec("blk." + std::to_string(i) + ".attn_k.bias", s.n_head_kv * hd, 0.1f, 0.f);
                w.vec("blk." + std::to_string(i) + ".attn_v.bias", s.n_head_kv * hd, 0.1f, 0.f);
            }
            if (oss) {
                bias(i, "attn_q", s.n_head * hd);
                bias(i, "attn_k", s.n_head_kv * hd);
                bias(i, "attn_v", s.n_head_kv * hd);
                bias(i, "attn_output", s.n_embd);
                w.vec(blk(i, "attn_sinks"), s.n_head, 1.f, 0.f);
            }
            if (a == "qwen3moe") {
                w.vec(blk(i, "attn_q_norm"), hd);
                w.vec(blk(i, "attn_k_norm"), hd);
            }
            if (a == "olmoe") {
                w.vec(blk(i, "attn_q_norm"), s.n_head * hd);
                w.vec(blk(i, "attn_k_norm"), s.n_head_kv * hd);
            }
        }
        const bool moe = s.n_expert > 0 && !(mla && i == 0);
        if (!moe) {
            w.mat(blk(i, "ffn_gate"), s.n_ff, s.n_embd);
            w.mat(blk(i, "ffn_up"), s.n_ff, s.n_embd);
            w.mat(blk(i, "ffn_down"), s.n_embd, s.n_ff);
            continue;
        }
        w.mat(blk(i, "ffn_gate_inp"), s.n_expert, s.n_embd, 1.f);
        w.experts(blk(i, "ffn_gate_exps"), blk(i, "ffn_gate"), s.n_ff_exp, s.n_embd, s.n_expert);
        w.experts(blk(i, "ffn_up_exps"), blk(i, "ffn_up"), s.n_ff_exp, s.n_embd, s.n_expert);
        w.experts(blk(i, "ffn_down_exps"), blk(i, "ffn_down"), s.n_embd, s.n_ff_exp, s.n_expert);
        if (oss) {
            bias(i, "ffn_gate_inp", s.n_expert);
            b.tensor("blk." + std::to_string(i) + ".ffn_gate_exps.bias", {uint64_t(s.n_ff_exp), uint64_t(s.n_expert)},
                     DType::F32,
                     encode(DType::F32, values(s, "gate_b" + std::to_string(i), s.n_ff_exp * s.n_expert, 0.5f)));
            b.tensor("blk." + std::to_string(i) + ".ffn_up_exps.bias", {uint64_t(s.n_ff_exp), uint64_t(s.n_expert)},
                     DType::F32,
                     encode(DType::F32, values(s, "up_b" + std::to_string(i), s.n_ff_exp * s.n_expert, 0.5f)));
            b.tensor("blk." + std::to_string(i) + ".ffn_down_exps.bias", {uint64_t(s.n_embd), uint64_t(s.n_expert)},
                     DType::F32,
                     encode(DType::F32, values(s, "down_b" + std::to_string(i), s.n_embd * s.n_expert, 0.1f)));
        }
        if (mla) {
            w.vec("blk." + std::to_string(i) + ".exp_probs_b.bias", s.n_expert, 0.1f, 0.f);
            w.mat(blk(i, "ffn_gate_shexp"), s.n_ff_exp, s.n_embd);
            w.mat(blk(i, "ffn_up_shexp"), s.n_ff_exp, s.n_embd);
            w.mat(blk(i, "ffn_down_shexp"), s.n_embd, s.n_ff_exp);
        }
        if (a == "qwen2moe") {
            w.mat(blk(i, "ffn_gate_inp_shexp"), 1, s.n_embd);
            w.mat(blk(i, "ffn_gate_shexp"), s.n_ff_shexp, s.n_embd);
            w.mat(blk(i, "ffn_up_shexp"), s.n_ff_shexp, s.n_embd);
            w.mat(blk(i, "ffn_down_shexp"), s.n_embd, s.n_ff_shexp);
        }
    }
    return b;
}

/// A model file in the temp directory, removed when the test ends.
class TempModel {
  public:
    explicit TempModel(const GgufBuilder& b) {
        static int counter = 0;
        path_ = std::filesystem::temp_directory_path() /
                ("moerig_engine_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".gguf");
        b.write(path_.string());
    }
    ~TempModel() { std::filesystem::remove(path_); }
    std::string path() const { return path_.string(); }

  private:
    std::filesystem::path path_;
};

std::unique_ptr<Model> load(const TempModel& f, int num_threads = 1) {
    moerig::runtime::ModelOptions o;
    o.num_threads = num_threads;
    o.progress = false;
    return Model::load(f.path(), o);
}

std::vector<int32_t> prompt(int64_t n, int64_t n_vocab, uint32_t seed = 3) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab));
    return t;
}

/// Largest |a - b| relative to the largest |a|.
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double m = 0, d = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_TRUE(std::isfinite(a[i]) && std::isfinite(b[i])) << "at " << i;
        m = std::max(m, std::abs(double(a[i])));
        d = std::max(d, std::abs(double(a[i]) - double(b[i])));
    }
    return d / std::max(m, 1e-12);
}

TinySpec spec_for(const std::string& arch) {
    TinySpec s;
    s.arch = arch;
    if (arch != "llama-dense") s.n_expert = 4, s.n_expert_used = 2;
    if (arch == "llama-dense") s.arch = "llama";
    if (arch == "deepseek2-lite") s.arch = "deepseek2";
    if (arch == "deepseek2") s.q_lora_rank = 32, s.mla_absorbed = true;
    if (arch == "olmoe") s.n_head_kv = 4;
    return s;
}

class EngineArch : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineArch, BatchPrefillEqualsTokenByTokenDecode) {
    const auto s = spec_for(GetParam());
    TempModel f(build(s));
    auto m = load(f);
    const auto toks = prompt(12, s.n_vocab);
    Session batch(*m, 64);
    const auto all = batch.eval(toks, true);
    Session step(*m, 64);
    for (size_t t = 0; t < toks.size(); ++t) {
        const auto logits = step.eval(std::span(toks).subspan(t, 1));
        const std::vector<float> row(all.begin() + t * s.n_vocab, all.begin() + (t + 1) * s.n_vocab);
        EXPECT_LT(rel_diff(row, logits), 1e-4) << "position " << t;
    }
    EXPECT_EQ(step.n_past(), 12);
}

TEST_P(EngineArch, KvCacheContinuationEqualsRecomputingFromScratch) {
    const auto s = spec_for(GetParam());
    TempModel f(build(s));
    auto m = load(f);
    const auto toks = prompt(10, s.n_vocab, 5);
    Session cached(*m, 32);
    cached.eval(std::span(toks).first(6));
    const auto cont = cached.eval(std::span(toks).subspan(6));
    Session fresh(*m, 32);
    const auto full = fresh.eval(toks);
    EXPECT_LT(rel_diff(full, cont), 1e-4);
    // Truncating and re-evaluating the tail reproduces it as well.
    cached.truncate(6);
    EXPECT_LT(rel_diff(full, cached.eval(std::span(toks).subspan(6))), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Archs, EngineArch,
                         ::testing::Values("llama-dense", "llama", "qwen2moe", "qwen3moe", "olmoe", "deepseek2",
                                           "deepseek2-lite", "gpt-oss"));

TEST(Engine, GptOssSlidingWindowLayerIgnoresTokensOutsideTheWindow) {
    // One gpt-oss layer: layer 0 slides (window 4), so the logits at position p >= 4 cannot depend on token 0;
    // with a window covering the whole prompt they must.
    TinySpec s = spec_for("gpt-oss");
    s.n_layer = 1;
    auto last_logits_change = [&](int64_t window) {
        s.n_swa = window;
        TempModel f(build(s));
        auto m = load(f);
        auto toks = prompt(8, s.n_vocab);
        Session a(*m, 16), b(*m, 16);
        const auto la = a.eval(toks);
        toks[0] = (toks[0] + 1) % static_cast<int32_t>(s.n_vocab);
        return rel_diff(la, b.eval(toks));
    };
    EXPECT_EQ(last_logits_change(4), 0.0);
    EXPECT_GT(last_logits_change(16), 1e-4);
}

TEST(Engine, GptOssExpertsThroughARunnerWithoutBiasSupportAreRejected) {
    struct PlainRunner final : moerig::runtime::ExpertRunner {
        void run(int64_t, const float*, const moerig::runtime::RouterOutput&, float*) override {}
    };
    const TinySpec s = spec_for("gpt-oss");
    TempModel f(build(s));
    auto m = load(f);
    PlainRunner runner;
    Session session(*m, 16);
    session.set_expert_runner(&runner);
    const auto toks = prompt(3, s.n_vocab);
    try {
        session.eval(toks);
        FAIL() << "expected UnsupportedError";
    } catch (const moerig::UnsupportedError& e) {
        EXPECT_NE(std::string(e.what()).find("gpt-oss"), std::string::npos) << e.what();
    }
}

TEST(Engine, MoeWithIdenticalExpertsEqualsDenseFfn) {
    TinySpec moe = spec_for("llama");
    moe.identical_experts = true;
    TinySpec dense = spec_for("llama-dense");
    dense.n_ff = moe.n_ff_exp;
    TempModel fm(build(moe)), fd(build(dense));
    auto mm = load(fm), md = load(fd);
    const auto toks = prompt(7, moe.n_vocab);
    Session sm(*mm, 16), sd(*md, 16);
    EXPECT_LT(rel_diff(sd.eval(toks, true), sm.eval(toks, true)), 1e-4);
}

TEST(Engine, ThreadedRunEqualsSingleThreadedRun) {
    auto s = spec_for("qwen3moe");
    s.wtype = DType::Q8_0;
    TempModel f(build(s));
    auto m1 = load(f, 1), m2 = load(f, 2);
    const auto toks = prompt(9, s.n_vocab);
    Session a(*m1, 16), b(*m2, 16);
    EXPECT_EQ(a.eval(toks, true), b.eval(toks, true));
}

TEST(Engine, QuantisedWeightsStayCloseToFloat) {
    TinySpec f32 = spec_for("qwen3moe"), q8 = f32;
    q8.wtype = DType::Q8_0;
    TempModel ff(build(f32)), fq(build(q8));
    auto mf = load(ff), mq = load(fq);
    const auto toks = prompt(6, f32.n_vocab);
    Session sf(*mf, 16), sq(*mq, 16);
    const auto a = sf.eval(toks), b = sq.eval(toks);
    EXPECT_LT(rel_diff(a, b), 0.1);
    EXPECT_GT(rel_diff(a, b), 0.0);  // really a different (quantised) path
}

TEST(Engine, AbsorbedAndPlainMlaFilesGiveTheSameLogits) {
    TinySpec plain = spec_for("deepseek2-lite"), absorbed = plain;
    absorbed.mla_absorbed = true;
    TempModel fp(build(plain)), fa(build(absorbed));
    auto mp = load(fp), ma = load(fa);
    const auto toks = prompt(9, plain.n_vocab);
    Session sp(*mp, 16), sa(*ma, 16);
    EXPECT_LT(rel_diff(sp.eval(toks, true), sa.eval(toks, true)), 1e-4);
}

// ---- A naive float reference of a dense llama model (NORM rope, GQA, SwiGLU), written independently. ----

std::vector<float> naive_rms(const std::vector<float>& x, const std::vector<float>& w, float eps) {
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const float inv = 1.f / std::sqrt(float(ss / x.size()) + eps);
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
    return y;
}

std::vector<float> naive_mv(const std::vector<float>& w, int64_t rows, const std::vector<float>& x) {
    std::vector<float> y(static_cast<size_t>(rows));
    const size_t cols = x.size();
    for (int64_t r = 0; r < rows; ++r) {
        double acc = 0;
        for (size_t c = 0; c < cols; ++c) acc += double(w[r * cols + c]) * x[c];
        y[static_cast<size_t>(r)] = float(acc);
    }
    return y;
}

std::vector<float> naive_llama_last_logits(const TinySpec& s, const std::vector<int32_t>& toks) {
    const int64_t E = s.n_embd, H = s.n_head, KV = s.n_head_kv, hd = E / H, T = int64_t(toks.size());
    const float eps = 1e-6f;
    auto sc = [](int64_t cols) { return 1.f / std::sqrt(float(cols)); };
    const auto emb = values(s, "token_embd.weight", s.n_vocab * E, 1.f);
    std::vector<std::vector<float>> x(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) x[t].assign(emb.begin() + toks[t] * E, emb.begin() + (toks[t] + 1) * E);
    for (int64_t i = 0; i < s.n_layer; ++i) {
        const auto an = values(s, blk(i, "attn_norm"), E, 0.1f, 1.f), fn = values(s, blk(i, "ffn_norm"), E, 0.1f, 1.f);
        const auto wq = values(s, blk(i, "attn_q"), H * hd * E, sc(E)),
                   wk = values(s, blk(i, "attn_k"), KV * hd * E, sc(E));
        const auto wv = values(s, blk(i, "attn_v"), KV * hd * E, sc(E)),
                   wo = values(s, blk(i, "attn_output"), E * E, sc(E));
        std::vector<std::vector<float>> q(T), k(T), v(T);
        for (int64_t t = 0; t < T; ++t) {
            const auto xn = naive_rms(x[t], an, eps);
            q[t] = naive_mv(wq, H * hd, xn), k[t] = naive_mv(wk, KV * hd, xn), v[t] = naive_mv(wv, KV * hd, xn);
            for (auto* vec : {&q[t], &k[t]}) {
                for (int64_t h = 0; h < int64_t(vec->size()) / hd; ++h) {
                    for (int64_t j = 0; j < hd / 2; ++j) {
                        const double theta = double(t) * std::pow(10000.0, -2.0 * j / double(hd));
                        float& a = (*vec)[h * hd + 2 * j];
                        float& b = (*vec)[h * hd + 2 * j + 1];
                        const float a0 = a, b0 = b;
                        a = float(a0 * std::cos(theta) - b0 * std::sin(theta));
                        b = float(a0 * std::sin(theta) + b0 * std::cos(theta));
                    }
                }
            }
        }
        for (int64_t t = 0; t < T; ++t) {
            std::vector<float> att(static_cast<size_t>(H * hd), 0.f);
            for (int64_t h = 0; h < H; ++h) {
                const int64_t kh = h / (H / KV);
                std::vector<double> sc_(static_cast<size_t>(t + 1));
                double mx = -1e30;
                for (int64_t j = 0; j <= t; ++j) {
                    double d = 0;
                    for (int64_t c = 0; c < hd; ++c) d += double(q[t][h * hd + c]) * k[j][kh * hd + c];
                    sc_[j] = d / std::sqrt(double(hd));
                    mx = std::max(mx, sc_[j]);
                }
                double sum = 0;
                for (auto& e : sc_) sum += (e = std::exp(e - mx));
                for (int64_t j = 0; j <= t; ++j)
                    for (int64_t c = 0; c < hd; ++c) att[h * hd + c] += float(sc_[j] / sum * v[j][kh * hd + c]);
            }
            const auto o = naive_mv(wo, E, att);
            for (int64_t c = 0; c < E; ++c) x[t][c] += o[c];
        }
        const auto wg = values(s, blk(i, "ffn_gate"), s.n_ff * E, sc(E)),
                   wu = values(s, blk(i, "ffn_up"), s.n_ff * E, sc(E));
        const auto wd = values(s, blk(i, "ffn_down"), E * s.n_ff, sc(s.n_ff));
        for (int64_t t = 0; t < T; ++t) {
            const auto xn = naive_rms(x[t], fn, eps);
            auto g = naive_mv(wg, s.n_ff, xn);
            const auto u = naive_mv(wu, s.n_ff, xn);
            for (size_t c = 0; c < g.size(); ++c) g[c] = g[c] / (1.f + std::exp(-g[c])) * u[c];
            const auto d = naive_mv(wd, E, g);
            for (int64_t c = 0; c < E; ++c) x[t][c] += d[c];
        }
    }
    const auto on = values(s, "output_norm.weight", E, 0.1f, 1.f);
    return naive_mv(values(s, "output.weight", s.n_vocab * E, sc(E)), s.n_vocab, naive_rms(x.back(), on, eps));
}

TEST(Engine, DenseLlamaMatchesNaiveFloatReference) {
    const auto s = spec_for("llama-dense");
    TempModel f(build(s));
    auto m = load(f);
    const auto toks = prompt(8, s.n_vocab);
    Session sess(*m, 16);
    EXPECT_LT(rel_diff(naive_llama_last_logits(s, toks), sess.eval(toks)), 1e-4);
}

TEST(Engine, GenerateStopsAtEndOfGenerationToken) {
    // Zero output norm: every logit is 0, so greedy picks token 0 every time.
    auto s = spec_for("qwen3moe");
    s.zero_output = true;
    s.eos_id = 0;
    TempModel f(build(s));
    auto m = load(f);
    Session sess(*m, 32);
    moerig::runtime::SamplerParams p;
    p.temp = 0;
    const auto toks = prompt(4, s.n_vocab);
    int seen = 0;
    EXPECT_TRUE(moerig::runtime::generate(sess, toks, 8, p, [&](int32_t) { return ++seen, true; }).empty());
    EXPECT_EQ(seen, 0);

    s.eos_id = 5;
    TempModel f2(build(s));
    auto m2 = load(f2);
    Session sess2(*m2, 32);
    const auto out = moerig::runtime::generate(sess2, toks, 6, p);
    EXPECT_EQ(out, std::vector<int32_t>(6, 0));
    EXPECT_EQ(sess2.n_past(), 4 + 5);  // the last sampled token is not evaluated
}

TEST(Engine, PerplexityOfUniformModelIsVocabularySize) {
    auto s = spec_for("olmoe");
    s.zero_output = true;
    TempModel f(build(s));
    auto m = load(f);
    const auto toks = prompt(40, s.n_vocab);
    const auto r = moerig::runtime::perplexity(*m, toks, 16, nullptr);
    EXPECT_NEAR(r.ppl, double(s.n_vocab), 1e-3);
    ASSERT_EQ(r.chunk_ppl.size(), 2u);
    EXPECT_EQ(r.num_scored, 2 * (16 - 1 - 8));
    EXPECT_THROW(moerig::runtime::perplexity(*m, std::span(toks).first(20), 16, nullptr), moerig::ConfigError);
}

TEST(Engine, UnsupportedArchitectureNamesTheSupportedOnes) {
    auto s = spec_for("llama-dense");
    s.arch = "mamba";
    TempModel f(build(s));
    try {
        load(f);
        FAIL() << "expected UnsupportedError";
    } catch (const moerig::UnsupportedError& e) {
        EXPECT_NE(std::string(e.what()).find("'mamba'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("qwen3moe"), std::string::npos) << e.what();
    }
}

TEST(Engine, UnsupportedTensorTypeNamesTensorAndSupportedTypes) {
    auto s = spec_for("llama-dense");
    s.attn_q_type = "IQ2_XXS";
    s.n_embd = 256;  // one IQ2_XXS block per row
    s.n_ff = 256;
    TempModel f(build(s));
    try {
        load(f);
        FAIL() << "expected UnsupportedError";
    } catch (const moerig::UnsupportedError& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("Q4_K"), std::string::npos) << e.what();
    }
}

TEST(Engine, WrongTensorShapeIsAFormatErrorNamingTheTensor) {
    auto s = spec_for("qwen3moe");
    s.declared_n_ff_exp = 32;  // the expert tensors are 64 wide
    TempModel f(build(s));
    try {
        load(f);
        FAIL() << "expected FormatError";
    } catch (const moerig::FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.ffn_gate_exps.weight"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("expected [64, 32, 4]"), std::string::npos) << e.what();
    }
}

TEST(Engine, ContextOverflowIsAClearError) {
    const auto s = spec_for("llama-dense");
    TempModel f(build(s));
    auto m = load(f);
    Session sess(*m, 4);
    const auto toks = prompt(5, s.n_vocab);
    EXPECT_THROW(sess.eval(toks), moerig::ConfigError);
    EXPECT_THROW(sess.eval(std::vector<int32_t>{int32_t(s.n_vocab)}), moerig::ConfigError);
}

}  // namespace
