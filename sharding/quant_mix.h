// Quantisation mixes: which ggml type each tensor gets when a catalog or config.json model is planned
// "as if" quantised with llama.cpp's llama-quantize presets (Q4_K_M, Q3_K_M, ...). The rules and their
// sources are documented in quant_mix.cpp; GGUF files are never re-typed (their types are exact).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kernels/dtype.h"
#include "sharding/model_spec.h"

namespace moerig::sharding {

enum class QuantMixKind { kF16, kBF16, kQ8_0, kQ6_K, kQ5_K_M, kQ4_K_M, kQ3_K_M, kQ2_K, kMXFP4 };

/// One preset. `base` is the type most matrices get.
struct QuantMix {
    QuantMixKind kind = QuantMixKind::kQ4_K_M;
    std::string_view name() const;  // "Q4_K_M"
    DType base() const;
};

/// Parses "q4_k_m", "Q4_K_M", "bf16" (case-insensitive). ConfigError listing close matches otherwise.
QuantMix parse_quant_mix(std::string_view name);
/// All preset names, in the order of the enum.
std::vector<std::string> quant_mix_names();
/// The mix closest to how the model is published: bf16 -> BF16, f16 -> F16, fp8 -> Q8_0, mxfp4 -> MXFP4.
QuantMix native_quant_mix(const ModelSpec& spec);

/// What the rules look at for one tensor.
struct TensorQuantContext {
    std::string_view name;  // GGUF name, e.g. "blk.7.ffn_down_exps.weight"
    TensorRole role = TensorRole::kOther;
    int32_t layer_idx = -1;
    uint32_t num_layers = 0;   // main blocks of the model
    uint32_t num_dims = 2;     // 1 for norms/biases, 3 for merged experts
    uint64_t row_elems = 0;    // ne[0]
    uint32_t num_experts = 0;  // the model's routed experts (llama.cpp special-cases 8)
    uint32_t gqa_ratio = 1;    // heads / kv_heads
};

/// The ggml type the mix gives this tensor (after llama.cpp's fallback for rows that do not fill a block).
DType quant_tensor_type(const QuantMix& mix, const TensorQuantContext& ctx);

/// llama.cpp's use_more_bits: first and last eighth of the layers plus every third layer between.
bool use_more_bits(int32_t layer_idx, uint32_t num_layers);

}  // namespace moerig::sharding
