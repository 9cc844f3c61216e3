// CUDA attention against attention_ref: decode and prefill, GQA groupings, sliding window, soft cap, sinks,
// explicit positions, and absorbed MLA (V = the first v_head_dim values of the K rows, one shared head).
#include <cmath>

#include "kernels/attention.h"
#include "kernels/cuda/attention.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace moerig::kernels::cuda::test {
namespace {

struct AttnCase {
    const char* name;
    int64_t num_heads, num_kv_heads, head_dim, v_head_dim, num_tokens, kv_len;
    float soft_cap;
    int64_t window;
    bool sinks;
    bool mla;  // K and V share storage; v_head_dim < head_dim
};

void run_case(const AttnCase& c) {
    AttentionParams p;
    p.num_heads = c.num_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.head_dim = c.head_dim;
    p.v_head_dim = c.v_head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    p.soft_cap = c.soft_cap;
    p.sliding_window = c.window;
    const int64_t vd = c.v_head_dim > 0 ? c.v_head_dim : c.head_dim;
    const auto q = random_floats(static_cast<size_t>(c.num_tokens * c.num_heads * c.head_dim), 1);
    const auto k = random_floats(static_cast<size_t>(c.kv_len * c.num_kv_heads * c.head_dim), 2);
    const auto v = random_floats(static_cast<size_t>(c.kv_len * c.num_kv_heads * vd), 3);
    const auto sinks = random_floats(static_cast<size_t>(c.num_heads), 4);
    std::vector<float> ref(static_cast<size_t>(c.num_tokens * c.num_heads * vd));

    AttentionIo io;
    io.q_token_stride = c.num_heads * c.head_dim;
    io.q_head_stride = c.head_dim;
    io.k_token_stride = c.num_kv_heads * c.head_dim;
    io.k_head_stride = c.head_dim;
    if (c.mla) {
        io.v_token_stride = io.k_token_stride;
        io.v_head_stride = io.k_head_stride;
    } else {
        io.v_token_stride = c.num_kv_heads * vd;
        io.v_head_stride = vd;
    }
    io.out_token_stride = c.num_heads * vd;
    io.out_head_stride = vd;
    io.num_tokens = c.num_tokens;
    io.kv_len = c.kv_len;

    AttentionParams p_cpu = p;
    AttentionIo io_cpu = io;
    p_cpu.sinks = c.sinks ? sinks.data() : nullptr;
    io_cpu.q = q.data();
    io_cpu.k = k.data();
    io_cpu.v = c.mla ? k.data() : v.data();
    io_cpu.out = ref.data();
    attention_ref(p_cpu, io_cpu);

    DeviceArray<float> d_q(q), d_k(k), d_v(v), d_s(sinks), d_out(ref.size());
    p.sinks = c.sinks ? d_s.get() : nullptr;
    io.q = d_q.get();
    io.k = d_k.get();
    io.v = c.mla ? d_k.get() : d_v.get();
    io.out = d_out.get();
    cuda::attention(p, io, nullptr);
    EXPECT_LT(nmse(ref, d_out.download()), 1e-10) << c.name;
}

TEST(CudaAttention, MatchesReferenceAcrossShapesAndOptions) {
    MOERIG_REQUIRE_GPU();
    const AttnCase cases[] = {
        {"decode_gqa_32_8", 32, 8, 128, 0, 1, 77, 0, 0, false, false},
        {"decode_mha_long", 4, 4, 64, 0, 1, 1500, 0, 0, false, false},
        {"prefill_gqa", 8, 2, 128, 0, 13, 13, 0, 0, false, false},
        {"prefill_after_cache", 6, 3, 96, 0, 5, 40, 0, 0, false, false},
        {"sliding_window_sinks", 8, 2, 64, 0, 9, 300, 0, 128, true, false},
        {"soft_cap", 4, 1, 256, 0, 3, 50, 30.0f, 0, false, false},
        {"odd_head_dim", 3, 1, 80, 0, 2, 21, 0, 0, false, false},
        {"mla_absorbed", 16, 1, 576, 512, 3, 33, 0, 0, false, true},
    };
    for (const auto& c : cases) run_case(c);
}

TEST(CudaAttention, ExplicitPositionsSelectTheVisibleKeys) {
    MOERIG_REQUIRE_GPU();
    const int64_t heads = 2, dim = 64, kv_len = 20, num_tokens = 3;
    const auto q = random_floats(static_cast<size_t>(num_tokens * heads * dim), 5);
    const auto k = random_floats(static_cast<size_t>(kv_len * heads * dim), 6);
    const auto v = random_floats(static_cast<size_t>(kv_len * heads * dim), 7);
    const std::vector<int32_t> positions = {0, 11, 19};
    AttentionParams p;
    p.num_heads = p.num_kv_heads = heads;
    p.head_dim = dim;
    p.scale = 0.125f;
    AttentionIo io;
    io.q_token_stride = io.k_token_stride = io.v_token_stride = io.out_token_stride = heads * dim;
    io.q_head_stride = io.k_head_stride = io.v_head_stride = io.out_head_stride = dim;
    io.num_tokens = num_tokens;
    io.kv_len = kv_len;
    std::vector<float> ref(q.size());
    AttentionIo io_cpu = io;
    io_cpu.q = q.data();
    io_cpu.k = k.data();
    io_cpu.v = v.data();
    io_cpu.out = ref.data();
    io_cpu.positions = positions.data();
    attention_ref(p, io_cpu);
    DeviceArray<float> d_q(q), d_k(k), d_v(v), d_out(ref.size());
    DeviceArray<int32_t> d_pos(positions);
    io.q = d_q.get();
    io.k = d_k.get();
    io.v = d_v.get();
    io.out = d_out.get();
    io.positions = d_pos.get();
    cuda::attention(p, io, nullptr);
    const auto got = d_out.download();
    EXPECT_LT(nmse(ref, got), 1e-10);
    // Position 0 sees only key 0: its output is exactly V row 0 of its kv head.
    for (int64_t d = 0; d < dim; ++d) EXPECT_NEAR(got[d], v[d], 1e-6f);
}

}  // namespace
}  // namespace moerig::kernels::cuda::test
