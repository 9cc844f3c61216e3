// Model accounting: KV bytes per token (GQA, MLA, sliding window), quant-mix rules and totals, exact GGUF
// header accounting (mixed types, merged and per-expert tensors, MTP layers), and HF config.json import.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "sharding/accounting.h"
#include "sharding/catalog.h"
#include "sharding/hf_import.h"
#include "tests/common/error_text.h"
#include "tests/common/gguf_builder.h"

using moerig::ConfigError;
using moerig::DType;
using moerig::dtype_bytes;
using moerig::formats::GgufFile;
using moerig::formats::GgufModel;
using moerig::testing::GgufBuilder;
using namespace moerig::sharding;

namespace {

const std::string kData = std::string(MOERIG_TEST_DATA) + "/planner";

ModelAccount catalog(const std::string& name, const std::string& quant) {
    return account_model(load_catalog_model(name), parse_quant_mix(quant));
}

const TensorAccount& tensor(const ModelAccount& a, const std::string& name) {
    for (const auto& t : a.tensors) {
        if (t.name == name) return t;
    }
    for (const auto& t : a.mtp_tensors) {
        if (t.name == name) return t;
    }
    throw std::runtime_error("no tensor " + name);
}

std::filesystem::path temp_path(const std::string& name) {
    return std::filesystem::temp_directory_path() / ("moerig_acct_" + std::to_string(::getpid()) + "_" + name);
}

// A small qwen3moe-shaped spec whose rows fill whole K-quant blocks.
ModelSpec tiny_qwen3() {
    ModelSpec s;
    s.name = "tiny-qwen3";
    s.arch = "qwen3moe";
    s.hidden = 256;
    s.num_layers = 3;
    s.vocab = 300;
    s.max_context = 4096;
    s.num_heads = 4;
    s.num_kv_heads = 2;
    s.head_dim = 64;
    s.qk_norm = QkNorm::kPerHead;
    s.expert_ffn = 512;
    s.num_experts = 4;
    s.num_experts_used = 2;
    s.norm_topk = true;
    return s;
}

// Writes the tensor list of an account as a GGUF header with the given metadata.
GgufBuilder gguf_of(const ModelAccount& a, GgufBuilder b) {
    for (const auto* list : {&a.tensors, &a.mtp_tensors}) {
        for (const auto& t : *list) b.tensor(t.name, t.dims, t.dtype);
    }
    return b;
}

}  // namespace

TEST(Kv, GqaBytesPerTokenAreKAndVRowsPerLayer) {
    const auto mixtral = catalog("mixtral-8x7b", "Q4_K_M");
    EXPECT_EQ(mixtral.kv_bytes_per_token(0, DType::F16), 2u * 8 * 128 * 2);
    EXPECT_EQ(mixtral.kv_bytes_per_token(DType::F16), 2u * 8 * 128 * 2 * 32);
    // Q8_0 cache: each 1024-value row is 32 blocks of 34 bytes.
    EXPECT_EQ(mixtral.kv_bytes_per_token(0, DType::Q8_0), 2u * 32 * 34);
    EXPECT_EQ(mixtral.kv_cache_bytes(32768, DType::F16), 32768ull * 2 * 8 * 128 * 2 * 32);
}

TEST(Kv, MlaCachesLatentPlusRopeKeyPerLayer) {
    const auto v3 = catalog("deepseek-v3", "Q4_K_M");
    EXPECT_EQ(v3.spec.kv_values_per_token(0), 576u);
    EXPECT_EQ(v3.kv_bytes_per_token(DType::F16), 576u * 2 * 61);
    EXPECT_EQ(v3.kv_bytes_per_token(DType::Q8_0), 18u * 34 * 61);
}

TEST(Kv, SlidingWindowLayersHoldAtMostTheWindow) {
    const auto oss = catalog("gpt-oss-20b", "MXFP4");
    const uint64_t per_layer = 2 * 8 * 64 * 2;  // F16
    EXPECT_TRUE(oss.spec.is_sliding_layer(0));
    EXPECT_FALSE(oss.spec.is_sliding_layer(1));
    EXPECT_EQ(oss.kv_cache_bytes(0, 8192, DType::F16), 128 * per_layer);
    EXPECT_EQ(oss.kv_cache_bytes(1, 8192, DType::F16), 8192 * per_layer);
    EXPECT_EQ(oss.kv_cache_bytes(8192, DType::F16), 12 * (128 + 8192) * per_layer);
    EXPECT_EQ(oss.kv_cache_bytes(100, DType::F16), 24 * 100 * per_layer);  // context below the window
}

TEST(QuantMix, ParsesNamesCaseInsensitivelyAndRejectsUnknownWithSuggestion) {
    EXPECT_EQ(parse_quant_mix("q4_k_m").kind, QuantMixKind::kQ4_K_M);
    EXPECT_EQ(parse_quant_mix("bf16").base(), DType::BF16);
    EXPECT_EQ(quant_mix_names().size(), 9u);
    const std::string msg = moerig::testing::error_text([] { parse_quant_mix("Q4_KM"); });
    EXPECT_NE(msg.find("unknown quantisation 'Q4_KM'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Q4_K_M"), std::string::npos) << msg;
}

TEST(QuantMix, UseMoreBitsMatchesLlamaCppLayers) {
    std::vector<int> more;
    for (int l = 0; l < 32; ++l) {
        if (use_more_bits(l, 32)) more.push_back(l);
    }
    // First and last eighth (0-3, 28-31), then every third layer from 4 + 2.
    const std::vector<int> expected = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    EXPECT_EQ(more, expected);
}

TEST(QuantMix, Q4KMTypesFollowTheLlamaCppRules) {
    const auto q = catalog("qwen3-30b-a3b", "Q4_K_M");  // 48 layers, 128 experts
    EXPECT_EQ(tensor(q, "output.weight").dtype, DType::Q6_K);
    EXPECT_EQ(tensor(q, "token_embd.weight").dtype, DType::Q4_K);
    EXPECT_EQ(tensor(q, "blk.0.attn_v.weight").dtype, DType::Q6_K);
    EXPECT_EQ(tensor(q, "blk.7.attn_v.weight").dtype, DType::Q4_K);  // (7-6)%3 != 2
    EXPECT_EQ(tensor(q, "blk.8.attn_v.weight").dtype, DType::Q6_K);  // (8-6)%3 == 2
    EXPECT_EQ(tensor(q, "blk.8.ffn_down_exps.weight").dtype, DType::Q6_K);
    EXPECT_EQ(tensor(q, "blk.7.ffn_down_exps.weight").dtype, DType::Q4_K);
    EXPECT_EQ(tensor(q, "blk.7.ffn_up_exps.weight").dtype, DType::Q4_K);
    EXPECT_EQ(tensor(q, "blk.7.attn_q.weight").dtype, DType::Q4_K);
    EXPECT_EQ(tensor(q, "blk.7.ffn_gate_inp.weight").dtype, DType::F32);
    EXPECT_EQ(tensor(q, "blk.7.attn_norm.weight").dtype, DType::F32);
    EXPECT_EQ(tensor(q, "blk.7.attn_q_norm.weight").dtype, DType::F32);
}

TEST(QuantMix, EightExpertModelsBumpAttentionLikeLlamaCpp) {
    const auto m = catalog("mixtral-8x7b", "Q4_K_M");
    EXPECT_EQ(tensor(m, "blk.13.attn_v.weight").dtype, DType::Q8_0);
    EXPECT_EQ(tensor(m, "blk.13.attn_output.weight").dtype, DType::Q5_K);
    EXPECT_EQ(tensor(m, "blk.13.attn_k.weight").dtype, DType::Q8_0);
    EXPECT_EQ(tensor(m, "blk.13.attn_q.weight").dtype, DType::Q4_K);
    const auto q6 = catalog("mixtral-8x7b", "Q6_K");
    EXPECT_EQ(tensor(q6, "blk.13.attn_v.weight").dtype, DType::Q8_0);
    EXPECT_EQ(tensor(q6, "blk.13.attn_output.weight").dtype, DType::Q6_K);
    const auto f16 = catalog("mixtral-8x7b", "F16");  // llama.cpp applies no rules to unquantised presets
    EXPECT_EQ(tensor(f16, "blk.13.attn_v.weight").dtype, DType::F16);
}

TEST(QuantMix, RowsThatDoNotFillBlocksFallBack) {
    // gpt-oss rows are 2880 = 11.25 blocks of 256: Q4_K -> Q5_0, Q6_K -> Q8_0; biases and sinks stay F32.
    const auto oss = catalog("gpt-oss-20b", "Q4_K_M");
    EXPECT_EQ(tensor(oss, "blk.1.attn_q.weight").dtype, DType::Q5_0);
    EXPECT_EQ(tensor(oss, "blk.0.attn_v.weight").dtype, DType::Q8_0);
    EXPECT_EQ(tensor(oss, "blk.0.attn_q.bias").dtype, DType::F32);
    EXPECT_EQ(tensor(oss, "blk.0.ffn_gate_exps.bias").dtype, DType::F32);
    EXPECT_EQ(tensor(oss, "blk.0.attn_sinks.weight").dtype, DType::F32);
    // DeepSeek-V2-Lite experts are 1408 wide: ffn_down_exps rows (1408) fall back, gate/up rows (2048) do not.
    const auto lite = catalog("deepseek-v2-lite", "Q4_K_M");
    EXPECT_EQ(tensor(lite, "blk.6.ffn_down_exps.weight").dtype, DType::Q5_0);  // Q4_K -> Q5_0
    EXPECT_EQ(tensor(lite, "blk.5.ffn_down_exps.weight").dtype, DType::Q8_0);  // use_more_bits: Q6_K -> Q8_0
    EXPECT_EQ(tensor(lite, "blk.6.ffn_up_exps.weight").dtype, DType::Q4_K);
    const auto q2 = catalog("deepseek-v2-lite", "Q2_K");
    EXPECT_EQ(tensor(q2, "blk.6.ffn_down_exps.weight").dtype, DType::IQ4_NL);  // Q3_K rule, then fallback
}

TEST(QuantMix, Mxfp4PutsExpertsInMxfp4AndTheRestInQ8) {
    const auto oss = catalog("gpt-oss-120b", "MXFP4");
    EXPECT_EQ(tensor(oss, "blk.3.ffn_down_exps.weight").dtype, DType::MXFP4);
    EXPECT_EQ(tensor(oss, "blk.3.attn_q.weight").dtype, DType::Q8_0);
    EXPECT_EQ(tensor(oss, "output.weight").dtype, DType::Q8_0);
    EXPECT_EQ(tensor(oss, "blk.3.ffn_gate_inp.weight").dtype, DType::F32);
}

TEST(QuantMix, Q4KMBitsPerWeightLieBetweenQ4KAndQ6KAndMixesAreOrdered) {
    for (const auto& name : catalog_model_names()) {
        const ModelSpec spec = load_catalog_model(name);
        const auto q4 = account_model(spec, parse_quant_mix("Q4_K_M"));
        EXPECT_GT(q4.bits_per_weight(), 4.5) << name;
        EXPECT_LT(q4.bits_per_weight(), 6.5625) << name;
        uint64_t prev = 0;
        for (const char* mix : {"Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "BF16"}) {
            const auto a = account_model(spec, parse_quant_mix(mix));
            EXPECT_GT(a.total_bytes, prev) << name << " " << mix;
            EXPECT_EQ(a.total_params, q4.total_params) << name << " " << mix;
            prev = a.total_bytes;
        }
    }
}

TEST(Accounting, LayerTotalsAddUpToTheModel) {
    for (const char* name : {"deepseek-v3", "qwen1.5-moe-a2.7b", "gpt-oss-20b"}) {
        const auto a = catalog(name, "Q4_K_M");
        uint64_t sum = a.embedding_bytes + a.output_bytes;
        for (const auto& l : a.layers) sum += l.total_bytes();
        EXPECT_EQ(sum, a.total_bytes) << name;
        uint64_t tensor_sum = 0;
        for (const auto& t : a.tensors) tensor_sum += t.num_bytes;
        EXPECT_EQ(tensor_sum, a.total_bytes) << name;
    }
}

TEST(Accounting, DeepSeekLayersSplitDenseExpertsAndMtp) {
    const auto a = catalog("deepseek-v3", "Q8_0");
    ASSERT_EQ(a.layers.size(), 61u);
    EXPECT_EQ(a.layers[2].num_experts, 0u);
    EXPECT_EQ(a.layers[2].dense_bytes - a.layers[2].router_bytes,
              dtype_bytes(DType::Q8_0, 3ull * 7168 * 18432) + 7168 * 4 /* ffn_norm */);
    EXPECT_EQ(a.layers[3].num_experts, 256u);
    EXPECT_EQ(a.layers[3].expert_bytes, dtype_bytes(DType::Q8_0, 3ull * 7168 * 2048));
    EXPECT_EQ(a.layers[3].shared_expert_bytes, dtype_bytes(DType::Q8_0, 3ull * 7168 * 2048));
    EXPECT_EQ(a.layers[3].router_bytes, (7168ull * 256 + 256) * 4);
    const auto& exps = tensor(a, "blk.3.ffn_up_exps.weight");
    EXPECT_EQ(exps.num_experts, 256u);
    EXPECT_EQ(exps.dims, (std::vector<uint64_t>{7168, 2048, 256}));
    EXPECT_EQ(exps.bytes_per_expert * 256, exps.num_bytes);
    // The MTP block is accounted apart and not in the totals.
    EXPECT_GT(a.mtp_bytes, 0u);
    EXPECT_EQ(tensor(a, "blk.61.nextn.eh_proj.weight").layer_idx, 61);
    for (const auto& t : a.tensors) EXPECT_LT(t.layer_idx, 61) << t.name;
}

TEST(Accounting, ActiveBytesCountTopKExpertsAndSkipTheEmbeddingTable) {
    const auto a = catalog("mixtral-8x7b", "Q8_0");
    uint64_t expected = a.output_bytes;
    for (const auto& l : a.layers) expected += l.stage_bytes() + 2 * l.expert_bytes;
    EXPECT_EQ(a.active_bytes, expected);
    EXPECT_LT(a.active_bytes, a.total_bytes / 3);
}

TEST(Gguf, HeaderAccountMatchesTheSpecAccountExactly) {
    const ModelSpec spec = tiny_qwen3();
    const auto expected = account_model(spec, parse_quant_mix("Q4_K_M"));
    GgufBuilder b;
    b.kv_str("general.architecture", "qwen3moe")
        .kv_u32("qwen3moe.embedding_length", 256)
        .kv_u32("qwen3moe.block_count", 3)
        .kv_u32("qwen3moe.context_length", 4096)
        .kv_u32("qwen3moe.attention.head_count", 4)
        .kv_u32("qwen3moe.attention.head_count_kv", 2)
        .kv_u32("qwen3moe.attention.key_length", 64)
        .kv_u32("qwen3moe.expert_count", 4)
        .kv_u32("qwen3moe.expert_used_count", 2)
        .kv_u32("qwen3moe.expert_feed_forward_length", 512);
    const auto bytes = gguf_of(expected, b).build();
    const auto path = temp_path("tiny-qwen3.gguf");
    {
        std::ofstream f(path, std::ios::binary);
        f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    const auto got = load_model(path.string());
    std::filesystem::remove(path);
    EXPECT_EQ(got.quant, "gguf");
    EXPECT_EQ(got.spec.hidden, 256u);
    EXPECT_EQ(got.spec.num_kv_heads, 2u);
    EXPECT_EQ(got.spec.qk_norm, QkNorm::kPerHead);
    EXPECT_EQ(got.spec.vocab, 300u);
    EXPECT_EQ(got.total_bytes, expected.total_bytes);
    EXPECT_EQ(got.total_params, expected.total_params);
    EXPECT_EQ(got.active_params, expected.active_params);
    ASSERT_EQ(got.layers.size(), 3u);
    for (size_t l = 0; l < 3; ++l) {
        EXPECT_EQ(got.layers[l].attention_bytes, expected.layers[l].attention_bytes) << l;
        EXPECT_EQ(got.layers[l].dense_bytes, expected.layers[l].dense_bytes) << l;
        EXPECT_EQ(got.layers[l].expert_bytes, expected.layers[l].expert_bytes) << l;
        EXPECT_EQ(got.layers[l].num_experts, 4u);
    }
    // Mixed types really are mixed: with 3 layers use_more_bits picks layer 2 only (ffn_down_exps Q6_K).
    EXPECT_EQ(got.layers[0].expert_bytes, got.layers[1].expert_bytes);
    EXPECT_GT(got.layers[2].expert_bytes, got.layers[1].expert_bytes);
}

TEST(Gguf, CountsExactBytesOfMixedTypesAndMergesPerExpertTensors) {
    GgufBuilder b;
    b.kv_str("general.architecture", "llama")
        .kv_u32("llama.embedding_length", 64)
        .kv_u32("llama.block_count", 1)
        .kv_u32("llama.feed_forward_length", 96)
        .kv_u32("llama.attention.head_count", 2)
        .kv_u32("llama.attention.head_count_kv", 1)
        .kv_u32("llama.expert_count", 3)
        .kv_u32("llama.expert_used_count", 2)
        .tensor("token_embd.weight", {64, 10}, DType::Q8_0)
        .tensor("output_norm.weight", {64}, DType::F32)
        .tensor("output.weight", {64, 10}, DType::F16)
        .tensor("blk.0.attn_norm.weight", {64}, DType::F32)
        .tensor("blk.0.attn_q.weight", {64, 64}, DType::Q8_0)
        .tensor("blk.0.attn_k.weight", {64, 32}, DType::Q4_0)
        .tensor("blk.0.attn_v.weight", {64, 32}, DType::Q8_0)
        .tensor("blk.0.attn_output.weight", {64, 64}, DType::Q5_0)
        .tensor("blk.0.ffn_norm.weight", {64}, DType::F32)
        .tensor("blk.0.ffn_gate_inp.weight", {64, 3}, DType::F32);
    for (int e = 0; e < 3; ++e) {
        for (const char* p : {"ffn_gate", "ffn_up"}) {
            b.tensor("blk.0." + std::string(p) + "." + std::to_string(e) + ".weight", {64, 96}, DType::Q4_0);
        }
        b.tensor("blk.0.ffn_down." + std::to_string(e) + ".weight", {96, 64}, DType::Q8_0);
    }
    const auto bytes = b.build();
    GgufFile file(bytes.data(), bytes.size(), "old-mixtral.gguf");
    const auto path = temp_path("old-mixtral.gguf");
    {
        std::ofstream f(path, std::ios::binary);
        f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    const auto a = account_gguf_file(path);
    std::filesystem::remove(path);
    uint64_t file_bytes = 0;
    for (const auto& t : file.tensors()) file_bytes += t.num_bytes;
    EXPECT_EQ(a.total_bytes, file_bytes);
    const uint64_t expert = 2 * dtype_bytes(DType::Q4_0, 64 * 96) + dtype_bytes(DType::Q8_0, 96 * 64);
    ASSERT_EQ(a.layers.size(), 1u);
    EXPECT_EQ(a.layers[0].num_experts, 3u);
    EXPECT_EQ(a.layers[0].expert_bytes, expert);
    EXPECT_EQ(a.layers[0].attention_bytes, 64 * 4 + dtype_bytes(DType::Q8_0, 64 * 64) +
                                               dtype_bytes(DType::Q4_0, 64 * 32) + dtype_bytes(DType::Q8_0, 64 * 32) +
                                               dtype_bytes(DType::Q5_0, 64 * 64));
    EXPECT_EQ(a.layers[0].router_bytes, 64u * 3 * 4);
    EXPECT_EQ(a.embedding_bytes, dtype_bytes(DType::Q8_0, 640));
    EXPECT_EQ(a.output_bytes, 64 * 4 + 640 * 2u);
    EXPECT_EQ(a.spec.expert_ffn, 96u);
    EXPECT_EQ(tensor(a, "blk.0.ffn_up_exps.weight").dims, (std::vector<uint64_t>{64, 96, 3}));
}

TEST(Gguf, DeepSeekKeysGiveMlaSpecAndNextnLayersGoToMtp) {
    ModelSpec spec;
    spec.name = "tiny-ds";
    spec.arch = "deepseek2";
    spec.hidden = 256;
    spec.num_layers = 2;
    spec.vocab = 64;
    spec.max_context = 4096;
    spec.attention = AttentionKind::kMla;
    spec.num_heads = spec.num_kv_heads = 2;
    spec.q_lora_rank = 256;
    spec.kv_lora_rank = 256;
    spec.qk_nope_head_dim = 64;
    spec.qk_rope_head_dim = 32;
    spec.v_head_dim = 64;
    spec.head_dim = 96;
    spec.dense_ffn = 512;
    spec.num_leading_dense = 1;
    spec.expert_ffn = 256;
    spec.num_experts = 8;
    spec.num_experts_used = 2;
    spec.num_shared_experts = 1;
    spec.shared_expert_ffn = 256;
    spec.routing = RoutingFunc::kSigmoid;
    spec.router_score_bias = true;
    spec.num_mtp_layers = 1;
    const auto expected = account_model(spec, parse_quant_mix("Q8_0"));
    GgufBuilder b;
    b.kv_str("general.architecture", "deepseek2")
        .kv_u32("deepseek2.embedding_length", 256)
        .kv_u32("deepseek2.block_count", 3)
        .kv_u32("deepseek2.nextn_predict_layers", 1)
        .kv_u32("deepseek2.feed_forward_length", 512)
        .kv_u32("deepseek2.attention.head_count", 2)
        .kv_u32("deepseek2.attention.head_count_kv", 2)
        .kv_u32("deepseek2.attention.q_lora_rank", 256)
        .kv_u32("deepseek2.attention.kv_lora_rank", 256)
        .kv_u32("deepseek2.attention.key_length", 96)
        .kv_u32("deepseek2.attention.value_length", 64)
        .kv_u32("deepseek2.rope.dimension_count", 32)
        .kv_u32("deepseek2.expert_count", 8)
        .kv_u32("deepseek2.expert_used_count", 2)
        .kv_u32("deepseek2.expert_shared_count", 1)
        .kv_u32("deepseek2.expert_feed_forward_length", 256)
        .kv_u32("deepseek2.leading_dense_block_count", 1)
        .kv_u32("deepseek2.expert_gating_func", 2);
    const auto bytes = gguf_of(expected, b).build();
    const auto path = temp_path("tiny-ds.gguf");
    {
        std::ofstream f(path, std::ios::binary);
        f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    const auto got = account_gguf_file(path);
    std::filesystem::remove(path);
    EXPECT_EQ(got.spec.attention, AttentionKind::kMla);
    EXPECT_EQ(got.spec.num_layers, 2u);
    EXPECT_EQ(got.spec.num_mtp_layers, 1u);
    EXPECT_EQ(got.spec.qk_nope_head_dim, 64u);
    EXPECT_EQ(got.spec.routing, RoutingFunc::kSigmoid);
    EXPECT_TRUE(got.spec.router_score_bias);
    EXPECT_EQ(got.spec.kv_values_per_token(0), 256u + 32);
    EXPECT_EQ(got.total_bytes, expected.total_bytes);
    EXPECT_EQ(got.mtp_bytes, expected.mtp_bytes);
    EXPECT_EQ(got.active_params, expected.active_params);
    EXPECT_EQ(got.layers[0].num_experts, 0u);
    EXPECT_EQ(got.layers[1].shared_expert_bytes, expected.layers[1].shared_expert_bytes);
}

// Files llama.cpp itself converted and quantised (tests/data/models, see its README): the mix rules applied to
// the spec read from each header must give every tensor the file's type and shape.
TEST(Gguf, QuantMixRulesReproduceLlamaCppQuantisedFiles) {
    const std::string dir = std::string(MOERIG_TEST_DATA) + "/models/";
    const std::vector<std::pair<std::string, std::string>> files = {{"qwen3moe-q4_k_m.gguf", "Q4_K_M"},
                                                                    {"mixtral-q8_0.gguf", "Q8_0"},
                                                                    {"deepseek2-v3-q6_k.gguf", "Q6_K"},
                                                                    {"olmoe-bf16.gguf", "BF16"},
                                                                    {"qwen3moe-f16.gguf", "F16"}};
    size_t num_checked = 0;
    for (const auto& [file, mix] : files) {
        if (!std::filesystem::exists(dir + file)) continue;
        ++num_checked;
        const auto real = account_gguf_file(dir + file);
        const auto mine = account_model(real.spec, parse_quant_mix(mix));
        std::map<std::string, const TensorAccount*> by_name;
        for (const auto& t : mine.tensors) by_name[t.name] = &t;
        EXPECT_EQ(mine.tensors.size(), real.tensors.size()) << file;
        for (const auto& t : real.tensors) {
            const auto it = by_name.find(t.name);
            ASSERT_NE(it, by_name.end()) << file << ": " << t.name << " not in the spec's tensor list";
            EXPECT_EQ(moerig::dtype_name(it->second->dtype), moerig::dtype_name(t.dtype)) << file << ": " << t.name;
            EXPECT_EQ(it->second->dims, t.dims) << file << ": " << t.name;
        }
        EXPECT_EQ(mine.total_bytes, real.total_bytes) << file;
    }
    if (num_checked == 0) GTEST_SKIP() << "no llama.cpp fixtures in " << dir;
}

TEST(Gguf, RefusesAQuantMixForAGgufFile) {
    const std::string msg =
        moerig::testing::error_text([] { load_model("/tmp/some-model.gguf", parse_quant_mix("Q4_K_M")); });
    EXPECT_NE(msg.find("some-model.gguf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--quant"), std::string::npos) << msg;
}

TEST(HfImport, ConfigsGiveTheSameAccountAsTheCatalog) {
    for (const auto& [file, name] :
         std::vector<std::pair<std::string, std::string>>{{"mixtral-8x7b.config.json", "mixtral-8x7b"},
                                                          {"deepseek-v3.config.json", "deepseek-v3"},
                                                          {"qwen3-30b-a3b.config.json", "qwen3-30b-a3b"},
                                                          {"gpt-oss-20b.config.json", "gpt-oss-20b"}}) {
        const auto hf = load_model(kData + "/" + file, parse_quant_mix("Q4_K_M"));
        const auto cat = catalog(name, "Q4_K_M");
        EXPECT_EQ(hf.total_bytes, cat.total_bytes) << file;
        EXPECT_EQ(hf.total_params, cat.total_params) << file;
        EXPECT_EQ(hf.tensors.size(), cat.tensors.size()) << file;
        EXPECT_EQ(hf.mtp_bytes, cat.mtp_bytes) << file;
        EXPECT_EQ(hf.kv_bytes_per_token(DType::F16), cat.kv_bytes_per_token(DType::F16)) << file;
        EXPECT_EQ(hf.spec.max_context, cat.spec.max_context) << file;
        EXPECT_EQ(hf.kv_cache_bytes(32768, DType::F16), cat.kv_cache_bytes(32768, DType::F16)) << file;
    }
    EXPECT_EQ(load_hf_config(kData + "/gpt-oss-20b.config.json").native_dtype, "mxfp4");
    const auto ds = load_hf_config(kData + "/deepseek-v3.config.json");
    EXPECT_EQ(ds.native_dtype, "fp8");
    EXPECT_EQ(ds.num_expert_groups, 8u);
    EXPECT_EQ(ds.num_expert_groups_used, 4u);
    EXPECT_DOUBLE_EQ(ds.routed_scaling, 2.5);
    EXPECT_TRUE(ds.router_score_bias);
}

TEST(HfImport, SafetensorsIndexRevealsMtpLayersAndTensorFacts) {
    const ModelSpec s = load_hf_config(kData + "/tiny-deepseek");
    EXPECT_EQ(s.num_layers, 2u);
    EXPECT_EQ(s.num_mtp_layers, 1u);  // config.json does not declare it; the weight map has layer 2
    EXPECT_EQ(s.q_lora_rank, 0u);
    EXPECT_FALSE(s.tied_embeddings);
    EXPECT_FALSE(s.qkv_bias);
    EXPECT_TRUE(s.router_score_bias);
    EXPECT_EQ(s.shared_expert_ffn, 32u);
    const auto a = account_model(s, parse_quant_mix("F16"));
    EXPECT_GT(a.mtp_bytes, 0u);
    EXPECT_EQ(tensor(a, "blk.0.attn_q.weight").dims, (std::vector<uint64_t>{64, 2 * 24}));
}

TEST(HfImport, ErrorsNameTheFileAndField) {
    std::string msg = moerig::testing::error_text(
        [] { parse_hf_config(R"({"model_type": "mixtral", "hidden_size": 64})", {}, "x.json"); });
    EXPECT_NE(msg.find("x.json: missing field 'num_hidden_layers'"), std::string::npos) << msg;
    msg = moerig::testing::error_text([] {
        parse_hf_config(R"({"model_type": "mixtrall", "hidden_size": 64, "num_hidden_layers": 2,
        "vocab_size": 10, "num_attention_heads": 2})",
                        {}, "y.json");
    });
    EXPECT_NE(msg.find("unsupported model_type 'mixtrall'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("did you mean: mixtral"), std::string::npos) << msg;
    msg = moerig::testing::error_text([] { parse_hf_config("{\"model_type\": ", {}, "z.json"); });
    EXPECT_NE(msg.find("z.json: invalid JSON"), std::string::npos) << msg;
    msg = moerig::testing::error_text(
        [] { parse_hf_config(R"({"model_type": "olmoe", "hidden_size": "big"})", {}, "w.json"); });
    EXPECT_NE(msg.find("w.json: field 'hidden_size' must be a non-negative integer"), std::string::npos) << msg;
}
