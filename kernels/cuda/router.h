// MoE router on the GPU, twin of kernels::route (router.h): softmax / sigmoid / softmax-over-selected gating,
// selection bias, DeepSeek group-limited selection, renormalisation and scaling.
#pragma once

#include <cuda_runtime.h>

#include "kernels/router.h"

namespace moerig::kernels::cuda {

/// Most experts per router supported (one warp per token holds them in shared memory).
inline constexpr int kRouterMaxExperts = 1024;

/// As kernels::route; logits, expert_ids, weights and p.selection_bias are device pointers.
void route(const RouterParams& p, const float* logits, int64_t num_tokens, int32_t* expert_ids, float* weights,
           cudaStream_t stream);

}  // namespace moerig::kernels::cuda
