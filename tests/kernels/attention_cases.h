// Attention shapes shared by the attention tests (fast path vs reference, KV storage forms): random q/k/v with
// F32 rows laid out as the engine's caches, and the parameters of each case.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/attention.h"
#include "tests/kernels/kernel_test_util.h"

namespace moerig::testing {

struct AttentionCase {
    int64_t heads, kv_heads, dim, v_dim, tokens, kv_len, window;
    float cap;
    bool sinks, shared_kv;  // shared_kv: MLA absorbed, V is the first v_dim values of each K head
};

// Decode and prefill, GQA, gpt-oss window + sinks, soft cap, MLA absorbed (V = head of K), odd head sizes.
inline const AttentionCase kAttentionCases[] = {
    {8, 2, 64, 64, 1, 300, 0, 0.0f, false, false}, {4, 4, 32, 32, 5, 77, 0, 0.0f, false, false},
    {8, 1, 48, 48, 3, 200, 50, 0.0f, true, false}, {6, 3, 40, 40, 2, 130, 0, 30.0f, false, false},
    {16, 1, 72, 64, 2, 90, 0, 0.0f, false, true},  {4, 2, 19, 13, 4, 45, 9, 0.0f, true, false},
};

struct AttentionTensors {
    std::vector<float> q, k, v, sinks;
    kernels::AttentionParams p;
    kernels::AttentionIo io;  // F32 k/v, out unset; points into this object's vectors (moves keep them valid)
};

inline AttentionTensors make_attention_tensors(const AttentionCase& c) {
    AttentionTensors t;
    t.q = random_values(c.tokens * c.heads * c.dim, 1);
    t.k = random_values(c.kv_len * c.kv_heads * c.dim, 2);
    t.v = random_values(c.kv_len * c.kv_heads * c.v_dim, 3);
    t.sinks = random_values(c.heads, 4);
    t.p.num_heads = c.heads;
    t.p.num_kv_heads = c.kv_heads;
    t.p.head_dim = c.dim;
    t.p.v_head_dim = c.v_dim;
    t.p.scale = 1.0f / std::sqrt(static_cast<float>(c.dim));
    t.p.soft_cap = c.cap;
    t.p.sliding_window = c.window;
    t.p.sinks = c.sinks ? t.sinks.data() : nullptr;
    kernels::AttentionIo& io = t.io;
    io.q = t.q.data();
    io.q_token_stride = c.heads * c.dim;
    io.q_head_stride = c.dim;
    io.k = t.k.data();
    io.k_token_stride = c.kv_heads * c.dim;
    io.k_head_stride = c.dim;
    io.v = c.shared_kv ? t.k.data() : t.v.data();
    io.v_token_stride = c.shared_kv ? io.k_token_stride : c.kv_heads * c.v_dim;
    io.v_head_stride = c.shared_kv ? c.dim : c.v_dim;
    io.num_tokens = c.tokens;
    io.kv_len = c.kv_len;
    io.out_token_stride = c.heads * c.v_dim;
    io.out_head_stride = c.v_dim;
    return t;
}

}  // namespace moerig::testing
