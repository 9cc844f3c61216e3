// Writes the sharded benchmarks' synthetic model (the C++ twin of tools/make_sharded_bench_model.py, for machines
// without Python's gguf package, e.g. the lent GPU host): Qwen3-MoE shape scaled down, hidden 1024, 16 query /
// 4 KV heads of 128 with q/k norms, `layers` layers of `experts` experts of width 512 with 8 active, Q8_0
// matrices, random Gaussian weights (seeded), the tokenizer of the qwen3moe test fixture. Decode is memory-bound,
// so random weights change nothing about the work: the router still picks 8 experts per token.
// Usage: make_bench_model OUT.gguf [layers=8] [experts=32] [seed=7]
#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "kernels/dtype.h"
#include "kernels/quant.h"
#include "tests/common/gguf_builder.h"

using moerig::DType;

namespace {

class Weights {
  public:
    explicit Weights(uint32_t seed) : rng_(seed) {}

    std::vector<float> normal(size_t n, float scale, float offset = 0.0f) {
        std::normal_distribution<float> dist(0.0f, 1.0f);
        std::vector<float> v(n);
        for (float& x : v) x = offset + scale * dist(rng_);
        return v;
    }
    static std::vector<uint8_t> bytes(const std::vector<float>& v) {
        std::vector<uint8_t> out(v.size() * sizeof(float));
        std::memcpy(out.data(), v.data(), out.size());
        return out;
    }
    /// Rows of `cols` values with standard deviation gain / sqrt(cols), quantised to Q8_0 row by row.
    std::vector<uint8_t> q8_0(uint64_t rows, uint64_t cols, float gain = 1.0f) {
        const std::vector<float> v = normal(rows * cols, gain / std::sqrt(static_cast<float>(cols)));
        const size_t row_bytes = moerig::kernels::row_bytes(DType::Q8_0, static_cast<int64_t>(cols));
        std::vector<uint8_t> out(row_bytes * rows);
        for (uint64_t r = 0; r < rows; ++r) {
            moerig::kernels::quantize_row(DType::Q8_0, v.data() + r * cols, out.data() + r * row_bytes,
                                          static_cast<int64_t>(cols));
        }
        return out;
    }

  private:
    std::mt19937 rng_;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        fmt::print(stderr, "usage: make_bench_model OUT.gguf [layers=8] [experts=32] [seed=7]\n");
        return 2;
    }
    const std::string out = argv[1];
    const uint64_t layers = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 8;
    const uint64_t experts = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 32;
    const auto seed = static_cast<uint32_t>(argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 7);
    constexpr uint64_t E = 1024, n_head = 16, n_head_kv = 4, hd = 128, n_ff = 512, n_used = 8;
    try {
        // MOERIG_TEST_DATA_DIR: the data folder when the binary was built elsewhere (tools/device-prebuild.sh).
        const char* data = std::getenv("MOERIG_TEST_DATA_DIR");
        const std::string fixture =
            (data != nullptr ? std::string(data) : std::string(MOERIG_SOURCE_DIR) + "/tests/data") +
            "/models/qwen3moe-q4_k_m.gguf";
        const moerig::formats::GgufModel tok(fixture);
        const std::vector<std::string> tokens = tok.get_strings("tokenizer.ggml.tokens");
        std::vector<int32_t> types;
        for (int64_t t : tok.get_ints("tokenizer.ggml.token_type")) types.push_back(static_cast<int32_t>(t));
        const uint64_t nv = tokens.size();

        moerig::testing::GgufBuilder b;
        b.kv_str("general.architecture", "qwen3moe")
            .kv_str("general.name", "moerig-sharded-bench-qwen3moe")
            .kv_u32("general.file_type", 7)  // MOSTLY_Q8_0
            .kv_u32("qwen3moe.block_count", static_cast<uint32_t>(layers))
            .kv_u32("qwen3moe.context_length", 32768)
            .kv_u32("qwen3moe.embedding_length", E)
            .kv_u32("qwen3moe.feed_forward_length", 3 * E)
            .kv_u32("qwen3moe.attention.head_count", n_head)
            .kv_u32("qwen3moe.attention.head_count_kv", n_head_kv)
            .kv_f32("qwen3moe.rope.freq_base", 1e6f)
            .kv_f32("qwen3moe.attention.layer_norm_rms_epsilon", 1e-6f)
            .kv_u32("qwen3moe.attention.key_length", hd)
            .kv_u32("qwen3moe.attention.value_length", hd)
            .kv_u32("qwen3moe.expert_count", static_cast<uint32_t>(experts))
            .kv_u32("qwen3moe.expert_used_count", n_used)
            .kv_u32("qwen3moe.expert_feed_forward_length", n_ff)
            .kv_str("tokenizer.ggml.model", tok.get_string("tokenizer.ggml.model"))
            .kv_str("tokenizer.ggml.pre", tok.get_string("tokenizer.ggml.pre"))
            .kv_strs("tokenizer.ggml.tokens", tokens)
            .kv_i32s("tokenizer.ggml.token_type", types)
            .kv_strs("tokenizer.ggml.merges", tok.get_strings("tokenizer.ggml.merges"))
            .kv_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok.get_u64("tokenizer.ggml.bos_token_id")))
            .kv_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok.get_u64("tokenizer.ggml.eos_token_id")));

        Weights w(seed);
        const auto norm = [&](const std::string& name, uint64_t n) {
            b.tensor(name, {n}, DType::F32, Weights::bytes(w.normal(n, 0.1f, 1.0f)));
        };
        // GGUF dimensions are innermost first: a [rows][cols] matrix is {cols, rows}.
        b.tensor("token_embd.weight", {E, nv}, DType::F32, Weights::bytes(w.normal(nv * E, 1.0f)));
        norm("output_norm.weight", E);
        b.tensor("output.weight", {E, nv}, DType::Q8_0, w.q8_0(nv, E, 3.0f));
        for (uint64_t i = 0; i < layers; ++i) {
            const std::string p = fmt::format("blk.{}.", i);
            norm(p + "attn_norm.weight", E);
            b.tensor(p + "attn_q.weight", {E, n_head * hd}, DType::Q8_0, w.q8_0(n_head * hd, E));
            b.tensor(p + "attn_k.weight", {E, n_head_kv * hd}, DType::Q8_0, w.q8_0(n_head_kv * hd, E));
            b.tensor(p + "attn_v.weight", {E, n_head_kv * hd}, DType::Q8_0, w.q8_0(n_head_kv * hd, E));
            norm(p + "attn_q_norm.weight", hd);
            norm(p + "attn_k_norm.weight", hd);
            b.tensor(p + "attn_output.weight", {n_head * hd, E}, DType::Q8_0, w.q8_0(E, n_head * hd));
            norm(p + "ffn_norm.weight", E);
            b.tensor(p + "ffn_gate_inp.weight", {E, experts}, DType::F32,
                     Weights::bytes(w.normal(experts * E, 2.0f / std::sqrt(static_cast<float>(E)))));
            b.tensor(p + "ffn_gate_exps.weight", {E, n_ff, experts}, DType::Q8_0, w.q8_0(experts * n_ff, E));
            b.tensor(p + "ffn_up_exps.weight", {E, n_ff, experts}, DType::Q8_0, w.q8_0(experts * n_ff, E));
            b.tensor(p + "ffn_down_exps.weight", {n_ff, E, experts}, DType::Q8_0, w.q8_0(experts * E, n_ff));
        }
        b.write(out);
        fmt::print("wrote {}: {:.0f} MB\n", out, static_cast<double>(std::filesystem::file_size(out)) / 1e6);
    } catch (const std::exception& e) {
        fmt::print(stderr, "make_bench_model: {}\n", e.what());
        return 1;
    }
    return 0;
}
