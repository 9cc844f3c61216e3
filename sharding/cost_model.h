// The planner's view of a model on a rig (PlanProblem: flat per-layer and per-card numbers), the layout it
// builds (Layout: stages, expert copies, memory per card) and the cost model that predicts a layout's speed:
// memory-bound decode, compute-bound prefill, PCIe/network link time, per-collective latency.
// Every coefficient comes from cost_coefficients.h; docs/plan.md derives the formulas.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sharding/accounting.h"
#include "sharding/rig.h"
#include "sharding/trace.h"
#include "sharding/workload.h"

namespace moerig::sharding {

/// One transformer block as the planner sees it.
struct LayerCost {
    uint64_t stage_bytes = 0;         // attention, norms, router, shared/dense FFN: live on the stage card
    double stage_params = 0;          // parameters behind stage_bytes (FLOPs per token = 2 * params)
    uint32_t num_experts = 0;         // routed experts (0: dense layer)
    uint64_t kv_bytes_per_token = 0;  // one sequence, one token, this layer
    uint32_t kv_window = 0;           // sliding-window layers keep at most this many tokens (0: full context)
    /// Planning load of each expert: expected fraction of tokens routed to it (sums to top-k).
    std::vector<double> expert_prob;  // (num_experts)
};

/// One card, with rates already derated by the efficiencies of cost_coefficients.h.
struct CardCost {
    std::string name;
    std::string kind;
    uint32_t host_idx = 0;
    uint64_t vram_bytes = 0;
    uint64_t reserve_bytes = 0;
    uint64_t budget_bytes = 0;  // vram - reserve
    double mem_bw = 0;          // achieved bytes/s reading weights
    double flops = 0;           // achieved FLOP/s for quantised matmuls
    double link_bw = 0;         // achieved bytes/s card <-> host, per direction
    double peer_bw = 0;         // achieved bytes/s card -> card (halved without P2P: two crossings)
    double peer_latency_s = 0;  // per collective step to another card of the same host
    proto::CardSpec spec;       // as written into the plan
};

struct HostCost {
    std::string name;
    uint64_t spill_budget_bytes = 0;  // host RAM the planner may fill with spilled experts
    double mem_bw = 0;                // achieved, for spilled experts
    double flops = 0;
};

/// Everything the partition, placement and cost model read. Built once per plan() call.
struct PlanProblem {
    std::string model_name;
    uint32_t hidden = 0;
    uint32_t top_k = 0;
    uint64_t expert_bytes = 0;  // one routed expert (all layers share a size)
    double expert_params = 0;
    uint64_t output_bytes = 0;  // lm head + output norm (last stage card)
    uint64_t logits_bytes = 0;  // F32 logits of a step's wanted rows (last stage card)
    double output_params = 0;
    uint64_t embedding_bytes = 0;  // token_embd: host RAM (one row read per token)
    uint32_t max_context = 0;
    std::vector<LayerCost> layers;
    std::vector<CardCost> cards;
    std::vector<HostCost> hosts;
    double net_bw = 0;  // between hosts, bytes/s
    double net_latency_s = 0;
    Workload workload;
    PlanOptions options;
    proto::ModelSpec model_spec;  // for the plan file
    proto::RigSpec rig_spec;

    uint32_t num_layers() const { return static_cast<uint32_t>(layers.size()); }
    uint32_t num_cards() const { return static_cast<uint32_t>(cards.size()); }
};

/// Builds the problem. `trace` (optional, may be null) gives the planning loads; without it every expert
/// of a layer is equally likely. ConfigError when the trace does not match the model.
PlanProblem make_problem(const ModelAccount& model, const RigSpec& rig, const Workload& workload,
                         const PlanOptions& options, const RoutingTrace* trace);

/// Per-layer expert probabilities from a trace (smoothed towards uniform by coeff::kTracePriorCount when
/// `smooth`); rows of dense layers stay empty. ConfigError if the trace's shape differs from the model's.
std::vector<std::vector<double>> expert_probs_from_trace(const RoutingTrace& trace, const PlanProblem& problem,
                                                         bool smooth);

/// Where an expert copy lives: a card index, or a host (card_idx == kOnHost).
inline constexpr int32_t kOnHost = -1;
struct ExpertCopy {
    int32_t card_idx = kOnHost;
    uint32_t host_idx = 0;
    double share = 1.0;  // fraction of the expert's tokens this copy serves
};

/// Bytes per kind on one card.
struct CardMemory {
    uint64_t dense = 0;
    uint64_t experts = 0;
    uint64_t replica_experts = 0;  // part of `experts`: copies beyond the first
    uint64_t kv = 0;
    uint64_t activations = 0;
    uint64_t comm = 0;
    uint64_t reserve = 0;
    uint64_t total() const { return dense + experts + kv + activations + comm + reserve; }
};

/// A complete assignment: the planner's output before it becomes a proto::Plan.
struct Layout {
    proto::Strategy strategy = proto::PIPELINE;
    uint32_t group_size = 1;
    std::vector<std::vector<uint32_t>> groups;                  // card indices of each pipeline group, in order
    std::vector<uint32_t> layer_group;                          // (num_layers)
    std::vector<uint32_t> stage_card;                           // (num_layers): card with attention + KV of the layer
    std::vector<std::vector<std::vector<ExpertCopy>>> experts;  // (num_layers, num_experts, copies)
    std::vector<CardMemory> memory;                             // (num_cards)
    std::vector<uint64_t> kv_tokens;                            // (num_cards): KV token budget, all sequences together
    std::vector<uint64_t> host_spill_bytes;                     // (num_hosts)
    uint32_t last_card = 0;                                     // holds the lm head
    bool feasible = false;
    std::string infeasible_reason;  // why, when !feasible
};

/// Predicted speed of a layout.
struct Prediction {
    double decode_step_s = 0;          // batch 1
    double decode_step_s_batch = 0;    // workload batch
    uint32_t decode_microbatches = 1;  // at the workload batch
    double prefill_s = 0;              // one prompt
    double decode_tokens_per_s = 0;
    double decode_tokens_per_s_batch = 0;
    double prefill_tokens_per_s = 0;
    double ttft_s = 0;
    uint32_t max_context = 0;
    double workload_s = 0;  // batch * (prompt prefill) + gen decode steps at the batch: the strategy score
    std::vector<double> card_read_bytes;  // (num_cards) weight + KV bytes read per decode step at the batch
    std::vector<double> card_link_bytes;  // (num_cards) bytes over the card's link per decode step
};

/// Predicts decode, prefill, TTFT and max context of a feasible layout for the problem's workload.
Prediction predict(const PlanProblem& problem, const Layout& layout);
/// One holder's (card's or host's) expert time in a layer as a distribution: seconds[n] (non-decreasing in n)
/// with probability prob[n] when n of the expert copies it holds are read by a pass.
struct HolderTime {
    std::vector<double> seconds;
    std::vector<double> prob;
};
/// prob[n] = P(n of the copies are read), n = 0..touch.size(), for copies read independently with probabilities
/// touch (Poisson binomial).
void copies_read_distribution(std::span<const double> touch, std::vector<double>& prob);
/// E[max over holders of their time], holders independent: what a MoE layer waits for.
double expected_max_seconds(const std::vector<HolderTime>& holders);

/// One decode step for `batch` sequences (each with `context` cached tokens): the batch is split into
/// micro-batches that flow through the pipeline groups; the count (<= max_microbatches) minimising the
/// step time is chosen. max_microbatches = 1 is a llama.cpp-style step (the whole batch, card after card).
struct DecodeStep {
    double seconds = 0;
    uint32_t num_microbatches = 1;
};
DecodeStep decode_step(const PlanProblem& problem, const Layout& layout, uint32_t batch, uint32_t context,
                       uint32_t max_microbatches = UINT32_MAX);
/// decode_step(...).seconds.
double decode_step_seconds(const PlanProblem& problem, const Layout& layout, uint32_t batch, uint32_t context,
                           uint32_t max_microbatches = UINT32_MAX);
/// Time to prefill `tokens` prompt tokens of one sequence through the layout, in seconds.
double prefill_seconds(const PlanProblem& problem, const Layout& layout, uint64_t tokens);
/// Largest context per sequence at `batch` that fits beside the layout's weights (replicas dropped).
uint32_t max_context(const PlanProblem& problem, const Layout& layout, uint32_t batch);

/// Expert-load balance of a layout on per-layer expert probabilities (e.g. a held-out trace): for each MoE
/// layer, the time of each card of the layer's group = its tokens / its bandwidth; the score is
/// sum(mean over cards) / sum(max over cards), 1 = perfect. Layers whose group is one card count as 1.
double expert_balance(const PlanProblem& problem, const Layout& layout,
                      const std::vector<std::vector<double>>& expert_prob);

}  // namespace moerig::sharding
