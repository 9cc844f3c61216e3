// Float ops, RoPE, attention and the MoE router: references against direct formulas and hand-computed cases,
// and the fast attention against the reference over GQA, sliding windows, soft caps, sinks and MLA shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/error.h"
#include "kernels/ops.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "tests/kernels/attention_cases.h"
#include "tests/kernels/kernel_test_util.h"

using namespace moerig;
using namespace moerig::kernels;
using moerig::testing::nmse;
using moerig::testing::random_values;

TEST(Ops, RmsNormScalesByInverseRootMeanSquareThenWeight) {
    const std::vector<float> x = {1, -2, 3, -4};
    const std::vector<float> w = {1, 0.5f, 2, 1};
    std::vector<float> y(4);
    rms_norm(x.data(), w.data(), y.data(), 4, 1e-6f);
    const double inv = 1.0 / std::sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], x[i] * inv * w[i], 1e-6);
}

TEST(Ops, LayerNormCentresAndScales) {
    const std::vector<float> x = {1, 2, 3, 6};
    std::vector<float> y(4);
    const std::vector<float> w = {1, 1, 2, 1}, b = {0, 1, 0, 0};
    layer_norm(x.data(), w.data(), b.data(), y.data(), 4, 0.0f);
    const double mean = 3, sd = std::sqrt((4 + 1 + 0 + 9) / 4.0);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], (x[i] - mean) / sd * w[i] + b[i], 1e-6);
}

TEST(Ops, SoftmaxIsStableForLargeLogitsAndZeroForMaskedEntries) {
    // exp(1000) overflows float: only a max-subtracted softmax gets these right.
    const float a = 1000.0f, b = 1000.0f + std::log(3.0f);
    std::vector<float> x = {a, b, -std::numeric_limits<float>::infinity()};
    softmax(x.data(), 3);
    const double ratio = std::exp(static_cast<double>(b) - a);  // ~3, from the float logits actually stored
    EXPECT_NEAR(x[0], 1 / (1 + ratio), 1e-6);
    EXPECT_NEAR(x[1], ratio / (1 + ratio), 1e-6);
    EXPECT_EQ(x[2], 0.0f);
    std::vector<float> masked(3, -std::numeric_limits<float>::infinity());
    softmax(masked.data(), 3);
    for (float v : masked) EXPECT_EQ(v, 0.0f);
}

TEST(Ops, ActivationsFollowTheirFormulas) {
    const std::vector<float> g = {-3, -0.5f, 0, 0.7f, 9};
    const std::vector<float> u = {2, -1, 5, 0.3f, -8};
    std::vector<float> y(5), y2(5);
    swiglu(g.data(), u.data(), y.data(), 5);
    silu(g.data(), y2.data(), 5);
    for (int i = 0; i < 5; ++i) {
        const double s = g[i] / (1 + std::exp(-static_cast<double>(g[i])));
        EXPECT_NEAR(y2[i], s, 1e-6);
        EXPECT_NEAR(y[i], s * u[i], 1e-5);
    }
    swiglu_oai(g.data(), u.data(), y.data(), 5, 1.702f, 7.0f);
    for (int i = 0; i < 5; ++i) {
        const double gc = std::min<double>(g[i], 7.0), uc = std::clamp<double>(u[i], -7.0, 7.0);
        EXPECT_NEAR(y[i], gc / (1 + std::exp(-1.702 * gc)) * (uc + 1), 1e-5) << i;
    }
    gelu(g.data(), y.data(), 5);
    for (int i = 0; i < 5; ++i) {
        const double v = g[i];
        EXPECT_NEAR(y[i], 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))), 1e-5);
    }
}

TEST(Ops, ArgmaxAndTopKPreferLowerIndexOnTiesAndIgnoreNaN) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> x = {nan, 2, 5, 5, -1, 3};
    EXPECT_EQ(argmax(x.data(), 6), 2);
    int32_t idx[4];
    top_k(x.data(), 6, 4, idx);
    EXPECT_EQ(idx[0], 2);
    EXPECT_EQ(idx[1], 3);
    EXPECT_EQ(idx[2], 5);
    EXPECT_EQ(idx[3], 1);
    // Large k takes the partial-sort path; it must agree with the small-k path.
    const auto big = random_values(1000, 3);
    std::vector<int32_t> a(40), b(16);
    top_k(big.data(), 1000, 40, a.data());
    top_k(big.data(), 1000, 16, b.data());
    for (int i = 0; i < 16; ++i) EXPECT_EQ(a[i], b[i]);
    for (int i = 1; i < 40; ++i) EXPECT_GE(big[a[i - 1]], big[a[i]]);
}

namespace {

// Direct RoPE: theta_i = pos * base^(-2i/n_dims) in double, optional YaRN mix, rotation of the mode's pairs.
void rope_direct(const RopeParams& p, float* v, int pos) {
    float corr[2];
    rope_yarn_corr_dims(p, corr);
    for (int64_t i = 0; i < p.n_dims / 2; ++i) {
        const double extrap = pos * std::pow(static_cast<double>(p.freq_base), -2.0 * i / p.n_dims);
        const double interp = p.freq_scale * extrap;
        double theta = interp, mscale = p.attn_factor;
        if (p.ext_factor != 0) {
            const double y = (i - corr[0]) / std::max(0.001, static_cast<double>(corr[1] - corr[0]));
            const double ramp = (1 - std::min(1.0, std::max(0.0, y))) * p.ext_factor;
            theta = interp * (1 - ramp) + extrap * ramp;
            mscale *= 1 + 0.1 * std::log(1 / p.freq_scale);
        }
        const int64_t a = p.neox ? i : 2 * i, b = p.neox ? i + p.n_dims / 2 : 2 * i + 1;
        const double x0 = v[a], x1 = v[b];
        v[a] = static_cast<float>((x0 * std::cos(theta) - x1 * std::sin(theta)) * mscale);
        v[b] = static_cast<float>((x0 * std::sin(theta) + x1 * std::cos(theta)) * mscale);
    }
}

}  // namespace

TEST(Rope, NormalNeoxAndYarnMatchTheDirectFormula) {
    const int64_t head = 24, heads = 3, tokens = 4;
    const int32_t positions[] = {0, 1, 37, 150};
    for (int mode = 0; mode < 3; ++mode) {
        RopeParams p;
        p.n_dims = 16;  // partial rotation: dims 16..23 must be untouched
        p.neox = mode != 0;
        p.freq_base = mode == 2 ? 50000.0f : 10000.0f;
        if (mode == 2) {
            p.freq_scale = 0.25f;
            p.ext_factor = 1.0f;
            p.attn_factor = 1.0f;
            p.n_ctx_orig = 4096;
        }
        auto x = random_values(tokens * heads * head, 5);
        auto expect = x;
        rope(p, x.data(), tokens, heads, heads * head, head, positions);
        for (int64_t t = 0; t < tokens; ++t) {
            for (int64_t h = 0; h < heads; ++h) rope_direct(p, &expect[(t * heads + h) * head], positions[t]);
        }
        for (size_t i = 0; i < x.size(); ++i) {
            ASSERT_NEAR(x[i], expect[i], 2e-5 * (1 + std::fabs(expect[i]))) << "mode " << mode << " index " << i;
        }
    }
}

TEST(Rope, PositionZeroIsIdentityAndNormIsPreserved) {
    RopeParams p;
    p.n_dims = 8;
    auto x = random_values(8, 9);
    auto y = x;
    const int32_t zero = 0, far = 1000;
    rope(p, y.data(), 1, 1, 8, 8, &zero);
    EXPECT_EQ(x, y);
    rope(p, y.data(), 1, 1, 8, 8, &far);
    double n0 = 0, n1 = 0;
    for (int i = 0; i < 8; ++i) {
        n0 += x[i] * x[i];
        n1 += y[i] * y[i];
    }
    EXPECT_NEAR(n0, n1, 1e-5 * n0);
}

TEST(AttentionRef, HandComputedSoftmaxWeightsAndSink) {
    // One head, two keys with logits 0 and ln 3 (weights 1/4, 3/4); a sink of ln 4 joins the denominator only.
    const float q[2] = {1, 0};
    const float k[4] = {0, 0, std::log(3.0f), 0};
    const float v[4] = {4, 0, 0, 8};
    float out[2];
    AttentionParams p;
    p.num_heads = p.num_kv_heads = 1;
    p.head_dim = 2;
    AttentionIo io{q, 2, 2, k, 2, 2, v, 2, 2, out, 2, 2, 1, 2, nullptr};
    attention_ref(p, io);
    EXPECT_NEAR(out[0], 1.0f, 1e-6);
    EXPECT_NEAR(out[1], 6.0f, 1e-6);
    const float sink = std::log(4.0f);
    p.sinks = &sink;
    attention_ref(p, io);
    EXPECT_NEAR(out[0], 0.5f, 1e-6);
    EXPECT_NEAR(out[1], 3.0f, 1e-6);
    ThreadPool pool(2);
    attention(p, io, pool);
    EXPECT_NEAR(out[0], 0.5f, 1e-6);
    EXPECT_NEAR(out[1], 3.0f, 1e-6);
}

TEST(AttentionRef, CausalMaskAndSlidingWindowHideKeys) {
    // Values equal their position; with equal logits the output is the mean position of the visible keys.
    const int64_t kv = 6;
    std::vector<float> q(1, 0.0f), k(kv, 1.0f), v(kv);
    for (int j = 0; j < kv; ++j) v[j] = static_cast<float>(j);
    AttentionParams p;
    p.num_heads = p.num_kv_heads = 1;
    p.head_dim = 1;
    float out = 0;
    const int32_t pos = 4;
    AttentionIo io{q.data(), 1, 1, k.data(), 1, 1, v.data(), 1, 1, &out, 1, 1, 1, kv, &pos};
    attention_ref(p, io);
    EXPECT_NEAR(out, 2.0f, 1e-6);  // keys 0..4
    p.sliding_window = 2;
    attention_ref(p, io);
    EXPECT_NEAR(out, 3.5f, 1e-6);  // keys 3, 4
}

TEST(Attention, FastMatchesReferenceOverGqaWindowsCapsSinksAndMlaShapes) {
    ThreadPool pool(3);
    for (const auto& c : moerig::testing::kAttentionCases) {
        auto t = moerig::testing::make_attention_tensors(c);
        const AttentionParams& p = t.p;
        AttentionIo& io = t.io;
        std::vector<float> out(c.tokens * c.heads * c.v_dim, NAN), out_ref(out.size());
        io.out = out_ref.data();
        attention_ref(p, io);
        io.out = out.data();
        attention(p, io, pool);
        // Float accumulation against a double reference: errors ~1e-7 relative per term.
        EXPECT_LE(nmse(out, out_ref), 1e-10) << "heads " << c.heads << " kv_len " << c.kv_len;
    }
}

TEST(Attention, RejectsQueriesOutsideTheCache) {
    std::vector<float> buf(64);
    AttentionParams p;
    p.num_heads = p.num_kv_heads = 1;
    p.head_dim = 4;
    const int32_t pos = 9;
    AttentionIo io{buf.data(), 4, 4, buf.data(), 4, 4, buf.data(), 4, 4, buf.data(), 4, 4, 1, 4, &pos};
    ThreadPool pool(1);
    EXPECT_THROW(attention(p, io, pool), ConfigError);
    p.num_kv_heads = 3;
    p.num_heads = 4;
    EXPECT_THROW(attention_ref(p, io), ConfigError);
}

TEST(Router, SoftmaxTopKWithAndWithoutNormalisation) {
    const float logits[4] = {0, std::log(2.0f), std::log(5.0f), 0};
    RouterParams p;
    p.num_experts = 4;
    p.num_experts_used = 2;
    int32_t ids[2];
    float w[2];
    route(p, logits, 1, ids, w);
    EXPECT_EQ(ids[0], 2);
    EXPECT_EQ(ids[1], 1);
    EXPECT_NEAR(w[0], 5.0f / 9, 1e-6);
    EXPECT_NEAR(w[1], 2.0f / 9, 1e-6);
    p.normalize = true;
    route(p, logits, 1, ids, w);
    EXPECT_NEAR(w[0], 5.0f / 7, 1e-6);
    EXPECT_NEAR(w[1], 2.0f / 7, 1e-6);
}

TEST(Router, SigmoidBiasSelectsButDoesNotWeight) {
    const float logits[4] = {0, 0, 0, 0};
    const float bias[4] = {0, 0.1f, 0, 0.2f};
    RouterParams p;
    p.num_experts = 4;
    p.num_experts_used = 2;
    p.gating = ExpertGating::kSigmoid;
    p.selection_bias = bias;
    p.normalize = true;
    p.weights_scale = 2.5f;
    int32_t ids[2];
    float w[2];
    route(p, logits, 1, ids, w);
    EXPECT_EQ(ids[0], 3);
    EXPECT_EQ(ids[1], 1);
    EXPECT_FLOAT_EQ(w[0], 1.25f);
    EXPECT_FLOAT_EQ(w[1], 1.25f);
}

TEST(Router, GroupLimitKeepsOnlyGroupsWithTheBestTopTwoSums) {
    // Sigmoid(0) = 0.5 everywhere; the bias decides. Group sums of top-2 selection scores:
    // g0 = 1.4 + 0.5 = 1.9, g1 = 1.0 + 0.95 = 1.95, g2 = 1.2, g3 = 1.3 + 0.0 = 1.3.
    // Plain top-2 would pick experts 0 and 6; keeping groups g1 and g0 picks 0 and 2.
    const float logits[8] = {};
    const float bias[8] = {0.9f, 0.0f, 0.5f, 0.45f, 0.1f, 0.1f, 0.8f, -0.5f};
    RouterParams p;
    p.num_experts = 8;
    p.num_experts_used = 2;
    p.gating = ExpertGating::kSigmoid;
    p.selection_bias = bias;
    p.num_groups = 4;
    p.num_groups_used = 2;
    p.normalize = true;
    int32_t ids[2];
    float w[2];
    route(p, logits, 1, ids, w);
    EXPECT_EQ(ids[0], 0);
    EXPECT_EQ(ids[1], 2);
    EXPECT_FLOAT_EQ(w[0], 0.5f);
    EXPECT_FLOAT_EQ(w[1], 0.5f);
    p.num_groups = 1;
    route(p, logits, 1, ids, w);
    EXPECT_EQ(ids[0], 0);
    EXPECT_EQ(ids[1], 6);
}

TEST(Router, GptOssSoftmaxOverSelectedLogitsForEveryToken) {
    const float logits[8] = {1, 3, 2, 0, /* token 1 */ 0, 0, 4, 1};
    RouterParams p;
    p.num_experts = 4;
    p.num_experts_used = 2;
    p.gating = ExpertGating::kSoftmaxWeight;
    int32_t ids[4];
    float w[4];
    route(p, logits, 2, ids, w);
    const double e = std::exp(1.0), e3 = std::exp(3.0);
    EXPECT_EQ(ids[0], 1);
    EXPECT_EQ(ids[1], 2);
    EXPECT_NEAR(w[0], e / (e + 1), 1e-6);
    EXPECT_NEAR(w[1], 1 / (e + 1), 1e-6);
    EXPECT_EQ(ids[2], 2);
    EXPECT_EQ(ids[3], 3);
    EXPECT_NEAR(w[2], e3 / (e3 + 1), 1e-6);
}

TEST(Router, RejectsImpossibleSelections) {
    const float logits[4] = {};
    int32_t ids[8];
    float w[8];
    RouterParams p;
    p.num_experts = 4;
    p.num_experts_used = 5;
    EXPECT_THROW(route(p, logits, 1, ids, w), ConfigError);
    p.num_experts_used = 3;
    p.num_groups = 2;
    p.num_groups_used = 1;  // one group of two cannot give three experts
    EXPECT_THROW(route(p, logits, 1, ids, w), ConfigError);
}
