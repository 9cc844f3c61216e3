// RMSNorm on the GPU, twin of kernels::rms_norm_rows (ops.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moerig::kernels::cuda {

/// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight for num_rows rows of n (row stride n); weight may be
/// nullptr; y may alias x. Device pointers.
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t num_rows, int64_t n, float eps,
                   cudaStream_t stream);

}  // namespace moerig::kernels::cuda
