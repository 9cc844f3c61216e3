// Grouped SwiGLU experts for MoE decode on the GPU: every (token, expert) slot runs its expert's gate, up and
// down projections straight from the merged 3-D GGUF tensors, then the weighted combine per token.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels::cuda {

/// A merged expert tensor on the device: [num_experts][rows][cols] of `type` (GGUF ffn_*_exps, ne[2] = experts).
struct ExpertTensor {
    DType type = DType::F32;
    const void* data = nullptr;
    int64_t rows = 0;  // output features per expert
    int64_t cols = 0;  // input features per expert
    /// Bytes of one expert's matrix.
    int64_t matrix_bytes() const;
};

/// Activation between up and down projections.
enum class ExpertActivation { kSwiglu, kSwigluOai };

/// Floats of scratch moe_ffn needs for num_slots = num_tokens * k slots: 3 * num_slots * ffn.
int64_t moe_ffn_scratch_elems(int64_t num_slots, int64_t ffn);

/// out[t] = (accumulate ? out[t] : 0) + sum_j weights[t*k + j] * down_e(act(gate_e x_t, up_e x_t)),
/// e = expert_ids[t*k + j]; ids < 0 (experts on another card) contribute nothing. x: [num_tokens][hidden],
/// out: [num_tokens][hidden], all device pointers. gpt-oss (kSwigluOai) uses alpha 1.702, limit 7.
void moe_ffn(const ExpertTensor& gate, const ExpertTensor& up, const ExpertTensor& down, ExpertActivation act,
             const float* x, int64_t num_tokens, const int32_t* expert_ids, const float* weights, int64_t k, float* out,
             bool accumulate, float* scratch, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
