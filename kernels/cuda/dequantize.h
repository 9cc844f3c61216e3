// Dequantisation of ggml tensors on the GPU (F32 output), the first half of the prefill GEMM.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels::cuda {

/// Decodes num_elems values (a whole number of blocks) of `type` at src into dst (device pointers).
/// Supported types: those of gemv_supported().
void dequantize(DType type, const void* src, int64_t num_elems, float* dst, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
