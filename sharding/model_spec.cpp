// ModelSpec invariants, per-layer attention facts (sliding window, KV width) and KV-cache arithmetic.
#include "sharding/model_spec.h"

#include <algorithm>

#include "kernels/error.h"

namespace moerig::sharding {

std::string_view attention_kind_name(AttentionKind kind) {
    return kind == AttentionKind::kMla ? "mla" : "gqa";
}

std::string_view routing_func_name(RoutingFunc func) {
    return func == RoutingFunc::kSigmoid ? "sigmoid" : "softmax";
}

std::string_view tensor_role_name(TensorRole role) {
    switch (role) {
        case TensorRole::kEmbedding:
            return "embedding";
        case TensorRole::kOutput:
            return "output";
        case TensorRole::kNorm:
            return "norm";
        case TensorRole::kAttention:
            return "attention";
        case TensorRole::kRouter:
            return "router";
        case TensorRole::kDenseFfn:
            return "dense_ffn";
        case TensorRole::kExpert:
            return "expert";
        case TensorRole::kSharedExpert:
            return "shared_expert";
        case TensorRole::kOther:
            return "other";
    }
    return "other";
}

bool ModelSpec::is_sliding_layer(uint32_t layer_idx) const {
    if (sliding_window == 0) return false;
    if (sliding_window_pattern == 0) return true;
    return layer_idx % sliding_window_pattern < sliding_window_pattern - 1;
}

uint64_t ModelSpec::kv_values_per_token(uint32_t layer_idx) const {
    if (attention == AttentionKind::kMla) return uint64_t{kv_lora_rank} + qk_rope_head_dim;
    return 2ull * num_kv_heads * head_dim;
}

void ModelSpec::validate() const {
    const std::string& src = source.empty() ? name : source;
    MOERIG_CHECK(hidden > 0, ConfigError, "{}: hidden size must be > 0", src);
    MOERIG_CHECK(num_layers > 0, ConfigError, "{}: layers must be > 0", src);
    MOERIG_CHECK(vocab > 0, ConfigError, "{}: vocab must be > 0", src);
    MOERIG_CHECK(num_heads > 0, ConfigError, "{}: attention.heads must be > 0", src);
    if (attention == AttentionKind::kGqa) {
        MOERIG_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0, ConfigError,
                     "{}: attention.kv_heads ({}) must divide attention.heads ({})", src, num_kv_heads, num_heads);
        MOERIG_CHECK(head_dim > 0, ConfigError, "{}: attention.head_dim must be > 0", src);
    } else {
        MOERIG_CHECK(kv_lora_rank > 0 && qk_rope_head_dim > 0 && qk_nope_head_dim > 0 && v_head_dim > 0, ConfigError,
                     "{}: MLA needs attention.kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim and v_head_dim > 0",
                     src);
    }
    MOERIG_CHECK(num_leading_dense <= num_layers, ConfigError, "{}: ffn.leading_dense_layers ({}) exceeds layers ({})",
                 src, num_leading_dense, num_layers);
    if (num_leading_dense > 0 || num_experts == 0) {
        MOERIG_CHECK(dense_ffn > 0, ConfigError, "{}: dense layers need ffn.dense > 0", src);
    }
    if (num_experts > 0) {
        MOERIG_CHECK(expert_ffn > 0, ConfigError, "{}: ffn.expert must be > 0 for a MoE model", src);
        MOERIG_CHECK(num_experts_used > 0 && num_experts_used <= num_experts, ConfigError,
                     "{}: ffn.experts_used ({}) must be in 1..experts ({})", src, num_experts_used, num_experts);
        MOERIG_CHECK(num_expert_groups > 0 && num_experts % num_expert_groups == 0, ConfigError,
                     "{}: routing.groups ({}) must divide ffn.experts ({})", src, num_expert_groups, num_experts);
        MOERIG_CHECK(num_expert_groups_used > 0 && num_expert_groups_used <= num_expert_groups, ConfigError,
                     "{}: routing.groups_used ({}) must be in 1..groups ({})", src, num_expert_groups_used,
                     num_expert_groups);
    }
    if (num_shared_experts > 0) {
        MOERIG_CHECK(shared_expert_ffn > 0, ConfigError, "{}: ffn.shared_ffn must be > 0 with shared experts", src);
    }
}

uint64_t kv_row_bytes(DType cache_dtype, uint64_t row_values) {
    const auto& t = dtype_traits(cache_dtype);
    const uint64_t num_blocks = (row_values + t.block_elems - 1) / t.block_elems;
    return num_blocks * t.block_bytes;
}

uint64_t ModelAccount::kv_bytes_per_token(uint32_t layer_idx, DType cache_dtype) const {
    if (spec.attention == AttentionKind::kMla) {
        // llama.cpp caches the latent and the rope key as one row; V is a view of the latent.
        return kv_row_bytes(cache_dtype, spec.kv_values_per_token(layer_idx));
    }
    // K and V are separate rows of kv_heads*head_dim values each.
    return 2 * kv_row_bytes(cache_dtype, uint64_t{spec.num_kv_heads} * spec.head_dim);
}

uint64_t ModelAccount::kv_bytes_per_token(DType cache_dtype) const {
    uint64_t total = 0;
    for (uint32_t l = 0; l < spec.num_layers; ++l) total += kv_bytes_per_token(l, cache_dtype);
    return total;
}

uint64_t ModelAccount::kv_cache_bytes(uint32_t layer_idx, uint64_t context, DType cache_dtype) const {
    const uint64_t tokens =
        spec.is_sliding_layer(layer_idx) ? std::min<uint64_t>(context, spec.sliding_window) : context;
    return tokens * kv_bytes_per_token(layer_idx, cache_dtype);
}

uint64_t ModelAccount::kv_cache_bytes(uint64_t context, DType cache_dtype) const {
    uint64_t total = 0;
    for (uint32_t l = 0; l < spec.num_layers; ++l) total += kv_cache_bytes(l, context, cache_dtype);
    return total;
}

}  // namespace moerig::sharding
