// The single-card MoE block: router output, the ExpertRunner interface through which a layer's routed
// experts run (locally here; the dispatcher plugs in a remote runner), and the local grouped-by-expert runner.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/threadpool.h"
#include "runtime/weights.h"

namespace moerig::runtime {

/// Each token's selected experts, best first, and their mixing weights.
struct RouterOutput {
    int64_t num_tokens = 0;
    int64_t k = 0;                    // experts per token
    std::vector<int32_t> expert_ids;  // [num_tokens][k]
    std::vector<float> weights;       // [num_tokens][k]
};

/// Runs the routed experts of one MoE layer for a batch of tokens.
class ExpertRunner {
  public:
    virtual ~ExpertRunner() = default;
    /// x: [num_tokens][n_embd] (the FFN-normed inputs). Writes y[t] = sum_i weights[t,i] * E_{ids[t,i]}(x[t])
    /// (the sum in selection order), overwriting y: [num_tokens][n_embd].
    virtual void run(int64_t layer_idx, const float* x, const RouterOutput& route, float* y) = 0;
    /// Whether run() applies per-expert biases and gpt-oss's clamped SwiGLU (LayerWeights::gate_exps_b ..,
    /// swiglu_oai). The engine refuses such layers (UnsupportedError) through a runner that does not.
    virtual bool supports_oai_experts() const { return false; }
};

/// Rows of one expert's FFN. Row i reads x row x_rows[i], uses gate/up scratch row h_rows[i] (n_ff floats
/// each) and writes y row y_rows[i] (n_embd floats); a null index array is the identity. Lets the
/// one-card path run an expert in place over its routed tokens and a card run it over packed rows.
struct ExpertRows {
    const float* x = nullptr;  // (*, n_embd)
    const int32_t* x_rows = nullptr;
    float* gate = nullptr;  // (*, n_ff) scratch; holds the activation afterwards
    float* up = nullptr;    // (*, n_ff) scratch
    const int32_t* h_rows = nullptr;
    float* y = nullptr;  // (*, n_embd)
    const int32_t* y_rows = nullptr;
    int64_t num_rows = 0;
};

/// One routed expert of a layer: y = down(act(gate(x) + b_gate, up(x) + b_up)) + b_down, where act is
/// SwiGLU or gpt-oss's clamped SwiGLU (LayerWeights::swiglu_oai) and the biases apply when present.
/// The single code path for every place an expert runs (one card, a card of a sharded run, the host).
void run_expert_rows(const LayerWeights& layer, int64_t expert_idx, int64_t n_embd, const ExpertRows& rows,
                     kernels::ThreadPool& pool);

/// Runs a layer's experts on this CPU: tokens grouped by expert, so each selected expert's weights are read
/// once per batch; SwiGLU between the gate/up and down products (quantised matmul from kernels/).
void run_experts_local(const LayerWeights& layer, int64_t n_embd, const float* x, const RouterOutput& route, float* y,
                       kernels::ThreadPool& pool);

/// ExpertRunner over run_experts_local for every layer of a model.
class LocalExpertRunner final : public ExpertRunner {
  public:
    LocalExpertRunner(const ModelWeights& weights, int64_t n_embd, kernels::ThreadPool& pool)
        : weights_(weights), n_embd_(n_embd), pool_(pool) {}
    void run(int64_t layer_idx, const float* x, const RouterOutput& route, float* y) override;
    bool supports_oai_experts() const override { return true; }

  private:
    const ModelWeights& weights_;
    int64_t n_embd_;
    kernels::ThreadPool& pool_;
};

}  // namespace moerig::runtime
