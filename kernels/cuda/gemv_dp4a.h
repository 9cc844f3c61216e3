// Int8 decode GEMV with __dp4a (sm_61+): activations quantised to 8 bits per 32-value block (ggml's Q8_0
// quantiser: d = amax / 127 stored as fp16, q = round(x / d)), then integer dot products with Q8_0 or Q4_0
// weight blocks, scaled per block by d_w * d_x. This is llama.cpp's vec_dot semantic for these types
// (kernels::matmul_ref_act), so it matches the CPU engine up to the order of float additions, and it moves a
// quarter of the activation bytes of the float GEMV. Pascal/Turing cards without fast FP16 gain the most.
// Q4_K, Q5_K and Q6_K weights use the same activations (per-32 scales, plus the per-32 sums their min terms
// need) with the block dot products of kernels/kquant_dp4a.h: no longer the CPU's Q8_K semantic, but the same
// kind of rounding at a finer activation scale.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels::cuda {

/// True for the weight types gemv_dp4a handles: Q8_0, Q4_0, Q4_K, Q5_K and Q6_K.
bool gemv_dp4a_supported(DType type);
/// True for the weight types gemv_dp4a_indexed handles: Q4_K, Q5_K and Q6_K.
bool gemv_dp4a_indexed_supported(DType type);
/// Alignment in bytes the weights of `type` must start at: 16 for Q4_K and Q5_K (128-bit loads), else 2.
size_t gemv_dp4a_weight_alignment(DType type);

/// Bytes of the quantised activations of num_vecs vectors of num_cols (a multiple of 32) values.
int64_t q8_activation_bytes(int64_t num_vecs, int64_t num_cols);

/// Quantises x [num_vecs][num_cols] (device) into xq (q8_activation_bytes, device, 16-byte aligned): int8
/// values [num_vecs][num_cols] (padded to 16 bytes), then one float scale per 32-value block (fp16-rounded,
/// as ggml stores it) [num_vecs][num_cols / 32], then the int32 sum of each block's int8 values, same shape.
void quantize_q8_activations(const float* x, int64_t num_vecs, int64_t num_cols, void* xq, cudaStream_t stream);

/// y[v*num_rows + r] = sum over blocks b of d_w(r, b) * d_x(v, b) * (int dot of the block) for v < num_vecs,
/// W dense [num_rows][num_cols] of a gemv_dp4a_supported type on the device (aligned as
/// gemv_dp4a_weight_alignment), xq from quantize_q8_activations of the same num_vecs and num_cols.
void gemv_dp4a(DType type, const void* w, int64_t num_rows, int64_t num_cols, const void* xq, int64_t num_vecs,
               float* y, cudaStream_t stream);

/// Expert-indexed form for MoE decode, as gemv_indexed: for slot s < num_slots,
///   y[s*y_stride + r] = W_e[r, :] . x[s / slots_per_x],  e = expert_ids[s], W_e at w + e * matrix_bytes,
/// with x the num_x_vecs vectors quantised into xq by quantize_q8_activations (num_x_vecs, num_cols). Slots with
/// e < 0 get zeros. Weights of a gemv_dp4a_indexed_supported type.
void gemv_dp4a_indexed(DType type, const void* w, int64_t matrix_bytes, int64_t num_rows, int64_t num_cols,
                       const int32_t* expert_ids, int64_t num_slots, const void* xq, int64_t num_x_vecs,
                       int64_t slots_per_x, float* y, int64_t y_stride, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
