// Decode-time matrix-vector products on the GPU: y = W x for a few vectors, and the expert-indexed form
// (each slot multiplies its own expert's matrix), with the weights decoded in registers from ggml blocks.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels::cuda {

/// True when gemv/gemv_indexed/dequantize support the weight type: F32, F16, BF16, Q8_0, Q4_0, MXFP4,
/// Q4_K, Q5_K, Q6_K.
bool gemv_supported(DType type);

/// y[v*num_rows + r] = sum_c W[r, c] * x[v*num_cols + c] for v < num_vecs (any count; decode batches).
/// W is dense [num_rows][num_cols] of `type` on the device; num_cols is a multiple of the block size;
/// x must be 16-byte aligned. Float accumulation; no activation quantisation.
void gemv(DType type, const void* w, int64_t num_rows, int64_t num_cols, const float* x, int64_t num_vecs, float* y,
          cudaStream_t stream);

/// Expert-indexed products for MoE decode. For slot s < num_slots:
///   y[s*y_stride + r] = sum_c W_e[r, c] * x[(s / slots_per_x) * x_stride + c],  e = expert_ids[s],
/// where W_e starts at w + e * matrix_bytes. Slots with e < 0 (expert not on this card) get zeros.
/// With slots_per_x = k, the k slots of one token share its hidden state (gate/up projections).
void gemv_indexed(DType type, const void* w, int64_t matrix_bytes, int64_t num_rows, int64_t num_cols,
                  const int32_t* expert_ids, int64_t num_slots, const float* x, int64_t x_stride, int64_t slots_per_x,
                  float* y, int64_t y_stride, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
