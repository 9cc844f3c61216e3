// Int8 decode GEMV with __dp4a (sm_61+): activations quantised to 8 bits per 32-value block (ggml's Q8_0
// quantiser: d = amax / 127 stored as fp16, q = round(x / d)), then integer dot products with Q8_0 or Q4_0
// weight blocks, scaled per block by d_w * d_x. This is llama.cpp's vec_dot semantic for these types
// (kernels::matmul_ref_act), so it matches the CPU engine up to the order of float additions, and it moves a
// quarter of the activation bytes of the float GEMV. Pascal/Turing cards without fast FP16 gain the most.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels::cuda {

/// True for the weight types gemv_dp4a handles: Q8_0 and Q4_0.
bool gemv_dp4a_supported(DType type);

/// Bytes of the quantised activations of num_vecs vectors of num_cols (a multiple of 32) values.
int64_t q8_activation_bytes(int64_t num_vecs, int64_t num_cols);

/// Quantises x [num_vecs][num_cols] (device) into xq (q8_activation_bytes, device): int8 values
/// [num_vecs][num_cols], then one float scale per 32-value block (fp16-rounded, as ggml stores it).
void quantize_q8_activations(const float* x, int64_t num_vecs, int64_t num_cols, void* xq, cudaStream_t stream);

/// y[v*num_rows + r] = sum over blocks b of d_w(r, b) * d_x(v, b) * (int dot of the block) for v < num_vecs,
/// W dense [num_rows][num_cols] of Q8_0 or Q4_0 on the device, xq from quantize_q8_activations.
void gemv_dp4a(DType type, const void* w, int64_t num_rows, int64_t num_cols, const void* xq, int64_t num_vecs,
               float* y, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
