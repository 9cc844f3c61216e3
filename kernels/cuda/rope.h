// Rotary position embeddings on the GPU, twin of kernels::rope (rope.h): normal/NeoX, YaRN, freq factors.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/rope.h"

namespace moerig::kernels::cuda {

/// Rotates the first p.n_dims values of each head in place, as kernels::rope. x, positions and
/// p.freq_factors (if set) are device pointers.
void rope(const RopeParams& p, float* x, int64_t num_tokens, int64_t num_heads, int64_t token_stride,
          int64_t head_stride, const int32_t* positions, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
