// Attention kernel: each warp walks a strided subset of the visible keys with an online softmax (running max,
// denominator and V accumulator per lane-owned dims); the CTA then merges the warp states and the sink.
#include <cfloat>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/op_error.h"

namespace moerig::kernels::cuda {
namespace {

constexpr int kWarps = 8;

struct AttnArgs {
    const float* q;
    int64_t q_token_stride, q_head_stride;
    const float* k;
    int64_t k_token_stride, k_head_stride;
    const float* v;
    int64_t v_token_stride, v_head_stride;
    float* out;
    int64_t out_token_stride, out_head_stride;
    int64_t num_tokens, kv_len;
    const int32_t* positions;
    int num_heads, group, head_dim, v_head_dim;
    float scale, soft_cap;
    int64_t sliding_window;
    const float* sinks;
};

template <int DPL>  // dims per lane: head sizes up to 32 * DPL
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(AttnArgs a) {
    const int h = blockIdx.x;
    const int64_t t = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kvh = h / a.group;
    const int64_t pos = a.positions != nullptr ? a.positions[t] : a.kv_len - a.num_tokens + t;
    int64_t first = 0;
    if (a.sliding_window > 0 && pos - a.sliding_window + 1 > 0) first = pos - a.sliding_window + 1;
    const int64_t last = pos < a.kv_len - 1 ? pos : a.kv_len - 1;

    const float* qh = a.q + t * a.q_token_stride + h * a.q_head_stride;
    float q[DPL];
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
        const int d = lane + 32 * i;
        q[i] = d < a.head_dim ? qh[d] : 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    float acc[DPL];
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[i] = 0.0f;

    for (int64_t j = first + warp; j <= last; j += kWarps) {
        const float* kj = a.k + j * a.k_token_stride + kvh * a.k_head_stride;
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; ++i) {
            const int d = lane + 32 * i;
            if (d < a.head_dim) dot = fmaf(q[i], kj[d], dot);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        float s = dot * a.scale;
        if (a.soft_cap > 0.0f) s = a.soft_cap * tanhf(s / a.soft_cap);
        const float m_new = fmaxf(m, s);
        const float corr = expf(m - m_new);  // 0 on the first key (m = -inf)
        const float pj = expf(s - m_new);
        l = l * corr + pj;
        const float* vj = a.v + j * a.v_token_stride + kvh * a.v_head_stride;
#pragma unroll
        for (int i = 0; i < DPL; ++i) {
            const int d = lane + 32 * i;
            const float vd = d < a.v_head_dim ? vj[d] : 0.0f;
            acc[i] = acc[i] * corr + pj * vd;
        }
        m = m_new;
    }

    __shared__ float s_m[kWarps], s_l[kWarps];
    __shared__ float s_acc[kWarps][DPL * 32];
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < DPL; ++i) s_acc[warp][lane + 32 * i] = acc[i];
    __syncthreads();

    float m_all = a.sinks != nullptr ? a.sinks[h] : -INFINITY;
    for (int wi = 0; wi < kWarps; ++wi) m_all = fmaxf(m_all, s_m[wi]);
    float l_all = a.sinks != nullptr ? expf(a.sinks[h] - m_all) : 0.0f;
    float factor[kWarps];
    for (int wi = 0; wi < kWarps; ++wi) {
        factor[wi] = s_l[wi] > 0.0f ? expf(s_m[wi] - m_all) : 0.0f;
        l_all += s_l[wi] * factor[wi];
    }
    const float inv_l = l_all > 0.0f ? 1.0f / l_all : 0.0f;
    float* oh = a.out + t * a.out_token_stride + h * a.out_head_stride;
    for (int d = threadIdx.x; d < a.v_head_dim; d += kWarps * 32) {
        float o = 0.0f;
        for (int wi = 0; wi < kWarps; ++wi) o += s_acc[wi][d] * factor[wi];
        oh[d] = o * inv_l;
    }
}

}  // namespace

void attention(const AttentionParams& p, const AttentionIo& io, cudaStream_t stream) {
    constexpr const char* kOp = "cuda::attention";
    const int64_t v_head_dim = p.v_head_dim > 0 ? p.v_head_dim : p.head_dim;
    MOERIG_OP_REQUIRE(p.num_heads > 0 && p.num_kv_heads > 0 && p.num_heads % p.num_kv_heads == 0, kOp);
    MOERIG_OP_REQUIRE(p.head_dim > 0 && p.head_dim <= kAttentionMaxHeadDim, kOp);
    MOERIG_OP_REQUIRE(v_head_dim <= kAttentionMaxHeadDim, kOp);
    MOERIG_OP_REQUIRE(io.kv_len >= io.num_tokens || io.positions != nullptr, kOp);
    MOERIG_OP_REQUIRE(io.num_tokens < 65536 && p.num_heads < (1LL << 31), kOp);
    if (io.num_tokens <= 0) return;
    AttnArgs a{};
    a.q = io.q;
    a.q_token_stride = io.q_token_stride;
    a.q_head_stride = io.q_head_stride;
    a.k = io.k;
    a.k_token_stride = io.k_token_stride;
    a.k_head_stride = io.k_head_stride;
    a.v = io.v;
    a.v_token_stride = io.v_token_stride;
    a.v_head_stride = io.v_head_stride;
    a.out = io.out;
    a.out_token_stride = io.out_token_stride;
    a.out_head_stride = io.out_head_stride;
    a.num_tokens = io.num_tokens;
    a.kv_len = io.kv_len;
    a.positions = io.positions;
    a.num_heads = static_cast<int>(p.num_heads);
    a.group = static_cast<int>(p.num_heads / p.num_kv_heads);
    a.head_dim = static_cast<int>(p.head_dim);
    a.v_head_dim = static_cast<int>(v_head_dim);
    a.scale = p.scale;
    a.soft_cap = p.soft_cap;
    a.sliding_window = p.sliding_window;
    a.sinks = p.sinks;
    const int64_t widest = p.head_dim > v_head_dim ? p.head_dim : v_head_dim;
    const dim3 grid(static_cast<unsigned>(p.num_heads), static_cast<unsigned>(io.num_tokens));
    const dim3 block(kWarps * 32);
    if (widest <= 64) {
        attention_kernel<2><<<grid, block, 0, stream>>>(a);
    } else if (widest <= 128) {
        attention_kernel<4><<<grid, block, 0, stream>>>(a);
    } else if (widest <= 256) {
        attention_kernel<8><<<grid, block, 0, stream>>>(a);
    } else {
        attention_kernel<18><<<grid, block, 0, stream>>>(a);
    }
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moerig::kernels::cuda
