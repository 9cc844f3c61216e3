// Hyperparameters of a model, read from GGUF metadata with llama.cpp's keys and defaults, plus the
// vocabulary facts the engine needs (BOS/EOS/EOG ids). One struct for every supported architecture.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/rope.h"

namespace moerig::formats {
class GgufModel;
}

namespace moerig::runtime {

/// Architectures the CPU engine runs (GGUF `general.architecture`).
enum class Arch { kLlama, kQwen2Moe, kQwen3Moe, kOlmoe, kDeepseek2, kGptOss };

/// Comma-separated list of supported `general.architecture` names, for error messages.
const char* supported_architectures();

/// How rotary embedding pairs dimensions: NORM rotates (2i, 2i+1), NEOX rotates (i, i + n_rot/2).
enum class RopeType { kNorm, kNeox };

/// Expert gate: probabilities from the router logits (llama.cpp's expert_gating_func 1 and 2), or gpt-oss's
/// softmax over the selected logits only (llama.cpp's SOFTMAX_WEIGHT, fixed by the architecture).
enum class GatingFunc { kSoftmax = 1, kSigmoid = 2, kSoftmaxWeight = 3 };

struct ModelHParams {
    Arch arch = Arch::kLlama;
    std::string arch_name;  // as in the file, e.g. "qwen3moe"

    int64_t n_layer = 0;
    int64_t n_embd = 0;
    int64_t n_vocab = 0;
    int64_t n_ctx_train = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t head_dim_k = 0;  // per-head width of Q and K (MLA: qk_nope + qk_rope)
    int64_t head_dim_v = 0;  // per-head width of V
    int64_t n_rot = 0;       // rotary dims per head (MLA: qk_rope)
    int64_t n_ff = 0;        // dense FFN width (dense layers)
    float rms_eps = 1e-5f;

    float rope_freq_base = 10000.f;
    float rope_freq_scale = 1.f;  // 1 / linear scaling factor
    RopeType rope_type = RopeType::kNorm;
    // YaRN (rope.scaling.type == "yarn"): DeepSeek's long-context models.
    bool rope_yarn = false;
    int64_t rope_n_ctx_orig = 0;
    float yarn_ext_factor = 0.f;
    float yarn_attn_factor = 1.f;
    float yarn_beta_fast = 32.f;
    float yarn_beta_slow = 1.f;
    float yarn_log_mul = 0.f;

    // Sliding-window attention (gpt-oss): layers with swa_layers[il] see only the last n_swa positions and
    // rotate with rope_freq_base_swa.
    int64_t n_swa = 0;
    std::vector<bool> swa_layers;
    float rope_freq_base_swa = 10000.f;

    // Mixture of experts (n_expert == 0: dense model).
    int64_t n_expert = 0;
    int64_t n_expert_used = 0;
    int64_t n_expert_shared = 0;
    int64_t n_ff_exp = 0;    // width of one routed expert
    int64_t n_ff_shexp = 0;  // width of the shared expert(s) together
    int64_t n_layer_dense_lead = 0;
    int64_t n_expert_groups = 0;
    int64_t n_group_used = 0;
    float expert_weights_scale = 0.f;  // 0 or 1: not applied
    bool expert_weights_norm = false;  // renormalise the selected weights to sum 1
    GatingFunc gating_func = GatingFunc::kSoftmax;

    // DeepSeek MLA.
    int64_t q_lora_rank = 0;  // 0: no query compression (V2-Lite)
    int64_t kv_lora_rank = 0;
    int64_t qk_nope_dim = 0;

    // Vocabulary.
    int32_t bos_id = -1;
    int32_t eos_id = -1;
    bool add_bos = false;
    std::vector<int32_t> eog_ids;  // end-of-generation tokens (eos, eot, eom, ...)

    bool is_moe_layer(int64_t layer_idx) const { return n_expert > 0 && layer_idx >= n_layer_dense_lead; }
    bool is_mla() const { return arch == Arch::kDeepseek2; }
    bool is_swa(int64_t layer_idx) const {
        return n_swa > 0 && layer_idx < static_cast<int64_t>(swa_layers.size()) &&
               swa_layers[static_cast<size_t>(layer_idx)];
    }
    bool is_eog(int32_t token) const;

    /// Reads every field from the model's metadata; throws UnsupportedError for an unknown architecture and
    /// FormatError (naming the file and key) for missing or inconsistent keys.
    static ModelHParams from_gguf(const formats::GgufModel& gguf);
};

/// The rotary-embedding parameters of a model (YaRN included); freq_factors: optional per-pair divisors.
kernels::RopeParams rope_params(const ModelHParams& hp, const float* freq_factors);

}  // namespace moerig::runtime
