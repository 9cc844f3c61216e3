// llama-quantize presets as per-tensor type rules, so that catalog and config.json models can be planned
// "as if" quantised. The rules restate llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) for the
// presets we offer, without imatrix. tests/core/test_accounting.cpp holds them to files llama.cpp quantised
// (tests/data/models):
//   * 1-D tensors (norms, sinks), biases (".bias") and routers (ffn_gate_inp, ffn_gate_inp_shexp) stay F32.
//   * F16 / BF16: every other matrix in that type.
//   * Q8_0, Q6_K: every matrix in the base type (output: Q8_0 for Q8_0, else Q6_K); with exactly 8 experts
//     attn_k and attn_v are Q8_0 (the rule below applies to every quantised preset).
//   * MXFP4 (llama.cpp's MXFP4_MOE): merged expert tensors MXFP4, every other matrix Q8_0.
//   * K-quant mixes (Q5_K_M, Q4_K_M, Q3_K_M, Q2_K), base type Q5_K / Q4_K / Q3_K / Q2_K, then:
//       output.weight                       -> Q6_K
//       token_embd.weight                   -> base type (llama.cpp only bumps it for IQ presets)
//       attn_v.weight     Q2_K: Q4_K if heads/kv_heads >= 4 else Q3_K; Q3_K_M: Q5_K on layers 0-1 else Q4_K;
//                         Q4_K_M/Q5_K_M: Q6_K on use_more_bits layers; models with exactly 8 experts: Q8_0
//       attn_k.weight     models with exactly 8 experts: Q8_0 (else base)
//       attn_output       8 experts: Q5_K for Q2_K/Q3_K_M/Q4_K_M; otherwise Q2_K -> Q3_K, Q3_K_M -> Q4_K
//       ffn_down*         (dense, _exps and _shexp, by layer index) Q2_K -> Q3_K; Q3_K_M: Q5_K on the first
//                         layers/16, else Q4_K; Q4_K_M/Q5_K_M: Q6_K on use_more_bits layers
//     MLA tensors (attn_q_a/_b, attn_kv_a_mqa, attn_k_b, attn_v_b) get the base type: llama.cpp has no rule
//     for them (attn_k_b rows are qk_nope wide, so they usually take the fallback below).
//   * Rows that do not fill whole blocks fall back as llama.cpp does: Q2_K/Q3_K -> IQ4_NL, Q4_K -> Q5_0,
//     Q5_K -> Q5_1, Q6_K -> Q8_0 (256-element blocks); 32-element types on rows not a multiple of 32 -> F16.
#include "sharding/quant_mix.h"

#include <array>
#include <cctype>

#include "kernels/error.h"
#include "sharding/suggest.h"

namespace moerig::sharding {
namespace {

struct MixInfo {
    QuantMixKind kind;
    std::string_view name;
    DType base;
};

constexpr std::array kMixes = {
    MixInfo{QuantMixKind::kF16, "F16", DType::F16},        MixInfo{QuantMixKind::kBF16, "BF16", DType::BF16},
    MixInfo{QuantMixKind::kQ8_0, "Q8_0", DType::Q8_0},     MixInfo{QuantMixKind::kQ6_K, "Q6_K", DType::Q6_K},
    MixInfo{QuantMixKind::kQ5_K_M, "Q5_K_M", DType::Q5_K}, MixInfo{QuantMixKind::kQ4_K_M, "Q4_K_M", DType::Q4_K},
    MixInfo{QuantMixKind::kQ3_K_M, "Q3_K_M", DType::Q3_K}, MixInfo{QuantMixKind::kQ2_K, "Q2_K", DType::Q2_K},
    MixInfo{QuantMixKind::kMXFP4, "MXFP4", DType::MXFP4},
};

const MixInfo& info(QuantMixKind kind) {
    for (const auto& m : kMixes) {
        if (m.kind == kind) return m;
    }
    MOERIG_ASSERT(false);
}

bool contains(std::string_view s, std::string_view part) {
    return s.find(part) != std::string_view::npos;
}

// llama.cpp's fallback when a row is not a whole number of blocks.
DType fit_row(DType type, uint64_t row_elems) {
    const auto& t = dtype_traits(type);
    if (row_elems % t.block_elems == 0) return type;
    switch (type) {
        case DType::Q2_K:
        case DType::Q3_K:
            type = DType::IQ4_NL;
            break;
        case DType::Q4_K:
            type = DType::Q5_0;
            break;
        case DType::Q5_K:
            type = DType::Q5_1;
            break;
        case DType::Q6_K:
            type = DType::Q8_0;
            break;
        default:
            return DType::F16;
    }
    return row_elems % dtype_traits(type).block_elems == 0 ? type : DType::F16;
}

DType k_mix_type(QuantMixKind kind, DType base, const TensorQuantContext& c) {
    const bool eight_experts = c.num_experts == 8;
    if (c.role == TensorRole::kOutput) return DType::Q6_K;
    if (contains(c.name, "attn_k.weight") && eight_experts) return DType::Q8_0;
    if (contains(c.name, "attn_v.weight")) {
        if (eight_experts) return DType::Q8_0;
        switch (kind) {
            case QuantMixKind::kQ2_K:
                return c.gqa_ratio >= 4 ? DType::Q4_K : DType::Q3_K;
            case QuantMixKind::kQ3_K_M:
                return c.layer_idx < 2 ? DType::Q5_K : DType::Q4_K;
            case QuantMixKind::kQ4_K_M:
            case QuantMixKind::kQ5_K_M:
                return use_more_bits(c.layer_idx, c.num_layers) ? DType::Q6_K : base;
            default:
                return base;
        }
    }
    if (contains(c.name, "attn_output.weight")) {
        if (eight_experts) {
            const bool bump =
                kind == QuantMixKind::kQ2_K || kind == QuantMixKind::kQ3_K_M || kind == QuantMixKind::kQ4_K_M;
            return bump ? DType::Q5_K : base;
        }
        if (kind == QuantMixKind::kQ2_K) return DType::Q3_K;
        if (kind == QuantMixKind::kQ3_K_M) return DType::Q4_K;
        return base;
    }
    if (contains(c.name, "ffn_down")) {
        switch (kind) {
            case QuantMixKind::kQ2_K:
                return DType::Q3_K;
            case QuantMixKind::kQ3_K_M:
                return c.layer_idx < static_cast<int32_t>(c.num_layers / 16) ? DType::Q5_K : DType::Q4_K;
            case QuantMixKind::kQ4_K_M:
            case QuantMixKind::kQ5_K_M:
                return use_more_bits(c.layer_idx, c.num_layers) ? DType::Q6_K : base;
            default:
                return base;
        }
    }
    return base;
}

}  // namespace

std::string_view QuantMix::name() const {
    return info(kind).name;
}

DType QuantMix::base() const {
    return info(kind).base;
}

QuantMix parse_quant_mix(std::string_view name) {
    std::string upper;
    for (char c : name) upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    for (const auto& m : kMixes) {
        if (m.name == upper) return QuantMix{m.kind};
    }
    MOERIG_THROW(ConfigError, "unknown quantisation '{}'{}; expected one of {}", name,
                 did_you_mean(name, quant_mix_names()), fmt::join(quant_mix_names(), ", "));
}

std::vector<std::string> quant_mix_names() {
    std::vector<std::string> out;
    for (const auto& m : kMixes) out.emplace_back(m.name);
    return out;
}

QuantMix native_quant_mix(const ModelSpec& spec) {
    if (spec.native_dtype == "f16") return QuantMix{QuantMixKind::kF16};
    if (spec.native_dtype == "fp8") return QuantMix{QuantMixKind::kQ8_0};  // nearest ggml type: 8.5 vs ~8.0 bits
    if (spec.native_dtype == "mxfp4") return QuantMix{QuantMixKind::kMXFP4};
    return QuantMix{QuantMixKind::kBF16};
}

bool use_more_bits(int32_t layer_idx, uint32_t num_layers) {
    const int32_t n = static_cast<int32_t>(num_layers);
    return layer_idx < n / 8 || layer_idx >= 7 * n / 8 || (layer_idx - n / 8) % 3 == 2;
}

DType quant_tensor_type(const QuantMix& mix, const TensorQuantContext& c) {
    // llama.cpp quantises only 2-D+ ".weight" tensors; routers are kept in F32 by the converter.
    const bool is_bias = c.name.size() >= 5 && c.name.substr(c.name.size() - 5) == ".bias";
    if (c.num_dims <= 1 || is_bias || c.role == TensorRole::kNorm || c.role == TensorRole::kRouter) return DType::F32;
    DType type = mix.base();
    switch (mix.kind) {
        case QuantMixKind::kF16:
        case QuantMixKind::kBF16:
            return type;
        case QuantMixKind::kQ8_0:
            break;
        case QuantMixKind::kQ6_K: {
            // The 8-expert bump of attn_k/attn_v applies to every quantised preset.
            const bool kv = contains(c.name, "attn_k.weight") || contains(c.name, "attn_v.weight");
            type = kv && c.num_experts == 8 ? DType::Q8_0 : DType::Q6_K;
            break;
        }
        case QuantMixKind::kMXFP4:
            type = c.role == TensorRole::kExpert ? DType::MXFP4 : DType::Q8_0;
            break;
        default:
            type = k_mix_type(mix.kind, mix.base(), c);
            break;
    }
    return fit_row(type, c.row_elems);
}

}  // namespace moerig::sharding
