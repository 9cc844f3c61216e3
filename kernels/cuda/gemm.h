// Prefill matrix products on the GPU: weights dequantised to F32 in row tiles, then cuBLAS SGEMM.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels::cuda {

/// Scratch floats gemm needs to dequantise tiles of at most kGemmTileRows rows (0 for F32 weights).
int64_t gemm_scratch_elems(DType type, int64_t num_rows, int64_t num_cols);
inline constexpr int64_t kGemmTileRows = 2048;

/// y[t*num_rows + r] = sum_c W[r, c] * x[t*num_cols + c] for t < num_tokens (device pointers).
/// W is dense [num_rows][num_cols] of any gemv_supported() type; scratch holds gemm_scratch_elems floats.
/// Runs on `stream` (set on the handle). Exact F32 arithmetic (no TF32), so it matches matmul_ref closely.
void gemm(cublasHandle_t handle, DType type, const void* w, int64_t num_rows, int64_t num_cols, const float* x,
          int64_t num_tokens, float* y, float* scratch, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
