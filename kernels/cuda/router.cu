// Router: one warp per token. Scores and selection values live in shared memory; groups are scored by the
// sum of their two best selection values; the k experts are taken by k warp-wide argmax passes (ties to
// the lower index), exactly the order the CPU route produces.
#include <cfloat>

#include "kernels/cuda/check.h"
#include "kernels/cuda/op_error.h"
#include "kernels/cuda/router.h"

namespace moerig::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

struct RouterArgs {
    const float* logits;
    int64_t num_tokens;
    int num_experts, k, gating, num_groups, num_groups_used;
    const float* bias;
    bool normalize;
    float weights_scale;
    int32_t* ids;
    float* weights;
};

/// True when (v, i) ranks above (best_v, best_i): larger value, ties to the lower index; NaN never wins.
__device__ __forceinline__ bool better(float v, int i, float best_v, int best_i) {
    return v > best_v || (v == best_v && i < best_i);
}

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, off);
        const int oi = __shfl_xor_sync(0xffffffffu, i, off);
        if (better(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__global__ void __launch_bounds__(kWarpsPerBlock * 32) router_kernel(RouterArgs a) {
    extern __shared__ float smem[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
    if (t >= a.num_tokens) return;  // whole warp leaves; no block-wide barriers below
    const int n = a.num_experts;
    float* probs = smem + static_cast<int64_t>(warp) * 2 * n;
    float* sel = probs + n;
    const float* lt = a.logits + t * n;

    // Gating scores (probs) and selection values (sel = probs + bias).
    if (a.gating == static_cast<int>(ExpertGating::kSoftmax)) {
        float mx = -INFINITY;
        for (int e = lane; e < n; e += 32) mx = fmaxf(mx, lt[e]);
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int e = lane; e < n; e += 32) {
            const float ex = expf(lt[e] - mx);
            probs[e] = ex;
            sum += ex;
        }
        sum = warp_sum(sum);
        for (int e = lane; e < n; e += 32) probs[e] = probs[e] / sum;
    } else if (a.gating == static_cast<int>(ExpertGating::kSigmoid)) {
        for (int e = lane; e < n; e += 32) probs[e] = 1.0f / (1.0f + expf(-lt[e]));
    } else {
        for (int e = lane; e < n; e += 32) probs[e] = lt[e];
    }
    for (int e = lane; e < n; e += 32) sel[e] = a.bias != nullptr ? probs[e] + a.bias[e] : probs[e];
    __syncwarp();

    // Group limit: keep the num_groups_used groups whose two best selection values sum highest.
    if (a.num_groups > 1 && a.num_groups_used < a.num_groups) {
        const int per_group = n / a.num_groups;
        float score = -INFINITY;
        if (lane < a.num_groups) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int e = lane * per_group; e < (lane + 1) * per_group; ++e) {
                const float v = sel[e];
                if (v > b1) {
                    b2 = b1;
                    b1 = v;
                } else if (v > b2) {
                    b2 = v;
                }
            }
            score = per_group >= 2 ? b1 + b2 : b1;
        }
        bool keep = false;
        for (int r = 0; r < a.num_groups_used; ++r) {
            float v = lane < a.num_groups && !keep ? score : -INFINITY;
            int i = lane < a.num_groups && !keep ? lane : 0x7fffffff;
            warp_argmax(v, i);
            if (lane == i) keep = true;
        }
        __syncwarp();
        const unsigned kept = __ballot_sync(0xffffffffu, keep);
        for (int e = lane; e < n; e += 32) {
            if (!((kept >> (e / per_group)) & 1u)) sel[e] = -INFINITY;
        }
        __syncwarp();
    }

    // Top-k by repeated argmax; the chosen value is replaced by NaN, which never wins again.
    float w_local = 0.0f;  // lane j < k keeps weight j
    int id_local = 0;
    for (int j = 0; j < a.k; ++j) {
        float v = -INFINITY;
        int i = 0x7fffffff;
        for (int e = lane; e < n; e += 32) {
            if (better(sel[e], e, v, i)) {
                v = sel[e];
                i = e;
            }
        }
        warp_argmax(v, i);
        if (i == 0x7fffffff) i = 0;  // only taken experts left (k > available): cannot happen for valid params
        if (lane == j) {
            id_local = i;
            w_local = probs[i];
        }
        __syncwarp();
        if (lane == 0) sel[i] = NAN;
        __syncwarp();
    }

    const bool mine = lane < a.k;
    if (a.gating == static_cast<int>(ExpertGating::kSoftmaxWeight)) {
        const float mx = warp_max(mine ? w_local : -INFINITY);
        const float ex = mine ? expf(w_local - mx) : 0.0f;
        const float sum = warp_sum(ex);
        w_local = ex / sum;
    }
    if (a.normalize) {
        float sum = warp_sum(mine ? w_local : 0.0f);
        sum = fmaxf(sum, 6.103515625e-5f);
        w_local = w_local / sum;
    }
    w_local *= a.weights_scale;
    if (mine) {
        a.ids[t * a.k + lane] = id_local;
        a.weights[t * a.k + lane] = w_local;
    }
}

}  // namespace

void route(const RouterParams& p, const float* logits, int64_t num_tokens, int32_t* expert_ids, float* weights,
           cudaStream_t stream) {
    constexpr const char* kOp = "cuda::route";
    MOERIG_OP_REQUIRE(p.num_experts > 0 && p.num_experts <= kRouterMaxExperts, kOp);
    MOERIG_OP_REQUIRE(p.num_experts_used > 0 && p.num_experts_used <= 32 && p.num_experts_used <= p.num_experts, kOp);
    MOERIG_OP_REQUIRE(p.num_groups >= 1 && p.num_groups <= 32 && p.num_experts % p.num_groups == 0, kOp);
    MOERIG_OP_REQUIRE(p.num_groups_used >= 1 && p.num_groups_used <= p.num_groups, kOp);
    if (num_tokens <= 0) return;
    RouterArgs a{};
    a.logits = logits;
    a.num_tokens = num_tokens;
    a.num_experts = static_cast<int>(p.num_experts);
    a.k = static_cast<int>(p.num_experts_used);
    a.gating = static_cast<int>(p.gating);
    a.num_groups = static_cast<int>(p.num_groups);
    a.num_groups_used = static_cast<int>(p.num_groups_used);
    a.bias = p.selection_bias;
    a.normalize = p.normalize;
    a.weights_scale = p.weights_scale;
    a.ids = expert_ids;
    a.weights = weights;
    const int64_t blocks = (num_tokens + kWarpsPerBlock - 1) / kWarpsPerBlock;
    const size_t smem = static_cast<size_t>(kWarpsPerBlock) * 2 * p.num_experts * sizeof(float);
    router_kernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, smem, stream>>>(a);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moerig::kernels::cuda
