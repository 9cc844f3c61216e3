// Element-wise ops of the transformer block on the GPU, twins of kernels/ops.h: SwiGLU (llama.cpp and
// gpt-oss forms) and the residual add.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moerig::kernels::cuda {

/// y = silu(gate) * up over n values (device pointers; y may alias gate or up).
void swiglu(const float* gate, const float* up, float* y, int64_t n, cudaStream_t stream);
/// gpt-oss SwiGLU: g = min(gate, limit), u = clamp(up, -limit, limit), y = g * sigmoid(alpha * g) * (u + 1).
void swiglu_oai(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit, cudaStream_t stream);
/// y = a + b (y may alias a or b).
void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
