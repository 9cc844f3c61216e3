// The weights of one model as views into the GGUF mapping (no copies where the layout allows), checked
// against the shapes llama.cpp expects for each architecture. Small vectors (norms, biases) in another
// float type are converted once and owned here.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "kernels/matmul.h"
#include "runtime/hparams.h"

namespace moerig::formats {
class GgufModel;
}

namespace moerig::runtime {

using kernels::WeightView;

/// The routed experts of one projection: a merged 3-D tensor (GGUF ffn_*_exps, num_experts matrices of
/// rows x cols, expert-major), or one matrix per expert (per-expert GGUF tensors ffn_gate.E, Hugging Face
/// experts.E.*), each used in place. Callers go through expert(e) and never look at the layout.
struct ExpertTensor {
    DType type = DType::F32;
    int64_t rows = 0;  // output features per expert
    int64_t cols = 0;  // input features
    int64_t num_experts = 0;
    const void* data = nullptr;           // merged: the whole tensor; per-expert: expert 0
    std::vector<const void*> per_expert;  // empty when merged

    bool present() const { return data != nullptr; }
    bool merged() const { return per_expert.empty(); }
    WeightView expert(int64_t expert_idx) const {
        if (per_expert.empty()) return WeightView::expert(type, rows, cols, data, expert_idx);
        return WeightView::dense(type, rows, cols, per_expert.at(static_cast<size_t>(expert_idx)));
    }
};

/// One transformer block. Absent tensors have data == nullptr.
struct LayerWeights {
    const float* attn_norm = nullptr;  // (n_embd)
    // Standard attention.
    WeightView wq, wk, wv;      // (n_head*head_dim, n_embd), (n_head_kv*head_dim, n_embd) x2
    WeightView wo;              // (n_embd, n_head*head_dim_v)
    const float* bq = nullptr;  // optional biases (Qwen2-MoE, gpt-oss)
    const float* bk = nullptr;
    const float* bv = nullptr;
    const float* bo = nullptr;      // output projection bias (gpt-oss)
    const float* sinks = nullptr;   // (n_head) per-head sink logits joining the softmax denominator (gpt-oss)
    const float* q_norm = nullptr;  // per-head (Qwen3) or whole-vector (OLMoE) RMS norm weights
    const float* k_norm = nullptr;
    // DeepSeek MLA (absorbed form: q_nope -> latent via wk_b, latent -> v via wv_b).
    WeightView wq_a, wq_b;  // (q_lora_rank, n_embd), (n_head*head_dim_k, q_lora_rank); or wq alone
    const float* q_a_norm = nullptr;
    WeightView wkv_a_mqa;  // (kv_lora_rank + n_rot, n_embd)
    const float* kv_a_norm = nullptr;
    std::vector<WeightView> wk_b;  // per head: (kv_lora_rank, qk_nope)
    std::vector<WeightView> wv_b;  // per head: (head_dim_v, kv_lora_rank)

    const float* ffn_norm = nullptr;  // (n_embd)
    // Dense FFN (dense models, DeepSeek's leading layers).
    WeightView ffn_gate, ffn_up, ffn_down;
    // MoE.
    WeightView ffn_gate_inp;             // router (n_expert, n_embd)
    const float* exp_probs_b = nullptr;  // (n_expert) selection bias
    ExpertTensor gate_exps, up_exps, down_exps;
    // Optional per-expert biases [n_expert][rows] and gpt-oss's clamped SwiGLU (alpha 1.702, limit 7).
    const float* ffn_gate_inp_b = nullptr;  // (n_expert) router bias
    const float* gate_exps_b = nullptr;
    const float* up_exps_b = nullptr;
    const float* down_exps_b = nullptr;
    bool swiglu_oai = false;
    WeightView gate_shexp, up_shexp, down_shexp;  // shared expert(s)
    WeightView gate_inp_shexp;                    // Qwen2-MoE sigmoid gate of the shared expert (1, n_embd)
};

struct ModelWeights {
    WeightView token_embd;  // (n_vocab, n_embd)
    const float* output_norm = nullptr;
    WeightView output;                  // (n_vocab, n_embd); token_embd when tied
    const float* rope_freqs = nullptr;  // optional (n_rot/2) frequency divisors
    std::vector<LayerWeights> layers;

    /// Binds every tensor of the model; throws FormatError naming the tensor and its expected shape, and
    /// UnsupportedError naming the supported types for a tensor type the kernels cannot multiply.
    static ModelWeights bind(const formats::GgufModel& gguf, const ModelHParams& hp);

  private:
    std::deque<std::vector<float>> owned_;  // converted small tensors
    friend class WeightBinder;
};

}  // namespace moerig::runtime
