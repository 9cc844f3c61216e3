// One sequence being evaluated on the CPU: its KV cache, position and thread pool. Not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/threadpool.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"

namespace moerig::runtime {

/// Tokens of one sequence a CPU session (Session, BatchSession) evaluates per step by default: longer evals run
/// in steps of this many, and sliding-window layers keep a ring of n_swa + kSessionStepRows - 1 positions.
inline constexpr int64_t kSessionStepRows = 512;

class Session {
  public:
    /// A sequence of up to `context` positions; pool nullptr = the model's pool. kv: the cache's type and the
    /// step size its sliding-window ring is sized for (0: full-context SWA layers, evals in one step).
    Session(const Model& model, int64_t context, kernels::ThreadPool* pool = nullptr,
            const KvOptions& kv = {.dtype = DType::F32, .max_step_rows = kSessionStepRows});

    /// Runs tokens at positions n_past.. and appends them to the KV cache. Returns logits (n_vocab floats) of
    /// the last token, or of every token (tokens.size() * n_vocab) when all_logits. Runs in steps of at most
    /// kv().max_step_rows() tokens when the cache has a sliding-window ring.
    std::vector<float> eval(std::span<const int32_t> tokens, bool all_logits = false);

    int64_t n_past() const { return n_past_; }
    int64_t context() const { return kv_.capacity(); }
    const KvCache& kv() const { return kv_; }
    /// Forgets every cached position.
    void reset() {
        n_past_ = 0;
        held_from_ = 0;
    }
    /// Keeps positions [0, n_past) and forgets the rest (n_past <= current n_past). With a sliding-window ring,
    /// refused (ConfigError) when the ring no longer holds the window the next token at n_past needs.
    void truncate(int64_t n_past);

    const Model& model() const { return model_; }
    kernels::ThreadPool& pool() { return *pool_; }
    /// Routes every MoE layer's experts through `runner` (nullptr: local experts).
    void set_expert_runner(ExpertRunner* runner) { experts_ = runner; }

  private:
    const Model& model_;
    kernels::ThreadPool* pool_;
    KvCache kv_;
    int64_t n_past_ = 0;
    int64_t held_from_ = 0;  // positions [held_from_, n_past_) are still in every layer (rings overwrite older ones)
    ExpertRunner* experts_ = nullptr;
};

}  // namespace moerig::runtime
