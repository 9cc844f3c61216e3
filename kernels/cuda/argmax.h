// Greedy sampling on the GPU: index of the largest logit per row, twin of kernels::argmax (ops.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moerig::kernels::cuda {

/// out[r] = index of the largest of logits[r*n .. r*n + n) (first on ties; NaN never wins; 0 if all NaN).
void argmax_rows(const float* logits, int64_t num_rows, int64_t n, int32_t* out, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
