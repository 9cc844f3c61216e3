// Causal scaled-dot-product attention with grouped-query heads over an F32 or F16 KV cache (optionally a ring of
// slots), with the options the supported models need: logit soft cap, sliding window, per-head sink logits
// (gpt-oss), and different K and V head sizes (MLA). attention_ref is the plain two-pass reference; attention is
// the threaded fast path.
#pragma once

#include <cstdint>

#include "kernels/threadpool.h"

namespace moerig::kernels {

struct AttentionParams {
    int64_t num_heads = 0;         // query heads
    int64_t num_kv_heads = 0;      // key/value heads; query head h uses kv head h / (num_heads / num_kv_heads)
    int64_t head_dim = 0;          // q/k size per head
    int64_t v_head_dim = 0;        // v/output size per head (0 = head_dim)
    float scale = 1.0f;            // multiplies q.k (usually 1/sqrt(head_dim))
    float soft_cap = 0.0f;         // if > 0: logit = soft_cap * tanh(logit / soft_cap), after scale
    int64_t sliding_window = 0;    // if > 0: query at p sees keys at j with p - j < sliding_window
    const float* sinks = nullptr;  // optional [num_heads] logits that join each softmax's denominator only
};

/// Tensors of one sequence. Rows are addressed as base + row*token_stride + head*head_stride (elements), so
/// K and V may be interleaved, share storage (MLA absorbed: V = first v_head_dim values of K), or be slices.
/// The cache is F32 (k, v) or F16 (k_f16, v_f16: binary16 bits, widened on load; k and v then unused).
struct AttentionIo {
    const float* q = nullptr;
    int64_t q_token_stride = 0, q_head_stride = 0;
    const float* k = nullptr;  // cache position j is row j (or j % kv_ring)
    int64_t k_token_stride = 0, k_head_stride = 0;
    const float* v = nullptr;
    int64_t v_token_stride = 0, v_head_stride = 0;
    float* out = nullptr;
    int64_t out_token_stride = 0, out_head_stride = 0;
    int64_t num_tokens = 0;              // queries
    int64_t kv_len = 0;                  // cache positions [0, kv_len) are filled
    const int32_t* positions = nullptr;  // query positions (nullptr: kv_len - num_tokens + t); each < kv_len
    const uint16_t* k_f16 = nullptr;     // F16 cache instead of k/v (both set together)
    const uint16_t* v_f16 = nullptr;
    /// > 0: the cache is a ring of kv_ring rows, position j in row j % kv_ring (sliding-window layers keep only
    /// what they can see). Needs 0 < sliding_window <= kv_ring; the caller keeps the visible positions written.
    int64_t kv_ring = 0;
};

/// Reference: per query and head, scores over visible keys, exact softmax (double), weighted sum of V.
void attention_ref(const AttentionParams& p, const AttentionIo& io);
/// Fast path: threaded over (token, head) pairs, one pass with online softmax, SIMD dot products.
void attention(const AttentionParams& p, const AttentionIo& io, ThreadPool& pool);

}  // namespace moerig::kernels
