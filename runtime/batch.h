// Batching across sequences on one card: N sequence slots, each with its own KV cache and position, evaluated
// together in one step. Attention runs per sequence (its own cache and positions); every FFN/MoE layer runs once
// over all the step's tokens, so the experts see the whole batch at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/threadpool.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace moerig::runtime {

/// New tokens of one sequence in a batched step.
struct SeqTokens {
    int slot_idx = 0;                 ///< the sequence slot they extend
    std::span<const int32_t> tokens;  ///< at positions n_past(slot_idx)..
    bool all_logits = false;          ///< logits of every token instead of the last one only
};

/// Where each entry's tokens sit in a step's concatenated residual stream, checked against the slots.
struct BatchSegment {
    int slot_idx = 0;
    int64_t row_begin = 0;  ///< first row of the step's [num_tokens][n_embd] stream
    int64_t num_tokens = 0;
    int64_t n_past = 0;   ///< position of the first token
    int64_t num_out = 0;  ///< logits rows wanted (1, or num_tokens with all_logits)
};

/// The step's segments over their slots' caches (kv[slot]), for Model::attention.
std::vector<AttentionSegment> attention_segments(std::span<const BatchSegment> segments,
                                                 std::span<const std::unique_ptr<KvCache>> kv);

/// Checks a step (distinct slots in range, at least one token each, context not exceeded; `who` names the caller
/// in errors) and lays its entries out one after the other. Throws ConfigError.
std::vector<BatchSegment> plan_batch(std::span<const SeqTokens> entries, std::span<const int64_t> n_past,
                                     int64_t context, const char* who);

/// Embedding of every entry's tokens, in entry order: x [sum of tokens][n_embd].
void embed_batch(const Model& model, std::span<const SeqTokens> entries, float* x);

/// Copies the rows whose logits are wanted (each segment's last, or all) to the front of x; returns their count.
int64_t gather_output_rows(std::span<const BatchSegment> segments, int64_t n_embd, float* x);

class BatchSession {
  public:
    /// num_slots sequences of up to `context` positions each; pool nullptr = the model's pool. kv: every slot's
    /// cache type and the step size its sliding-window ring is sized for (as Session).
    BatchSession(const Model& model, int num_slots, int64_t context, kernels::ThreadPool* pool = nullptr,
                 const KvOptions& kv = {.dtype = DType::F32, .max_step_rows = kSessionStepRows});

    /// One step over the entries (each slot at most once). Returns per entry its logits: n_vocab floats of the
    /// last token, or tokens.size() * n_vocab with all_logits. Each slot's n_past advances by its tokens.
    /// Entries longer than the caches' max_step_rows() run in several steps.
    std::vector<std::vector<float>> eval(std::span<const SeqTokens> entries);

    int num_slots() const { return static_cast<int>(kv_.size()); }
    int64_t context() const { return context_; }
    int64_t n_past(int slot_idx) const { return n_past_.at(static_cast<size_t>(slot_idx)); }
    /// Forgets every cached position of one slot, so it can take a new sequence.
    void reset(int slot_idx);

    const Model& model() const { return model_; }
    const KvCache& kv(int slot_idx) const { return *kv_.at(static_cast<size_t>(slot_idx)); }
    /// Routes every MoE layer's experts through `runner` (nullptr: local experts).
    void set_expert_runner(ExpertRunner* runner) { experts_ = runner; }

  private:
    std::vector<std::vector<float>> eval_step(std::span<const SeqTokens> entries);

    const Model& model_;
    kernels::ThreadPool* pool_;
    int64_t context_;
    std::vector<std::unique_ptr<KvCache>> kv_;  // [slot]
    std::vector<int64_t> n_past_;               // [slot]
    ExpertRunner* experts_ = nullptr;
};

}  // namespace moerig::runtime
