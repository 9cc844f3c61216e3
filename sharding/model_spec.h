// Architecture of one MoE model (ModelSpec) and the byte/parameter account of every tensor it holds
// (TensorAccount, ModelAccount). The planner works from these alone: no weights are ever loaded.
// Specs come from the YAML catalog (catalog.h), a GGUF header or an HF config.json (accounting.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/dtype.h"

namespace moerig::sharding {

enum class AttentionKind { kGqa, kMla };
enum class RoutingFunc { kSoftmax, kSigmoid };
/// Where q/k normalisation sits: none, per head (Qwen3: head_dim weights), or over the full projection (OLMoE).
enum class QkNorm { kNone, kPerHead, kFull };

std::string_view attention_kind_name(AttentionKind kind);  // "gqa" | "mla"
std::string_view routing_func_name(RoutingFunc func);      // "softmax" | "sigmoid"

/// Every architecture field the planner needs. Counts follow HF config.json; names follow GGUF.
struct ModelSpec {
    std::string name;          // catalog name ("deepseek-v3") or file stem
    std::string display_name;  // "DeepSeek-V3"
    std::string arch;          // GGUF architecture: llama, qwen2moe, qwen3moe, olmoe, deepseek2, gpt-oss
    std::string source;        // where it was read from (file path or "catalog:<name>")

    uint64_t hidden = 0;      // d_model
    uint32_t num_layers = 0;  // transformer blocks, MTP layers excluded
    uint64_t vocab = 0;
    uint64_t max_context = 0;
    bool tied_embeddings = false;       // output shares token_embd
    std::string native_dtype = "bf16";  // as published: bf16 | fp8 | mxfp4 (experts) | f16

    // Attention.
    AttentionKind attention = AttentionKind::kGqa;
    uint32_t num_heads = 0;
    uint32_t num_kv_heads = 0;
    uint32_t head_dim = 0;     // GQA: per-head q/k/v width. MLA: qk_nope + qk_rope.
    uint32_t q_lora_rank = 0;  // MLA; 0 = q not compressed (DeepSeek-V2-Lite)
    uint32_t kv_lora_rank = 0;
    uint32_t qk_nope_head_dim = 0;
    uint32_t qk_rope_head_dim = 0;
    uint32_t v_head_dim = 0;
    bool qkv_bias = false;  // biases on q/k/v projections (Qwen1.5-MoE, gpt-oss)
    bool out_bias = false;  // bias on attn_output (gpt-oss)
    QkNorm qk_norm = QkNorm::kNone;
    bool attn_sinks = false;                 // per-head learned sink logits (gpt-oss)
    std::string ffn_norm_name = "ffn_norm";  // GGUF name of the pre-FFN norm (gpt-oss: post_attention_norm)
    uint32_t sliding_window = 0;             // tokens; 0 = every layer attends to the full context
    /// llama.cpp's swa pattern: layer i is sliding when i % pattern < pattern - 1 (gpt-oss: 2 -> even layers).
    /// 0 with sliding_window > 0 means every layer slides.
    uint32_t sliding_window_pattern = 0;

    // Feed-forward.
    uint64_t dense_ffn = 0;          // intermediate width of dense layers (0 = none)
    uint32_t num_leading_dense = 0;  // first layers with a dense FFN instead of experts
    uint64_t expert_ffn = 0;         // intermediate width of one routed expert
    uint32_t num_experts = 0;        // routed experts per MoE layer
    uint32_t num_experts_used = 0;   // top-k
    uint32_t num_shared_experts = 0;
    uint64_t shared_expert_ffn = 0;   // total intermediate width of the shared expert block (fused if several)
    bool shared_expert_gate = false;  // sigmoid gate on the shared expert (Qwen1.5-MoE)
    bool expert_bias = false;         // biases on expert matrices and router (gpt-oss)

    // Routing.
    RoutingFunc routing = RoutingFunc::kSoftmax;
    uint32_t num_expert_groups = 1;
    uint32_t num_expert_groups_used = 1;
    double routed_scaling = 1.0;
    bool norm_topk = false;          // renormalise the selected weights
    bool router_score_bias = false;  // DeepSeek-V3 e_score_correction_bias (exp_probs_b)

    uint32_t num_mtp_layers = 0;  // multi-token-prediction layers after the main blocks (not counted in totals)

    // Published figures (0 = unknown), for checks and reports.
    double published_total_params = 0;
    double published_active_params = 0;
    double published_active_precision = 0;  // unit of the last digit when the figure is rounded (0 = exact)
    /// The published active count leaves out the input embedding (gpt-oss); the account follows suit.
    bool active_excludes_embeddings = false;

    bool is_moe_layer(uint32_t layer_idx) const { return num_experts > 0 && layer_idx >= num_leading_dense; }
    bool is_sliding_layer(uint32_t layer_idx) const;
    /// Values cached per token in one layer (GQA: 2*kv_heads*head_dim; MLA: kv_lora_rank + qk_rope_head_dim).
    uint64_t kv_values_per_token(uint32_t layer_idx) const;
    /// Throws ConfigError naming `source` and the field when a field is missing or inconsistent.
    void validate() const;
};

enum class TensorRole { kEmbedding, kOutput, kNorm, kAttention, kRouter, kDenseFfn, kExpert, kSharedExpert, kOther };
std::string_view tensor_role_name(TensorRole role);  // "embedding", "output", ...

/// One tensor of the model, as GGUF would store it.
struct TensorAccount {
    std::string name;  // GGUF name, e.g. "blk.3.ffn_up_exps.weight"
    TensorRole role = TensorRole::kOther;
    int32_t layer_idx = -1;  // -1 for global tensors
    DType dtype = DType::F32;
    std::vector<uint64_t> dims;     // ne[0] innermost; experts: (row, rows, num_experts)
    uint64_t num_elems = 0;         // whole tensor
    uint64_t num_bytes = 0;         // whole tensor
    uint32_t num_experts = 1;       // > 1 only for merged routed-expert tensors (ne[2])
    uint64_t bytes_per_expert = 0;  // num_bytes / num_experts
    uint64_t elems_per_expert = 0;  // num_elems / num_experts
};

/// Per-layer totals, in bytes, from the tensor list.
struct LayerAccount {
    uint32_t layer_idx = 0;
    uint64_t attention_bytes = 0;      // attention projections, their norms, biases and sinks, attn_norm
    uint64_t dense_bytes = 0;          // dense FFN, ffn_norm, router and other non-expert tensors of the layer
    uint64_t shared_expert_bytes = 0;  // shared experts (always active; live with the layer)
    uint64_t router_bytes = 0;         // part of dense_bytes: router weights and score bias
    uint32_t num_experts = 0;          // routed experts in this layer (0 for dense layers)
    uint64_t expert_bytes = 0;         // bytes of ONE routed expert (gate+up+down and biases)
    uint64_t expert_params = 0;        // parameters of one routed expert
    uint64_t kv_values_per_token = 0;
    bool sliding = false;

    /// Bytes that must sit with the layer's stage: attention + dense + shared experts.
    uint64_t stage_bytes() const { return attention_bytes + dense_bytes + shared_expert_bytes; }
    uint64_t all_experts_bytes() const { return expert_bytes * num_experts; }
    uint64_t total_bytes() const { return stage_bytes() + all_experts_bytes(); }
};

/// A model's full account: spec, every tensor and the totals the planner needs.
struct ModelAccount {
    ModelSpec spec;
    std::string quant;                       // mix name ("Q4_K_M") or "gguf" for exact file types
    std::vector<TensorAccount> tensors;      // main model
    std::vector<TensorAccount> mtp_tensors;  // MTP layers: accounted apart, not placed by default
    std::vector<LayerAccount> layers;        // one per block, index = layer_idx

    uint64_t embedding_bytes = 0;  // token_embd
    uint64_t output_bytes = 0;     // output (lm head) + output_norm
    uint64_t total_bytes = 0;      // all tensors (MTP excluded)
    uint64_t mtp_bytes = 0;
    uint64_t total_params = 0;
    uint64_t active_params = 0;        // params touched per token (top-k experts), per spec.active_excludes_embeddings
    uint64_t active_bytes = 0;         // bytes read per decoded token, same convention (embedding row aside)
    uint64_t routed_expert_bytes = 0;  // all routed experts of all layers

    double bits_per_weight() const { return total_params ? 8.0 * total_bytes / total_params : 0.0; }
    /// KV-cache bytes per token for one layer with the cache in `cache_dtype` (F16, BF16, Q8_0, Q4_0...).
    uint64_t kv_bytes_per_token(uint32_t layer_idx, DType cache_dtype) const;
    /// KV-cache bytes per token summed over all layers (sliding layers counted in full).
    uint64_t kv_bytes_per_token(DType cache_dtype) const;
    /// KV-cache bytes of one layer holding `context` tokens; sliding-window layers hold at most the window.
    uint64_t kv_cache_bytes(uint32_t layer_idx, uint64_t context, DType cache_dtype) const;
    /// kv_cache_bytes summed over all layers.
    uint64_t kv_cache_bytes(uint64_t context, DType cache_dtype) const;
};

/// Bytes of num_values values of a cache dtype, per row of `row_values` (quantised caches use whole blocks).
uint64_t kv_row_bytes(DType cache_dtype, uint64_t row_values);

}  // namespace moerig::sharding
