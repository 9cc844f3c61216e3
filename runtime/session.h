// One sequence being evaluated on the CPU: its KV cache, position and thread pool. Not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/threadpool.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"

namespace moerig::runtime {

class Session {
  public:
    /// A sequence of up to `context` positions; pool nullptr = the model's pool.
    Session(const Model& model, int64_t context, kernels::ThreadPool* pool = nullptr);

    /// Runs tokens at positions n_past.. and appends them to the KV cache. Returns logits (n_vocab floats) of
    /// the last token, or of every token (tokens.size() * n_vocab) when all_logits.
    std::vector<float> eval(std::span<const int32_t> tokens, bool all_logits = false);

    int64_t n_past() const { return n_past_; }
    int64_t context() const { return kv_.capacity(); }
    /// Forgets every cached position.
    void reset() { n_past_ = 0; }
    /// Keeps positions [0, n_past) and forgets the rest (n_past <= current n_past).
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
    ExpertRunner* experts_ = nullptr;
};

}  // namespace moerig::runtime
